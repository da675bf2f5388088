"""The events the limits stage publishes: refusals, quota warnings and bursts.

Every event names the user, tier, limit and request (`request_id`) and says whether the tier
is in shadow mode (`shadow: true`: reported, not enforced). Events are only built when
someone subscribes, so they cost nothing otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stellara.limits.policy import BURST_REQUESTS, QUOTA_PREFIX, EffectivePolicy, is_tracking
from stellara.state.base import Admission, Amounts
from stellara.telemetry.events import (
    BURST_DETECTED,
    QUOTA_EXCEEDED,
    QUOTA_WARNING,
    RATE_LIMIT_EXCEEDED,
    STATE_BACKEND_ERROR,
    Event,
    EventBus,
)

if TYPE_CHECKING:
    from stellara.limits.limiter import Denial


class LimitEvents:
    """Publishes the limits stage's events on the app's bus."""

    def __init__(self, bus: EventBus, *, warn_at: float, backend: str = "memory") -> None:
        self._bus = bus
        self._warn_at = warn_at
        self._backend = backend

    def backend_failed(self, operation: str) -> None:
        """The state backend failed an `operation` (admit, settle, block)."""
        if self._bus.has_subscribers(STATE_BACKEND_ERROR):
            facts = {"backend": self._backend, "operation": operation}
            self._bus.publish(Event(STATE_BACKEND_ERROR, facts))

    def refused(
        self, policy: EffectivePolicy, denial: Denial, admission: Admission, request_id: str
    ) -> None:
        """A limit refused the request (or would have, in shadow mode)."""
        name = QUOTA_EXCEEDED if denial.name.startswith(QUOTA_PREFIX) else RATE_LIMIT_EXCEEDED
        state = denial.state
        facts = {
            "limit": denial.name,
            "used": state.used if state else None,
            "limit_value": state.limit if state else None,
            "reset_at": state.reset_at if state else admission.now + denial.retry_after_s,
            "retry_after_s": denial.retry_after_s,
        }
        self._publish(name, policy, request_id, facts)
        if denial.name == BURST_REQUESTS:
            self._publish(BURST_DETECTED, policy, request_id, {"reason": "limit", **facts})

    def warn_crossings(
        self, policy: EffectivePolicy, admission: Admission, amounts: Amounts, request_id: str
    ) -> None:
        """`quota.warning` for each quota this request took across `warn_at`: once per
        crossing, since only the request that crosses sees the use before below the mark."""
        if not self._bus.has_subscribers(QUOTA_WARNING):
            return
        for limit, state in zip(policy.limits, admission.states, strict=True):
            if not limit.name.startswith(QUOTA_PREFIX) or is_tracking(limit) or limit.limit <= 0:
                continue
            mark = self._warn_at * limit.limit
            before = state.used - amounts.get(limit.dimension, 0.0)
            if before < mark <= state.used:
                facts = {
                    "limit": limit.name,
                    "used": state.used,
                    "limit_value": limit.limit,
                    "warn_at": self._warn_at,
                    "reset_at": state.reset_at,
                }
                self._publish(QUOTA_WARNING, policy, request_id, facts)

    def spike(
        self, policy: EffectivePolicy, recent_rate: float, baseline_rate: float, request_id: str
    ) -> None:
        """The user's burst-window rate spiked against their own recent rate."""
        facts = {
            "reason": "spike",
            "recent_rate_per_s": recent_rate,
            "baseline_rate_per_s": baseline_rate,
            "blocked_s": policy.burst.window_s if policy.burst else 0.0,
        }
        self._publish(BURST_DETECTED, policy, request_id, facts)

    def _publish(
        self, name: str, policy: EffectivePolicy, request_id: str, facts: dict[str, Any]
    ) -> None:
        if not self._bus.has_subscribers(name):
            return
        data = {
            "request_id": request_id,
            "user": policy.user,
            "tier": policy.tier,
            "shadow": policy.is_shadow,
            **facts,
        }
        self._bus.publish(Event(name, data))
