from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from stellara.catalog import Catalog
from stellara.limits import Estimator, PriceKey, RequestEstimate, actual_amounts
from stellara.schema.chat import ChatRequest, Usage
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.tokens import TokenCounter

GPT4O = PriceKey("openai", "gpt-4o")


@pytest.fixture(scope="module")
def estimator() -> Estimator:
    return Estimator(TokenCounter(), Catalog.shipped(), default_reserve=1024)


def chat(**fields: object) -> ChatRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], **fields}
    return msgspec.convert(body, ChatRequest)


def test_estimate_tokens_are_prompt_plus_max_tokens(estimator: Estimator) -> None:
    prompt = TokenCounter().count_prompt(chat(), "gpt-4o")
    amounts = estimator.chat(chat(max_tokens=50), GPT4O).amounts(needs_tokens=True)
    assert amounts["requests"] == 1
    assert amounts["tokens"] == prompt + 50


def test_estimate_max_completion_tokens_wins_over_max_tokens(estimator: Estimator) -> None:
    a = estimator.chat(chat(max_tokens=50, max_completion_tokens=7), GPT4O).amounts(
        needs_tokens=True
    )
    b = estimator.chat(chat(max_completion_tokens=7), GPT4O).amounts(needs_tokens=True)
    assert a["tokens"] == b["tokens"]


def test_estimate_without_max_tokens_reserves_the_default(estimator: Estimator) -> None:
    prompt = TokenCounter().count_prompt(chat(), "gpt-4o")
    assert estimator.chat(chat(), GPT4O).amounts(needs_tokens=True)["tokens"] == prompt + 1024


def test_estimate_cost_is_the_catalog_price_of_the_estimate(estimator: Estimator) -> None:
    amounts = estimator.chat(chat(max_tokens=100), GPT4O).amounts(needs_tokens=True)
    prompt = int(amounts["tokens"]) - 100
    usage = Usage(prompt_tokens=prompt, completion_tokens=100, total_tokens=prompt + 100)
    assert amounts["cost_usd"] == pytest.approx(
        Catalog.shipped().cost_usd("openai", "gpt-4o", usage)
    )
    assert amounts["cost_usd"] > 0


def test_estimate_unknown_model_costs_nothing(estimator: Estimator) -> None:
    amounts = estimator.chat(chat(max_tokens=10), PriceKey("openai", "llama-local")).amounts(
        needs_tokens=True
    )
    assert amounts["cost_usd"] == 0.0
    assert amounts["tokens"] > 10


def counting(prompt_tokens: int) -> tuple[list[str], Callable[[str], int]]:
    """A prompt counter that records the tokenizer model of each call."""
    calls: list[str] = []

    def count(model: str) -> int:
        calls.append(model)
        return prompt_tokens

    return calls, count


def test_estimate_skips_tokenizing_when_no_token_limit(estimator: Estimator) -> None:
    assert estimator.chat(chat(), GPT4O).amounts(needs_tokens=False) == {"requests": 1.0}
    calls, count = counting(10)
    estimate = RequestEstimate(count, 5, GPT4O, Catalog.shipped())
    assert estimate.amounts(needs_tokens=False) == {"requests": 1.0}
    assert calls == []


def test_estimate_counts_the_prompt_once_for_limits_and_routing() -> None:
    calls, count = counting(1_000_000)
    estimate = RequestEstimate(count, 1_000_000, GPT4O, Catalog.shipped())
    assert estimate.amounts(needs_tokens=True)["cost_usd"] == pytest.approx(2.5 + 10.0)
    assert estimate.usd_on("openai", "gpt-4o-mini") == pytest.approx(0.15 + 0.6)
    assert estimate.usd_on("openai", "llama-local") is None  # unknown: no price, not free
    assert calls == ["gpt-4o"]  # with the first target's tokenizer, whatever is priced


def test_estimate_without_a_serving_target_counts_only_the_request() -> None:
    calls, count = counting(10)
    estimate = RequestEstimate(count, 0, None, Catalog.shipped())
    assert estimate.amounts(needs_tokens=True) == {"requests": 1.0}
    assert calls == []


def test_estimate_embeddings_counts_inputs(estimator: Estimator) -> None:
    texts = msgspec.convert({"model": "e", "input": ["a b c", "d"]}, EmbeddingsRequest)
    tokens = msgspec.convert({"model": "e", "input": [[1, 2, 3], [4]]}, EmbeddingsRequest)
    price = PriceKey("openai", "text-embedding-3-small")
    assert estimator.embeddings(texts, price).amounts(needs_tokens=True)["tokens"] >= 2
    assert estimator.embeddings(tokens, price).amounts(needs_tokens=True)["tokens"] == 4


def test_actual_amounts_from_usage_and_for_failures():
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    assert actual_amounts(usage, 0.25) == {"requests": 1.0, "tokens": 15.0, "cost_usd": 0.25}
    assert actual_amounts(None, 0.0) == {"requests": 1.0, "tokens": 0.0, "cost_usd": 0.0}
