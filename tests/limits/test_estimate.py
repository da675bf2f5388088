from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from stellara.catalog import Catalog
from stellara.limits import (
    Estimator,
    OutputHistory,
    PriceKey,
    RequestEstimate,
    actual_amounts,
)
from stellara.schema.chat import ChatRequest, Usage
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.tokens import TokenCounter

GPT4O = PriceKey("openai", "gpt-4o")


@pytest.fixture
def outputs() -> OutputHistory:
    return OutputHistory()


@pytest.fixture
def estimator(outputs: OutputHistory) -> Estimator:
    return Estimator(TokenCounter(), Catalog.shipped(), default_reserve=1024, outputs=outputs)


def chat(**fields: object) -> ChatRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], **fields}
    return msgspec.convert(body, ChatRequest)


def estimate_chat(
    estimator: Estimator, request: ChatRequest, user: str = "alice"
) -> RequestEstimate:
    return estimator.chat(request, GPT4O, user=user, public_model="m")


def test_estimate_tokens_are_prompt_plus_max_tokens(estimator: Estimator) -> None:
    estimate = estimate_chat(estimator, chat(max_tokens=50))
    assert estimate.prompt_tokens == TokenCounter().count_prompt(chat(), "gpt-4o")
    assert estimate.output_tokens == 50
    assert estimate.ceiling_param == "max_tokens"


def test_estimate_max_completion_tokens_wins_over_max_tokens(estimator: Estimator) -> None:
    estimate = estimate_chat(estimator, chat(max_tokens=50, max_completion_tokens=7))
    assert estimate.output_tokens == 7
    assert estimate.ceiling_param == "max_completion_tokens"


def test_estimate_without_max_tokens_expects_the_default(estimator: Estimator) -> None:
    estimate = estimate_chat(estimator, chat())
    assert estimate.output_tokens == 1024
    assert estimate.ceiling_param is None  # expected, not a ceiling the caller set


def test_estimate_without_max_tokens_expects_the_users_recent_answers(
    estimator: Estimator, outputs: OutputHistory
) -> None:
    outputs.observe("alice", "m", 40)
    assert estimate_chat(estimator, chat()).output_tokens == 40
    assert estimate_chat(estimator, chat(), user="bob").output_tokens == 1024  # not alice's
    assert estimator.chat(chat(), GPT4O, user="alice", public_model="other").output_tokens == 1024
    assert estimate_chat(estimator, chat(max_tokens=500)).output_tokens == 500  # a ceiling wins


def test_estimate_without_a_history_expects_the_default() -> None:
    estimator = Estimator(TokenCounter(), Catalog.shipped(), default_reserve=300)
    assert estimator.chat(chat(), GPT4O, user="alice", public_model="m").output_tokens == 300


def test_estimate_cost_is_the_catalog_price_of_the_estimate(estimator: Estimator) -> None:
    estimate = estimate_chat(estimator, chat(max_tokens=100))
    prompt = estimate.prompt_tokens
    usage = Usage(prompt_tokens=prompt, completion_tokens=100, total_tokens=prompt + 100)
    usd = estimate.usd_on("openai", "gpt-4o")
    assert usd == pytest.approx(Catalog.shipped().cost_usd("openai", "gpt-4o", usage))
    assert usd is not None
    prompt_only = estimate.usd_on("openai", "gpt-4o", output_tokens=0)
    assert prompt_only is not None
    assert 0 < prompt_only < usd


def counting(prompt_tokens: int) -> tuple[list[str], Callable[[str], int]]:
    """A prompt counter that records the tokenizer model of each call."""
    calls: list[str] = []

    def count(model: str) -> int:
        calls.append(model)
        return prompt_tokens

    return calls, count


def test_estimate_counts_the_prompt_once_with_the_first_targets_tokenizer() -> None:
    calls, count = counting(1_000_000)
    estimate = RequestEstimate(count, 1_000_000, GPT4O, Catalog.shipped())
    assert calls == []  # nothing counted until asked
    assert estimate.usd_on("openai", "gpt-4o") == pytest.approx(2.5 + 10.0)
    assert estimate.usd_on("openai", "gpt-4o-mini") == pytest.approx(0.15 + 0.6)
    assert estimate.usd_on("openai", "llama-local") is None  # unknown: no price, not free
    assert calls == ["gpt-4o"]  # with the first target's tokenizer, whatever is priced


def test_estimate_without_a_serving_target_counts_nothing() -> None:
    calls, count = counting(10)
    assert RequestEstimate(count, 0, None, Catalog.shipped()).prompt_tokens == 0
    assert calls == []


def test_estimate_embeddings_counts_inputs(estimator: Estimator) -> None:
    texts = msgspec.convert({"model": "e", "input": ["a b c", "d"]}, EmbeddingsRequest)
    tokens = msgspec.convert({"model": "e", "input": [[1, 2, 3], [4]]}, EmbeddingsRequest)
    price = PriceKey("openai", "text-embedding-3-small")
    assert estimator.embeddings(texts, price).prompt_tokens >= 2
    assert estimator.embeddings(tokens, price).prompt_tokens == 4
    assert estimator.embeddings(tokens, price).output_tokens == 0


def test_actual_amounts_from_usage_and_for_failures():
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    assert actual_amounts(usage, 0.25) == {"requests": 1.0, "tokens": 15.0, "cost_usd": 0.25}
    assert actual_amounts(None, 0.0) == {"requests": 1.0, "tokens": 0.0, "cost_usd": 0.0}
