"""Which limit refused an admission, if any: read by the limiter (the error to answer with)
and by its events (what to report)."""

from __future__ import annotations

from dataclasses import dataclass

from stellara.limits.policy import EffectivePolicy
from stellara.state.base import Admission, LimitState

EPSILON = 1e-9  # float sums of costs drift; rounding alone never exceeds a limit


@dataclass(frozen=True, slots=True)
class Denial:
    """Which limit refused (or would have, in shadow mode) and how long to wait."""

    name: str
    state: LimitState | None
    retry_after_s: float


def denied_by(admission: Admission, policy: EffectivePolicy) -> Denial | None:
    """The limit that refused `admission`, or that would have in shadow mode; None if none."""
    if not policy.is_shadow:
        if admission.admitted:
            return None
        name = admission.denied_by or "blocked"
        state = next((s for s in admission.states if s.name == name), None)
        return Denial(name, state, admission.retry_after_s)
    # The store admitted against unbounded limits: a configured limit the request took past
    # its value is the one that would have refused it.
    for state in admission.states:
        if state.used > state.limit + EPSILON:
            return Denial(state.name, state, max(0.0, state.reset_at - admission.now))
    return None
