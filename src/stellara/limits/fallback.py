"""What the limits stage does while the shared state backend is down.

`on_failure: open` keeps serving when Redis is down, but never without limits: each process
enforces every limit on its own (`LocalFallback`, a memory limit store on the process's clock),
at `state.fallback_share` of its value, until the backend answers again. With N gateway
processes, `fallback_share: 1/N` keeps the deployment within the configured limits during an
outage; the default (1) keeps a single process exact and lets N processes admit up to N times
the limit. Requests admitted that way are counted per user and per tier.

"Down" means real failures, not one slow reply: `BackendCircuit` opens after
`FAILURES_TO_OPEN` failures in a row and then skips the backend for `OPEN_S` (so an outage
costs a request nothing, not a timeout each), then lets one request try it again.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import replace

from stellara._clock import Clock
from stellara.limits.policy import EffectivePolicy
from stellara.state.memory import MemoryLimitStore

logger = logging.getLogger(__name__)

FAILURES_TO_OPEN = 3
OPEN_S = 5.0
MAX_COUNTED_USERS = 10_000  # per-user counts kept for the busiest recent users only


class BackendCircuit:
    """Whether to call the shared backend: closed (yes), open (no, for `open_s`), then one
    trial at a time until a call succeeds."""

    def __init__(
        self, clock: Clock, *, failures_to_open: int = FAILURES_TO_OPEN, open_s: float = OPEN_S
    ) -> None:
        self._clock = clock
        self._failures_to_open = failures_to_open
        self._open_s = open_s
        self._failures = 0
        self._opened_at: float | None = None
        self._is_trying = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allows(self) -> bool:
        """Whether this request may call the backend (a trial, when the circuit is open and
        its time is up: only one at a time)."""
        if self._opened_at is None:
            return True
        if self._is_trying or self._clock.monotonic() - self._opened_at < self._open_s:
            return False
        self._is_trying = True
        return True

    def succeeded(self) -> None:
        if self._opened_at is not None:
            logger.warning("state backend answers again: limits are shared again")
        self._failures, self._opened_at, self._is_trying = 0, None, False

    def failed(self) -> None:
        self._failures += 1
        self._is_trying = False
        if self._opened_at is not None:
            self._opened_at = self._clock.monotonic()  # the trial failed: wait again
        elif self._failures >= self._failures_to_open:
            self._opened_at = self._clock.monotonic()
            logger.warning(
                "state backend failed %d times in a row: limits are enforced per process "
                "until it answers",
                self._failures,
            )


class LocalFallback:
    """This process's own limits while the shared backend is down, and the count of what it
    admitted."""

    def __init__(self, clock: Clock, share: float) -> None:
        self.store = MemoryLimitStore(clock)
        self._share = share
        self._by_user: OrderedDict[str, int] = OrderedDict()
        self._by_tier: Counter[str] = Counter()

    def policy(self, policy: EffectivePolicy) -> EffectivePolicy:
        """`policy` at this process's share of every limit."""
        if self._share == 1.0:
            return policy
        scaled = tuple(replace(limit, limit=limit.limit * self._share) for limit in policy.limits)
        store = tuple(
            replace(limit, limit=limit.limit * self._share) for limit in policy.store_limits
        )
        return replace(policy, limits=scaled, store_limits=store)

    def admitted(self, policy: EffectivePolicy) -> None:
        self._by_tier[policy.tier] += 1
        count = self._by_user.pop(policy.user, 0) + 1
        self._by_user[policy.user] = count  # most recent last
        if len(self._by_user) > MAX_COUNTED_USERS:
            self._by_user.popitem(last=False)

    def admissions_of(self, user: str) -> int:
        """Requests of `user` this process admitted on its own limits (since it started)."""
        return self._by_user.get(user, 0)

    def admissions_by_tier(self) -> dict[str, int]:
        return dict(self._by_tier)
