"""The events the limits stage publishes: refusals, quota warnings and bursts.

Every event names the user, tier, limit and request (`request_id`) and says whether the tier
is in shadow mode (`shadow: true`: reported, not enforced). Events are only built when
someone subscribes, so they cost nothing otherwise.
"""

from __future__ import annotations

import msgspec

from stellara.errors import ConcurrencyLimitedError
from stellara.events import (
    BurstLimited,
    BurstSpiked,
    EventBus,
    LimitRefused,
    QuotaExceeded,
    QuotaWarning,
    RateLimitExceeded,
    StateBackendFailed,
)
from stellara.limits.denial import Denial
from stellara.limits.policy import BURST_REQUESTS, QUOTA_PREFIX, EffectivePolicy, is_tracking
from stellara.state.base import Admission, Amounts


class LimitEvents:
    """Publishes the limits stage's events on the app's bus."""

    def __init__(self, bus: EventBus, *, warn_at: float, backend: str = "memory") -> None:
        self._bus = bus
        self._warn_at = warn_at
        self._backend = backend

    def backend_failed(self, operation: str) -> None:
        """The state backend failed an `operation` (admit, settle, block)."""
        if self._bus.has_subscribers(StateBackendFailed):
            self._bus.publish(StateBackendFailed(backend=self._backend, operation=operation))

    def refused(
        self, policy: EffectivePolicy, denial: Denial, admission: Admission, request_id: str
    ) -> LimitRefused | None:
        """A limit refused the request (or would have, in shadow mode); the event, when one was
        published."""
        kind = QuotaExceeded if denial.name.startswith(QUOTA_PREFIX) else RateLimitExceeded
        event = self._refusal(kind, policy, denial, admission, request_id)
        if denial.name == BURST_REQUESTS:
            self._refusal(BurstLimited, policy, denial, admission, request_id)
        return event if isinstance(event, LimitRefused) else None

    def refused_again(self, event: LimitRefused, request_id: str) -> None:
        """A remembered refusal refused another request (`limits.guard`): the same facts."""
        self._bus.publish(msgspec.structs.replace(event, request_id=request_id))

    def concurrency_refused(
        self, user: str, tier: str, error: ConcurrencyLimitedError, request_id: str, now: float
    ) -> None:
        """A call over its tier's (or key's) concurrency was refused."""
        if self._bus.has_subscribers(RateLimitExceeded):
            event = RateLimitExceeded(
                request_id=request_id,
                user=user,
                tier=tier,
                shadow=False,
                limit="concurrency",
                used=float(error.limit),
                limit_value=float(error.limit),
                reset_at=now + error.retry_after_s,
                retry_after_s=float(error.retry_after_s),
            )
            self._bus.publish(event)

    def _refusal(
        self,
        kind: type[LimitRefused | BurstLimited],
        policy: EffectivePolicy,
        denial: Denial,
        admission: Admission,
        request_id: str,
    ) -> LimitRefused | BurstLimited | None:
        if not self._bus.has_subscribers(kind):
            return None
        state = denial.state
        refusal = kind(
            request_id=request_id,
            user=policy.user,
            tier=policy.tier,
            shadow=policy.is_shadow,
            limit=denial.name,
            used=state.used if state else None,
            limit_value=state.limit if state else None,
            reset_at=state.reset_at if state else admission.now + denial.retry_after_s,
            retry_after_s=denial.retry_after_s,
        )
        self._bus.publish(refusal)
        return refusal

    def warn_crossings(
        self, policy: EffectivePolicy, admission: Admission, amounts: Amounts, request_id: str
    ) -> None:
        """`quota.warning` for each quota this request took across `warn_at`: once per
        crossing, since only the request that crosses sees the use before below the mark."""
        if not self._bus.has_subscribers(QuotaWarning):
            return
        for limit, state in zip(policy.limits, admission.states, strict=True):
            if not limit.name.startswith(QUOTA_PREFIX) or is_tracking(limit) or limit.limit <= 0:
                continue
            mark = self._warn_at * limit.limit
            before = state.used - amounts.get(limit.dimension, 0.0)
            if before < mark <= state.used:
                warning = QuotaWarning(
                    request_id=request_id,
                    user=policy.user,
                    tier=policy.tier,
                    shadow=policy.is_shadow,
                    limit=limit.name,
                    used=state.used,
                    limit_value=limit.limit,
                    warn_at=self._warn_at,
                    reset_at=state.reset_at,
                )
                self._bus.publish(warning)

    def spike(
        self, policy: EffectivePolicy, recent_rate: float, baseline_rate: float, request_id: str
    ) -> None:
        """The user's burst-window rate spiked against their own recent rate."""
        if not self._bus.has_subscribers(BurstSpiked):
            return
        spiked = BurstSpiked(
            request_id=request_id,
            user=policy.user,
            tier=policy.tier,
            shadow=policy.is_shadow,
            recent_rate_per_s=recent_rate,
            baseline_rate_per_s=baseline_rate,
            blocked_s=policy.burst.window_s if policy.burst else 0.0,
        )
        self._bus.publish(spiked)
