"""What a request reserves in its limits, and the 400 for a request no wait can admit."""

from __future__ import annotations

from typing import Any

import pytest

from stellara.catalog import Catalog
from stellara.config.models import LimitsConfig, TierConfig
from stellara.errors import InvalidRequestError, RateLimitedError
from stellara.events import EventBus
from stellara.limits import (
    EffectivePolicy,
    Limiter,
    LimitEvents,
    LimitsPolicy,
    PriceKey,
    RequestEstimate,
    reserve,
)
from stellara.schema.chat import Usage
from stellara.state.memory import MemoryBackend
from stellara.testing import ManualClock

from .fakes import START

GPT4O = PriceKey("openai", "gpt-4o")  # $2.50 per million prompt tokens, $10 per million output


def policy(tier: dict[str, Any], *, key_limits: dict[str, Any] | None = None) -> EffectivePolicy:
    config = LimitsConfig.model_validate({"tiers": {"t": tier}, "default_tier": "t"})
    own = TierConfig.model_validate(key_limits) if key_limits is not None else None
    resolved = LimitsPolicy(config).resolve(
        "alice", None, session_id=None, now=START, key_id="k1", key_limits=own
    )
    assert resolved is not None
    return resolved


def estimate(prompt: int, output: int, *, ceiling: str | None = None) -> RequestEstimate:
    """A request of `prompt` tokens; `ceiling` names the parameter that set `output`."""
    return RequestEstimate(
        lambda _model: prompt, output, GPT4O, Catalog.shipped(), ceiling_param=ceiling
    )


WINDOW_500 = {"rate": {"window_s": 60, "tokens": 500}}


def test_fit_expected_answer_is_capped_by_what_the_window_holds() -> None:
    amounts = reserve(estimate(12, 1024), policy(WINDOW_500))
    assert amounts["tokens"] == 500  # 12 of prompt + 488, not the 1,024 expected
    assert amounts["requests"] == 1


def test_fit_expected_answer_within_the_window_is_reserved_whole() -> None:
    assert reserve(estimate(12, 30), policy(WINDOW_500))["tokens"] == 42


def test_fit_ceiling_within_the_window_is_reserved_whole() -> None:
    assert reserve(estimate(12, 488, ceiling="max_tokens"), policy(WINDOW_500))["tokens"] == 500


def test_fit_ceiling_past_the_window_is_a_400_naming_max_tokens() -> None:
    with pytest.raises(InvalidRequestError) as info:
        reserve(estimate(12, 10_000, ceiling="max_tokens"), policy(WINDOW_500))
    error = info.value
    assert error.status_code == 400
    assert error.param == "max_tokens"
    assert error.code == "request_exceeds_limit"
    assert "rate:tokens (500 tokens per 60 s)" in error.message
    assert "set max_tokens to at most 488" in error.message


def test_fit_refusal_names_the_parameter_as_the_dialect_does() -> None:
    names = {"max_completion_tokens": "max_output_tokens"}
    with pytest.raises(InvalidRequestError) as info:
        reserve(estimate(12, 10_000, ceiling="max_completion_tokens"), policy(WINDOW_500), names)
    assert info.value.param == "max_output_tokens"
    assert "set max_output_tokens to at most 488" in info.value.message


@pytest.mark.parametrize("ceiling", [None, "max_tokens"])
def test_fit_prompt_past_the_window_is_a_400_to_shorten_it(ceiling: str | None) -> None:
    with pytest.raises(InvalidRequestError) as info:
        reserve(estimate(501, 10, ceiling=ceiling), policy(WINDOW_500))
    assert info.value.param is None
    assert "prompt alone is 501 tokens" in info.value.message
    assert "shorten the prompt" in info.value.message


def test_fit_the_tightest_token_limit_bounds_the_reserve() -> None:
    tier = {"rate": {"window_s": 60, "tokens": 10_000}, "quota": {"daily": {"tokens": 300}}}
    assert reserve(estimate(12, 1024), policy(tier))["tokens"] == 300
    with pytest.raises(InvalidRequestError, match=r"quota:daily:tokens \(300 tokens a day\)"):
        reserve(estimate(12, 1000, ceiling="max_tokens"), policy(tier))


def test_fit_a_keys_own_token_limit_bounds_the_reserve_too() -> None:
    key_limits = {"rate": {"window_s": 60, "tokens": 200}}
    limits = policy({"rate": {"window_s": 60, "requests": 100}}, key_limits=key_limits)
    assert reserve(estimate(12, 1024), limits)["tokens"] == 200
    with pytest.raises(InvalidRequestError, match=r"rate:tokens@key:k1"):
        reserve(estimate(12, 1000, ceiling="max_tokens"), limits)


def test_fit_a_zero_limit_is_left_to_the_store() -> None:
    # A limit of 0 refuses the dimension outright (429 by the store), whatever the request.
    amounts = reserve(estimate(12, 1024), policy({"quota": {"daily": {"tokens": 0}}}))
    assert amounts["tokens"] == 12 + 1024


def test_fit_shadow_mode_never_refuses_but_still_caps_a_guess() -> None:
    shadow = policy({**WINDOW_500, "shadow": True})
    assert reserve(estimate(12, 10_000, ceiling="max_tokens"), shadow)["tokens"] == 10_012
    assert reserve(estimate(12, 1024), shadow)["tokens"] == 500
    assert reserve(estimate(600, 1024), shadow)["tokens"] == 600


def test_fit_without_token_or_cost_limits_counts_nothing() -> None:
    counted: list[str] = []

    def count(model: str) -> int:
        counted.append(model)
        return 12

    request = RequestEstimate(count, 1024, GPT4O, Catalog.shipped())
    assert reserve(request, policy({"rate": {"requests": 5}})) == {"requests": 1.0}
    assert counted == []


def test_fit_without_a_serving_target_reserves_only_the_request() -> None:
    request = RequestEstimate(lambda _model: 12, 0, None, Catalog.shipped())
    assert reserve(request, policy(WINDOW_500)) == {"requests": 1.0}


# ---------------------------------------------------------------- cost

CENT = {"rate": {"window_s": 60, "cost_usd": 0.01}}


def test_fit_cost_is_priced_on_the_reserved_answer() -> None:
    amounts = reserve(estimate(1000, 100, ceiling="max_tokens"), policy(CENT))
    assert amounts["cost_usd"] == pytest.approx((1000 * 2.5 + 100 * 10) / 1e6)


def test_fit_expected_answer_costs_at_most_the_cost_limit() -> None:
    # 1,000 prompt tokens ($0.0025) + 1,024 expected ($0.01024) would never fit $0.01.
    assert reserve(estimate(1000, 1024), policy(CENT))["cost_usd"] == pytest.approx(0.01)


def test_fit_ceiling_past_the_cost_limit_is_a_400_naming_max_tokens() -> None:
    with pytest.raises(InvalidRequestError) as info:
        reserve(estimate(1000, 10_000, ceiling="max_tokens"), policy(CENT))
    assert info.value.param == "max_tokens"
    assert "rate:cost_usd ($0.01 per 60 s)" in info.value.message
    assert "lower max_tokens" in info.value.message


def test_fit_prompt_past_the_cost_limit_is_a_400_to_shorten_it() -> None:
    with pytest.raises(InvalidRequestError) as info:
        reserve(estimate(10_000, 10), policy(CENT))  # $0.025 of prompt alone
    assert info.value.param is None
    assert "shorten the prompt" in info.value.message


# ---------------------------------------------------------------- 400 or 429, over time


def limiter(tier: dict[str, Any], clock: ManualClock) -> Limiter:
    config = LimitsConfig.model_validate({"tiers": {"t": tier}, "default_tier": "t"})
    return Limiter(
        LimitsPolicy(config),
        MemoryBackend(clock).limits,
        LimitEvents(EventBus(), warn_at=config.warn_at),
        clock,
        on_failure="open",
    )


def answered(prompt: int, completion: int) -> Usage:
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


async def test_fit_full_window_is_a_429_that_waiting_cures() -> None:
    clock = ManualClock(START)
    limits = limiter(WINDOW_500, clock)
    resolved = limits.resolve("alice", None, None)
    assert resolved is not None
    first = await limits.admit(resolved, reserve(estimate(12, 1024), resolved), "r1")
    assert first.refusal is None  # the guess is capped: admitted, never refused forever
    second = await limits.admit(resolved, reserve(estimate(12, 1024), resolved), "r2")
    refusal = second.refusal
    assert isinstance(refusal, RateLimitedError)  # full now, not too large: 429
    assert refusal.retry_after_s == 60
    clock.advance(refusal.retry_after_s)
    third = await limits.admit(resolved, reserve(estimate(12, 1024), resolved), "r3")
    assert third.refusal is None  # the Retry-After was honest
    with pytest.raises(InvalidRequestError):  # while no wait admits this one
        reserve(estimate(12, 10_000, ceiling="max_tokens"), resolved)


async def test_fit_settle_frees_the_guess_and_teaches_the_next_estimate() -> None:
    clock = ManualClock(START)
    limits = limiter(WINDOW_500, clock)
    resolved = limits.resolve("alice", None, None)
    assert resolved is not None
    ticket = await limits.admit(
        resolved, reserve(estimate(12, 1024), resolved), "r1", public_model="m"
    )
    await ticket.settle(answered(12, 30), 0.0)
    assert limits.outputs.expected("alice", "m") == 30
    expected = limits.outputs.expected("alice", "m") or 0
    amounts = reserve(estimate(12, expected), resolved)
    assert amounts["tokens"] == 42
    nexts = [await limits.admit(resolved, amounts, f"n{i}") for i in range(10)]
    assert all(t.refusal is None for t in nexts)  # 42 + 10 x 42 = 462 of 500: all fit


async def test_fit_refused_or_embeddings_requests_teach_nothing() -> None:
    clock = ManualClock(START)
    limits = limiter({"rate": {"window_s": 60, "requests": 1, "tokens": 500}}, clock)
    resolved = limits.resolve("alice", None, None)
    assert resolved is not None
    embedded = await limits.admit(resolved, {"requests": 1.0, "tokens": 5.0}, "e1")
    await embedded.settle(answered(5, 0), 0.0)
    refused = await limits.admit(resolved, {"requests": 1.0}, "r1", public_model="m")
    assert refused.refusal is not None
    await refused.settle(answered(12, 99), 0.0)
    assert limits.outputs.expected("alice", "m") is None
