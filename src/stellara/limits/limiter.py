"""The limits stage: one `admit` before the call, one `settle` after it.

`Limiter.admit` reserves a request's estimated amounts in every limit of the caller's tier in
one atomic state-backend call and answers a `Ticket`; the ticket's `settle` replaces the
estimate with what the call really used. What to reserve, and which requests can never fit
(refused before any state call), is `limits.fit`'s. Use `Limiter.status` / `Limiter.reset`
for the management API.

Decisions made here rather than in the backend: which error a refusal is (a `quota:` limit is
`insufficient_quota`, anything else `rate_limit_exceeded`), shadow mode (limits evaluated and
reported, never enforced), the warning at `warn_at`, burst spikes, and what happens when the
backend fails (`state.on_failure`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from stellara._clock import Clock
from stellara.config.models import TierConfig
from stellara.errors import QuotaExceededError, RateLimitedError, StateBackendError
from stellara.limits.denial import Denial, denied_by
from stellara.limits.estimate import actual_amounts
from stellara.limits.events import LimitEvents
from stellara.limits.fallback import BackendCircuit, LocalFallback
from stellara.limits.guard import AdmissionGuard, Refusal
from stellara.limits.outputs import OutputHistory
from stellara.limits.policy import (
    BURST_BASELINE,
    BURST_REQUESTS,
    QUOTA_NAMES,
    QUOTA_PREFIX,
    RATE_LIMIT_NAMES,
    EffectivePolicy,
    LimitsPolicy,
    is_tracking,
)
from stellara.schema.chat import Usage
from stellara.state.base import (
    Admission,
    Amounts,
    Limit,
    LimitState,
    LimitStore,
    PeriodLimit,
    WindowLimit,
)

logger = logging.getLogger(__name__)

OnFailure = Literal["open", "closed"]
StatusKind = Literal["rate", "quota"]


@dataclass(slots=True, eq=False)
class Ticket:
    """One request's admission. `settle` it exactly once when the request ends.

    `admission` holds the states of the configured limits after the decision (None when the
    backend failed and `on_failure: open` let the request through: `is_degraded`).
    `refusal` is the error to answer with; it is None for admitted and shadow requests.
    With `outputs`, the settle tells it the length of the answer the user got from
    `public_model` (a chat request's), for the estimates of their next requests. With `guard`,
    the settle drops the user's remembered refusal: a token window full of this request's
    reservation has room again once the reservation shrinks to what was used.
    """

    store: LimitStore
    policy: EffectivePolicy
    reservation: str
    admission: Admission | None
    events: LimitEvents | None = None  # told when the settle fails
    outputs: OutputHistory | None = None
    public_model: str = ""
    guard: AdmissionGuard | None = None
    refusal: RateLimitedError | None = None
    is_degraded: bool = False
    is_settled: bool = False

    def raise_if_refused(self) -> None:
        """Raise a copy of the refusal: the ticket keeps the original, and an exception it
        kept would hold the request's frames in a reference cycle once raised."""
        refusal = self.refusal
        if refusal is not None:
            raise type(refusal)(
                refusal.message, retry_after_s=refusal.retry_after_s, code=refusal.code
            )

    async def settle(self, usage: Usage | None, cost_usd: float) -> None:
        """Correct the reservation to the actual usage; a no-op after the first call, for a
        refused request (nothing was reserved) and when the backend was down at admission.

        A backend failure here is logged, not raised: the answer has already been given, and
        the reservation (an upper bound when `max_tokens` was set) stays counted.
        """
        if self.is_settled:
            return
        self.is_settled = True
        if self.refusal is not None:
            return
        if self.outputs is not None and usage is not None:
            self.outputs.observe(self.policy.user, self.public_model, usage.completion_tokens)
        if self.admission is None:
            return
        actual = actual_amounts(usage, cost_usd)
        try:
            await self.store.settle(
                self.policy.user, self.policy.store_limits, self.reservation, actual
            )
            if self.guard is not None:
                self.guard.forget(self.policy.user)
        except StateBackendError:
            logger.warning("could not settle limits of %s; the estimate stays", self.reservation)
            if self.events is not None:
                self.events.backend_failed("settle")


class Limiter:
    """Rate limits, burst detection and quotas over a `LimitStore`; built once per app."""

    def __init__(
        self,
        policy: LimitsPolicy,
        store: LimitStore,
        events: LimitEvents,
        clock: Clock,
        *,
        on_failure: OnFailure,
        fallback_share: float = 1.0,
    ) -> None:
        """`store` is the state backend's (shared); `fallback_share` is the part of each limit
        this process enforces on its own while that backend is down (`limits.fallback`)."""
        self.policy = policy
        self._store = store
        self.events = events
        self._clock = clock
        self._on_failure = on_failure
        self.circuit = BackendCircuit(clock)
        self.fallback = LocalFallback(clock, fallback_share)
        self.guard = AdmissionGuard(policy, clock)
        self.outputs = OutputHistory()  # what requests without `max_tokens` expect

    def resolve(
        self,
        user: str,
        key_tier: str | None,
        session_id: str | None,
        *,
        key_id: str = "",
        key_limits: TierConfig | None = None,
    ) -> EffectivePolicy | None:
        """The caller's limits, or None when none apply (then skip `admit` altogether).

        The clock only picks the time zone's offset (DST); windows and periods run on the
        backend's own time."""
        return self.policy.resolve(
            user,
            key_tier,
            session_id=session_id,
            now=self._clock.time(),
            key_id=key_id,
            key_limits=key_limits,
        )

    async def admit(
        self,
        policy: EffectivePolicy,
        amounts: Amounts,
        reservation: str,
        *,
        public_model: str | None = None,
    ) -> Ticket:
        """Reserve `amounts` in every limit of `policy` under `reservation` (what
        `limits.fit.reserve` says). A chat request names its `public_model`: its settle
        teaches `outputs` how long the user's answers from it are.

        While the shared backend is down (`BackendCircuit`), `on_failure: open` admits on this
        process's own limits (`LocalFallback`) and `closed` raises `StateBackendError`.
        """
        ticket = await self._admit(policy, amounts, reservation)
        if public_model is not None:
            ticket.outputs = self.outputs
            ticket.public_model = public_model
        return ticket

    async def _admit(self, policy: EffectivePolicy, amounts: Amounts, reservation: str) -> Ticket:
        if self.circuit.allows():
            try:
                raw = await self._store.admit(
                    policy.user, policy.store_limits, amounts, reservation
                )
            except StateBackendError:
                self.circuit.failed()
                self.events.backend_failed("admit")
                if self._on_failure == "closed":
                    raise
            else:
                self.circuit.succeeded()
                return await self._decide(policy, raw, amounts, reservation, self._store)
        elif self._on_failure == "closed":
            raise StateBackendError(
                "The state backend is unavailable; model calls are refused until it answers "
                "(state.on_failure: closed)."
            )
        return await self._admit_locally(policy, amounts, reservation)

    async def _admit_locally(
        self, policy: EffectivePolicy, amounts: Amounts, reservation: str
    ) -> Ticket:
        """The shared backend is down: this process's own limits decide (`limits.fallback`)."""
        local = self.fallback.policy(policy)
        store = self.fallback.store
        raw = await store.admit(local.user, local.store_limits, amounts, reservation)
        ticket = await self._decide(local, raw, amounts, reservation, store)
        ticket.is_degraded = True
        if ticket.refusal is None:
            self.fallback.admitted(policy)
        return ticket

    async def _decide(
        self,
        policy: EffectivePolicy,
        raw: Admission,
        amounts: Amounts,
        reservation: str,
        store: LimitStore,
    ) -> Ticket:
        admission = _with_configured_limits(raw, policy)
        ticket = Ticket(store, policy, reservation, admission, self.events, guard=self.guard)
        denied = denied_by(admission, policy)
        if denied is not None:
            event = self.events.refused(policy, denied, admission, reservation)
            if not policy.is_shadow:
                ticket.refusal = refusal = _refusal(denied, admission)
                # Only the shared count is remembered: a refusal by this process's fallback
                # limits would outlive the outage, refusing what Redis admits once back.
                if store is self._store and _passes_no_request(denied, policy):
                    until = self._clock.monotonic() + refusal.retry_after_s
                    memo = Refusal(until, type(refusal), refusal.message, event)
                    self.guard.remember(policy.user, denied.name, memo)
                return ticket
        self.events.warn_crossings(policy, admission, amounts, reservation)
        await self._detect_spike(policy, admission, reservation)
        return ticket

    async def _detect_spike(
        self, policy: EffectivePolicy, admission: Admission, reservation: str
    ) -> None:
        """Block the user for one burst window when their burst-window rate is a spike."""
        burst = policy.burst
        if burst is None or burst.spike_factor is None:
            return
        windows = {
            limit.name: (limit, state)
            for limit, state in zip(policy.limits, admission.states, strict=True)
            if isinstance(limit, WindowLimit)
        }
        recent = windows.get(BURST_REQUESTS)
        baseline = windows.get("rate:requests") or windows.get(BURST_BASELINE)
        if recent is None or baseline is None:
            return
        recent_count, baseline_count = recent[1].used, baseline[1].used
        if recent_count < burst.spike_min_requests:
            return
        recent_rate = recent_count / recent[0].window_s
        baseline_rate = baseline_count / baseline[0].window_s
        if recent_rate <= burst.spike_factor * baseline_rate:
            return
        self.events.spike(policy, recent_rate, baseline_rate, reservation)
        if policy.is_shadow:
            return
        try:
            await self._store.block(policy.user, recent[0].window_s)
        except StateBackendError:
            self.events.backend_failed("block")
            logger.warning("state backend failed; burst of %s not throttled", policy.user)

    async def status(
        self, user: str, key_tier: str | None, kind: StatusKind, *, session_id: str | None
    ) -> tuple[EffectivePolicy | None, tuple[LimitState, ...], float]:
        """The user's current use of their rate limits or quotas, without recording anything:
        the policy (None when unlimited), the states of the configured limits, and when."""
        now = self._clock.time()
        policy = self.policy.resolve(user, key_tier, session_id=session_id, now=now)
        if policy is None:
            return None, (), now
        pairs = [
            (limit, store_limit)
            for limit, store_limit in zip(policy.limits, policy.store_limits, strict=True)
            if limit.name.startswith(QUOTA_PREFIX) == (kind == "quota") and not is_tracking(limit)
        ]
        states = await self._store.read(user, [store_limit for _, store_limit in pairs])
        limits = [limit for limit, _ in pairs]
        return policy, _configured(states, limits), now

    async def reset(self, user: str, kind: StatusKind) -> None:
        """Forget the user's use of every rate limit (and burst window) or every quota."""
        names = QUOTA_NAMES if kind == "quota" else RATE_LIMIT_NAMES
        self.guard.forget(user)
        await self.fallback.store.reset(user, names)
        await self._store.reset(user, names)


def _with_configured_limits(admission: Admission, policy: EffectivePolicy) -> Admission:
    """In shadow mode the store saw unbounded limits; report against the configured ones."""
    if not policy.is_shadow:
        return admission
    states = _configured(admission.states, policy.limits)
    return Admission(
        admission.admitted, admission.denied_by, admission.retry_after_s, states, admission.now
    )


def _configured(states: Sequence[LimitState], limits: Sequence[Limit]) -> tuple[LimitState, ...]:
    return tuple(
        LimitState(s.name, s.used, limit.limit, max(0.0, limit.limit - s.used), s.reset_at)
        for s, limit in zip(states, limits, strict=True)
    )


def _passes_no_request(denial: Denial, policy: EffectivePolicy) -> bool:
    """Whether no request of the caller could pass `denial` before it resets, whatever its
    size: a burst block, a request count used up, a token window already overdrawn. (A token or
    cost limit that refused a large request may still admit a small one, and a session quota
    only binds its own session.)"""
    if denial.name == "blocked":
        return True
    state = denial.state
    limit = next((limit for limit in policy.limits if limit.name == denial.name), None)
    if state is None or limit is None:
        return False
    if isinstance(limit, PeriodLimit) and limit.period == "session":
        return False
    return limit.dimension == "requests" or (limit.dimension == "tokens" and state.remaining <= 0)


def _refusal(denial: Denial, admission: Admission) -> RateLimitedError:
    retry_after_s = max(1, math.ceil(denial.retry_after_s))
    if denial.name.startswith(QUOTA_PREFIX):
        reset_at = denial.state.reset_at if denial.state else admission.now + retry_after_s
        when = datetime.fromtimestamp(reset_at, UTC).isoformat().replace("+00:00", "Z")
        return QuotaExceededError(
            f"You exceeded your quota ({denial.name}); it resets at {when}.",
            retry_after_s=retry_after_s,
        )
    if denial.name == "blocked":
        message = f"Too many requests in a burst; throttled for {retry_after_s}s."
    else:
        message = f"Rate limit reached ({denial.name}); retry in {retry_after_s}s."
    return RateLimitedError(message, retry_after_s=retry_after_s)
