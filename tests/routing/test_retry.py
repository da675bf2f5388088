import random

import pytest

from stellara.catalog import Catalog
from stellara.config.models import ResilienceConfig, RetryConfig
from stellara.errors import (
    ClientDisconnectedError,
    ContentFilterError,
    ContextWindowExceededError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamProtocolError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from stellara.routing.models import PublicModel, Target
from stellara.routing.retry import AttemptBudget, RetryPolicy, larger_window_models

from .test_models import FakeAdapter

POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.2, max_delay_s=5.0)
DOWN = UpstreamUnavailableError("503", provider="p", upstream_status=503)


def rate_limited(retry_after_s: float | None) -> UpstreamRateLimitedError:
    return UpstreamRateLimitedError("429", provider="p", retry_after_s=retry_after_s)


def test_retry_policy_from_config_converts_milliseconds():
    config = ResilienceConfig(
        retry=RetryConfig(max_attempts=4, base_delay_ms=100, max_delay_ms=2000, jitter=False),
        max_total_attempts=9,
    )
    policy = RetryPolicy.from_config(config)
    assert policy == RetryPolicy(
        max_attempts=4, base_delay_s=0.1, max_delay_s=2.0, jitter=False, max_total_attempts=9
    )


@pytest.mark.parametrize("retry", [0, 1, 2, 3, 4, 5, 10, 60])
def test_retry_delay_full_jitter_within_ceiling(retry):
    rng = random.Random(retry)
    ceiling = min(5.0, 0.2 * 2**retry)
    delays = [POLICY.delay_s(retry, DOWN, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.9 * ceiling  # spread over the whole range, not bunched
    assert min(delays) < 0.1 * ceiling


def test_retry_delay_without_jitter_is_the_capped_ceiling():
    policy = RetryPolicy(base_delay_s=0.2, max_delay_s=5.0, jitter=False)
    rng = random.Random(0)
    assert [policy.delay_s(r, DOWN, rng) for r in range(6)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]


def test_retry_delay_honours_retry_after():
    rng = random.Random(0)
    assert POLICY.delay_s(0, rate_limited(3.0), rng) == 3.0
    assert POLICY.delay_s(0, rate_limited(30.0), rng) == 5.0  # capped at max_delay
    assert POLICY.delay_s(0, rate_limited(3.0), rng, remaining_s=1.5) == 1.5
    # A 429 without Retry-After backs off like any other retryable error.
    assert 0.0 <= POLICY.delay_s(0, rate_limited(None), rng) <= 0.2


def test_retry_delay_never_passes_the_deadline():
    rng = random.Random(0)
    policy = RetryPolicy(jitter=False, base_delay_s=1.0, max_delay_s=10.0)
    assert policy.delay_s(3, DOWN, rng, remaining_s=2.5) == 2.5
    assert policy.delay_s(3, DOWN, rng, remaining_s=-1.0) == 0.0


def test_retry_same_target_until_attempts_used():
    assert POLICY.should_retry_same_target(DOWN, 1)
    assert POLICY.should_retry_same_target(DOWN, 2)
    assert not POLICY.should_retry_same_target(DOWN, 3)  # max_attempts counts the first


def test_retry_same_target_respects_deadline_and_retry_after():
    assert POLICY.should_retry_same_target(DOWN, 1, remaining_s=0.1)
    assert not POLICY.should_retry_same_target(DOWN, 1, remaining_s=0.0)
    assert POLICY.should_retry_same_target(rate_limited(2.0), 1, remaining_s=10.0)
    assert not POLICY.should_retry_same_target(rate_limited(20.0), 1, remaining_s=10.0)


@pytest.mark.parametrize(
    ("error", "retry_same", "next_target", "decision"),
    [
        (UpstreamTimeoutError("t", provider="p"), True, True, "next_target"),  # DESIGN §7
        (DOWN, True, True, "retry_same"),
        (UpstreamProtocolError("bad", provider="p"), True, True, "retry_same"),
        (rate_limited(1.0), True, True, "retry_same"),
        (UpstreamAuthError("key", provider="p"), False, True, "next_target"),
        (UpstreamNotFoundError("model", provider="p"), False, True, "next_target"),
        (ContentFilterError("blocked", provider="p"), False, True, "next_provider"),
        (ContextWindowExceededError("long", provider="p"), False, False, "larger_window"),
        (UpstreamBadRequestError("bad", provider="p"), False, False, "stop"),
        (ClientDisconnectedError("gone"), False, False, "stop"),
        (ValueError("ours"), False, False, "stop"),
    ],
)
def test_retry_classification(error, retry_same, next_target, decision):
    assert POLICY.should_retry_same_target(error, 1) is retry_same
    assert POLICY.should_try_next_target(error) is next_target
    assert POLICY.decide(error, 1, remaining_s=30.0) == decision


def test_retry_decide_moves_on_when_attempts_are_used():
    assert POLICY.decide(DOWN, 3, remaining_s=30.0) == "next_target"
    assert POLICY.decide(rate_limited(60.0), 1, remaining_s=30.0) == "next_target"


def test_retry_decide_stops_at_deadline():
    assert POLICY.decide(DOWN, 1, remaining_s=0.0) == "stop"
    assert POLICY.decide(ContentFilterError("x", provider="p"), 1, remaining_s=0.0) == "stop"


def test_attempt_budget_caps_total_attempts():
    budget = AttemptBudget(RetryPolicy(max_total_attempts=3), started_at=100.0, timeout_s=60.0)
    assert [budget.take(100.0 + i) for i in range(4)] == [True, True, True, False]
    assert budget.attempts == 3


def test_attempt_budget_stops_at_deadline():
    budget = AttemptBudget(POLICY, started_at=100.0, timeout_s=10.0)
    assert budget.remaining_s(104.0) == 6.0
    assert budget.take(109.9)
    assert not budget.take(110.0)
    assert budget.attempts == 1
    assert budget.remaining_s(200.0) == 0.0


def target(provider_type: str, model: str) -> Target:
    return Target(FakeAdapter(provider_type), provider_type, model)


def test_larger_window_models_keeps_only_bigger_windows():
    catalog = Catalog.shipped()
    failed = target("openai", "gpt-4o-mini")  # 128k
    rest = PublicModel("smart", (target("openai", "gpt-4o"),))  # 128k too
    big = PublicModel(
        "big",
        (target("google", "gemini-1.5-pro"), target("openai", "unknown-model")),
    )
    claude = PublicModel("claude", (target("anthropic", "claude-3-5-sonnet-latest"),))
    result = larger_window_models(catalog, failed, [rest, big, claude])
    assert [m.name for m in result] == ["big", "claude"]
    assert [t.model for t in result[0].targets] == ["gemini-1.5-pro"]


def test_larger_window_models_with_unknown_failed_window():
    catalog = Catalog.shipped()
    failed = target("openai", "local-llama")
    models = [
        PublicModel("known", (target("openai", "gpt-4o"),)),
        PublicModel("unknown", (target("openai", "other-local"),)),
    ]
    assert [m.name for m in larger_window_models(catalog, failed, models)] == ["known"]
