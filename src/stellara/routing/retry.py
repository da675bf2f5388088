"""What the attempt loop does after a failed call: wait and retry, move on, or give up.

`retry.max_attempts` counts attempts on one target, the first included; then the
next target; then the model's `fallbacks` in order. The whole request lives within
`resilience.timeout_s`, and `max_total_attempts` caps the calls of one request across targets
and fallbacks. A target whose breaker refuses the call costs no attempt: the loop simply does
not `take` from the budget for it.

| error                                        | `decide`                                  |
|----------------------------------------------|-------------------------------------------|
| timeout, unavailable/5xx, protocol, 429      | `retry_same` while attempts and time are  |
|                                              | left, else `next_target`                  |
| `UpstreamAuthError`, `UpstreamNotFoundError` | `next_target` (this target is misconfigured) |
| `ContentFilterError`                         | `next_provider`: never the same provider  |
| `ContextWindowExceededError`                 | `larger_window`: `larger_window_models`   |
| other `UpstreamBadRequestError`              | `stop`: the client's fault, relayed as 400 |
| anything not an `UpstreamError`; no time left | `stop`                                   |
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from stellara.catalog import Catalog
from stellara.config.models import ResilienceConfig
from stellara.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
)
from stellara.routing.models import PublicModel, Target

Decision = Literal["retry_same", "next_target", "next_provider", "larger_window", "stop"]
"""`next_provider`: the next target whose provider differs from the failed one's."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry timing and limits (`resilience.retry`), in seconds.

    Attributes:
        max_attempts: attempts on one target, the first included.
        base_delay_s: the backoff ceiling of the first retry; it doubles on each retry.
        max_delay_s: cap of every wait, `Retry-After` included.
        jitter: full jitter (a uniform draw in [0, ceiling]) so retries of many requests
            spread out instead of arriving together; without it the wait is the ceiling.
        max_total_attempts: calls of one request across all targets and fallbacks.
    """

    max_attempts: int = 3
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    jitter: bool = True
    max_total_attempts: int = 6

    @classmethod
    def from_config(cls, config: ResilienceConfig) -> RetryPolicy:
        """The policy of `resilience.retry` and `resilience.max_total_attempts`."""
        retry = config.retry
        return cls.from_ms(
            retry.max_attempts,
            retry.base_delay_ms,
            retry.max_delay_ms,
            retry.jitter,
            max_total_attempts=config.max_total_attempts,
        )

    @classmethod
    def from_ms(
        cls,
        max_attempts: int,
        base_delay_ms: float,
        max_delay_ms: float,
        jitter: bool = True,
        *,
        max_total_attempts: int = 6,
    ) -> RetryPolicy:
        """A policy from the config's millisecond fields."""
        return cls(
            max_attempts=max(1, max_attempts),
            base_delay_s=max(0.0, base_delay_ms) / 1000,
            max_delay_s=max(0.0, max_delay_ms) / 1000,
            jitter=jitter,
            max_total_attempts=max(1, max_total_attempts),
        )

    def delay_s(
        self,
        retry: int,
        error: BaseException | None,
        rng: random.Random,
        *,
        remaining_s: float | None = None,
    ) -> float:
        """How long to wait before retry number `retry` (0 for the first retry).

        The provider's `Retry-After` replaces the backoff: it says when a retry can succeed,
        and waiting less only earns another 429. It is still capped at `max_delay_s`. Every
        wait is capped at `remaining_s`, the time left before the request's deadline.
        """
        retry_after = error.retry_after_s if isinstance(error, UpstreamRateLimitedError) else None
        if retry_after is not None:
            delay = min(max(0.0, retry_after), self.max_delay_s)
        else:
            ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, retry))
            delay = rng.uniform(0.0, ceiling) if self.jitter else ceiling
        if remaining_s is not None:
            delay = min(delay, max(0.0, remaining_s))
        return delay

    def should_retry_same_target(
        self, error: BaseException, attempts_made: int, *, remaining_s: float | None = None
    ) -> bool:
        """Whether to call the same target again after `attempts_made` attempts on it.

        No when the error is not retryable (content filter and every other 4xx included), the
        target's attempts are used up, no time is left, or the provider's `Retry-After` asks
        for a wait longer than the time left (another target may answer sooner).
        """
        if not isinstance(error, UpstreamError) or not error.is_retryable:
            return False
        if attempts_made >= self.max_attempts:
            return False
        if remaining_s is None:
            return True
        if remaining_s <= 0:
            return False
        retry_after = error.retry_after_s if isinstance(error, UpstreamRateLimitedError) else None
        return retry_after is None or retry_after < remaining_s

    def should_try_next_target(self, error: BaseException) -> bool:
        """Whether another target may take the request after `error`.

        Yes for provider-side failures and `ContentFilterError` (on another provider only —
        see `decide`). No for the client's own bad request, which every target would refuse,
        and for `ContextWindowExceededError`, which only a larger model can take.
        """
        if not isinstance(error, UpstreamError):
            return False
        if isinstance(error, ContentFilterError):
            return True
        return not isinstance(error, UpstreamBadRequestError)

    def decide(
        self, error: BaseException, attempts_made: int, *, remaining_s: float | None = None
    ) -> Decision:
        """The attempt loop's next step after `error` on a target tried `attempts_made` times."""
        if remaining_s is not None and remaining_s <= 0:
            return "stop"
        if isinstance(error, ContextWindowExceededError):
            return "larger_window"
        if isinstance(error, ContentFilterError):
            return "next_provider"
        if isinstance(error, UpstreamTimeoutError):
            return "next_target"  # a timed-out target is followed by the next one
        if self.should_retry_same_target(error, attempts_made, remaining_s=remaining_s):
            return "retry_same"
        if self.should_try_next_target(error):
            return "next_target"
        return "stop"


class AttemptBudget:
    """The attempts and time one request has left; one per request.

    Call `take` right before each upstream call (after the breaker allowed it).
    """

    def __init__(self, policy: RetryPolicy, started_at: float, timeout_s: float) -> None:
        self.policy = policy
        self.deadline = started_at + timeout_s
        self.attempts = 0

    def remaining_s(self, now: float) -> float:
        """Seconds left before the request's deadline (never negative)."""
        return max(0.0, self.deadline - now)

    def take(self, now: float) -> bool:
        """Count one attempt; False (nothing counted) when the cap or the deadline is reached."""
        if self.attempts >= self.policy.max_total_attempts or now >= self.deadline:
            return False
        self.attempts += 1
        return True


def larger_window_models(
    catalog: Catalog, failed: Target, candidates: Sequence[PublicModel]
) -> list[PublicModel]:
    """`candidates` narrowed to targets whose context window beats the failed target's.

    For `ContextWindowExceededError`: pass the failed model's untried targets (as a
    `PublicModel`) followed by its `fallbacks`; order is kept, so config order still decides
    among the larger models. A target whose window the catalog does not know is left out —
    nothing says it is larger. When the failed target's own window is unknown, every target
    with a known window is kept. Models left with no target are dropped.
    """
    failed_entry = catalog.lookup(failed.provider_type, failed.model)
    floor = failed_entry.context_window if failed_entry is not None else None
    result: list[PublicModel] = []
    for model in candidates:
        kept = tuple(t for t in model.targets if _window_above(catalog, t, floor))
        if kept:
            result.append(replace(model, targets=kept))
    return result


def _window_above(catalog: Catalog, target: Target, floor: int | None) -> bool:
    entry = catalog.lookup(target.provider_type, target.model)
    if entry is None or entry.context_window is None:
        return False
    return floor is None or entry.context_window > floor
