"""The in-process state backend: exact limits, dashboard sessions and stored Responses API
responses for one gateway process.

Sliding windows are sliding logs with running totals: every admitted request is an entry
`(time, reservation, amount)`; entries older than the window leave it and their amounts leave
the total. That is exact (no approximation at window edges) and costs O(1) amortised per
request, since each entry is added once and removed once.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from stellara._clock import Clock, SystemClock
from stellara.errors import StoredResponseTooLargeError
from stellara.state.base import (
    Admission,
    Amounts,
    ArmSums,
    Limit,
    LimitState,
    PeriodLimit,
    StoredResponse,
    WindowLimit,
    done,
    stored_bytes,
)
from stellara.state.periods import period_bounds

# Float sums of costs drift by ~1e-12; a limit is not exceeded by rounding alone.
EPSILON = 1e-9
SWEEP_EVERY = 10_000  # admissions between sweeps of expired periods and empty windows
MAX_SESSIONS = 1_000  # dashboard sessions kept at once; a sign-in past it ends the oldest
# Expired responses a `put` drops from the oldest end at most, beyond those it evicts for room:
# bounds one call's work; the rest go at later calls (and first, when room is needed).
PRUNE_RESPONSES = 100


@dataclass(slots=True)
class _Entry:
    at: float
    reservation: str
    amount: float


@dataclass(slots=True)
class _Window:
    entries: deque[_Entry] = field(default_factory=deque)
    total: float = 0.0

    def prune(self, now: float, window_s: float) -> None:
        horizon = now - window_s
        entries = self.entries
        while entries and entries[0].at <= horizon:
            self.total -= entries.popleft().amount
        if not entries:
            self.total = 0.0  # no drift survives an empty window

    def wait_for_room(self, amount: float, limit: float, now: float, window_s: float) -> float:
        """Seconds until `amount` fits, as the oldest entries leave the window."""
        excess = self.total + amount - limit
        for entry in self.entries:
            excess -= entry.amount
            if excess <= EPSILON:
                return max(0.0, entry.at + window_s - now)
        return window_s  # larger than the limit itself: refused until the limit changes


@dataclass(slots=True)
class _Period:
    key: str
    used: float = 0.0
    ends_at: float = 0.0
    amounts: dict[str, float] = field(default_factory=dict)  # per reservation, for settle


class MemoryLimitStore:
    """`LimitStore` for one process. Single-threaded asyncio makes each call atomic."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._windows: dict[tuple[str, str], _Window] = {}
        # (scope, limit name, session id or "") → the current period of that limit
        self._periods: dict[tuple[str, str, str], _Period] = {}
        self._calls = 0
        self._blocked_until: dict[str, float] = {}

    async def admit(
        self, scope: str, limits: Sequence[Limit], amounts: Amounts, reservation: str
    ) -> Admission:
        now = self._clock.time()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        blocked_until = self._blocked_until.get(scope, 0.0)
        if blocked_until > now:
            states = tuple(self._state(scope, limit, now) for limit in limits)
            return Admission(False, "blocked", blocked_until - now, states, now)
        for limit in limits:
            amount = amounts.get(limit.dimension, 0.0)
            wait = self._wait(scope, limit, amount, now)
            if wait is not None:
                states = tuple(self._state(scope, lim, now) for lim in limits)
                return Admission(False, limit.name, wait, states, now)
        for limit in limits:
            self._record(scope, limit, reservation, amounts.get(limit.dimension, 0.0), now)
        states = tuple(self._state(scope, limit, now) for limit in limits)
        return Admission(True, None, 0.0, states, now)

    async def settle(
        self, scope: str, limits: Sequence[Limit], reservation: str, actual: Amounts
    ) -> None:
        now = self._clock.time()
        for limit in limits:
            amount = actual.get(limit.dimension, 0.0)
            if isinstance(limit, WindowLimit):
                window = self._windows.get((scope, limit.name))
                if window is None:
                    continue
                for entry in window.entries:
                    if entry.reservation == reservation:
                        window.total += amount - entry.amount
                        entry.amount = amount
                        break
            else:
                period = self._period(scope, limit, now)
                previous = period.amounts.pop(reservation, None)
                if previous is not None:
                    period.used = max(0.0, period.used + amount - previous)

    async def read(self, scope: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        now = self._clock.time()
        return tuple(self._state(scope, limit, now) for limit in limits)

    async def reset(self, scope: str, names: Sequence[str] | None = None) -> None:
        for window_key in [k for k in self._windows if _matches(k, scope, names)]:
            del self._windows[window_key]
        for period_key in [k for k in self._periods if _matches(k, scope, names)]:
            del self._periods[period_key]
        if names is None:
            self._blocked_until.pop(scope, None)

    async def block(self, scope: str, seconds: float) -> None:
        until = self._clock.time() + seconds
        self._blocked_until[scope] = max(until, self._blocked_until.get(scope, 0.0))

    # -- one limit

    def _wait(self, scope: str, limit: Limit, amount: float, now: float) -> float | None:
        """None when `amount` fits now, else the seconds until it would."""
        if isinstance(limit, WindowLimit):
            window = self._window(scope, limit, now)
            if window.total + amount <= limit.limit + EPSILON:
                return None
            return window.wait_for_room(amount, limit.limit, now, limit.window_s)
        period = self._period(scope, limit, now)
        if period.used + amount <= limit.limit + EPSILON:
            return None
        return max(0.0, period.ends_at - now)

    def _record(
        self, scope: str, limit: Limit, reservation: str, amount: float, now: float
    ) -> None:
        if isinstance(limit, WindowLimit):
            window = self._window(scope, limit, now)
            window.entries.append(_Entry(now, reservation, amount))
            window.total += amount
        else:
            period = self._period(scope, limit, now)
            period.used += amount
            period.amounts[reservation] = amount
            if limit.period == "session":
                period.ends_at = now + limit.idle_s

    def _state(self, scope: str, limit: Limit, now: float) -> LimitState:
        if isinstance(limit, WindowLimit):
            window = self._window(scope, limit, now)
            used = window.total
            reset_at = window.entries[0].at + limit.window_s if window.entries else now
        else:
            period = self._period(scope, limit, now)
            used, reset_at = period.used, period.ends_at
        return LimitState(limit.name, used, limit.limit, max(0.0, limit.limit - used), reset_at)

    def _window(self, scope: str, limit: WindowLimit, now: float) -> _Window:
        window = self._windows.get((scope, limit.name))
        if window is None:
            window = self._windows[scope, limit.name] = _Window()
        window.prune(now, limit.window_s)
        return window

    def _period(self, scope: str, limit: PeriodLimit, now: float) -> _Period:
        if limit.period == "session":
            table_key = (scope, limit.name, limit.session_id)
            period = self._periods.get(table_key)
            if period is None or period.ends_at <= now:  # new, or idle past its expiry
                period = self._periods[table_key] = _Period("", ends_at=now + limit.idle_s)
            return period
        key, ends_at = period_bounds(limit.period, now, limit.utc_offset_s)
        table_key = (scope, limit.name, "")
        period = self._periods.get(table_key)
        if period is None or period.key != key:  # a new day or month starts from zero
            period = self._periods[table_key] = _Period(key, ends_at=ends_at)
        return period

    def _sweep(self, now: float) -> None:
        """Drop what can no longer matter, so idle users and old sessions do not pile up."""
        for period_key in [k for k, p in self._periods.items() if p.ends_at <= now]:
            del self._periods[period_key]
        for window_key in [k for k, w in self._windows.items() if not w.entries]:
            del self._windows[window_key]
        for scope in [s for s, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[scope]


def _matches(key: tuple[str, ...], scope: str, names: Sequence[str] | None) -> bool:
    return key[0] == scope and (names is None or key[1] in names)


class MemorySessionStore:
    """`SessionStore` for one process, holding at most `max_sessions`.

    Only the master key opens a session, so the cap is against a script that signs in in a
    loop: when full, expired sessions go first, then the oldest ones.
    """

    def __init__(self, clock: Clock | None = None, *, max_sessions: int = MAX_SESSIONS) -> None:
        self._clock = clock or SystemClock()
        self._max_sessions = max_sessions
        # digest → (expires at, key fingerprint), oldest first
        self._sessions: dict[str, tuple[float, str]] = {}

    async def open(self, digest: str, key_fingerprint: str, ttl_s: float) -> None:
        now = self._clock.time()
        if len(self._sessions) >= self._max_sessions:
            self._sweep(now)
        while len(self._sessions) >= self._max_sessions:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[digest] = (now + ttl_s, key_fingerprint)

    async def find(self, digest: str) -> str | None:
        session = self._sessions.get(digest)
        if session is None:
            return None
        expires_at, key_fingerprint = session
        if expires_at <= self._clock.time():
            del self._sessions[digest]
            return None
        return key_fingerprint

    async def revoke(self, digest: str) -> None:
        self._sessions.pop(digest, None)

    def _sweep(self, now: float) -> None:
        for digest in [d for d, (expires_at, _) in self._sessions.items() if expires_at <= now]:
            del self._sessions[digest]


@dataclass(frozen=True, slots=True)
class _StoredEntry:
    response: StoredResponse
    expires_at: float
    size: int


class MemoryResponsesStore:
    """`ResponsesStore` for one process: entries in the order they were stored, with a running
    total of their bytes, so evicting the oldest is O(1) and each entry is counted once.

    An expired entry leaves when it is read or deleted, or when it is the oldest at a `put`;
    until then its bytes count. Entries stored with one TTL expire oldest first, so the
    expired ones are always the first to go, as on Redis.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._entries: OrderedDict[str, _StoredEntry] = OrderedDict()  # oldest first
        self._bytes = 0

    async def start_put(
        self, response_id: str, user: str, blob: bytes, ttl_s: float, *, max_stored_bytes: int
    ) -> Awaitable[None]:
        size = stored_bytes(response_id, user, blob)
        if size > max_stored_bytes:
            raise StoredResponseTooLargeError(size, max_stored_bytes)
        now = self._clock.time()
        self._remove(response_id)
        for _ in range(PRUNE_RESPONSES):
            oldest = next(iter(self._entries.values()), None)
            if oldest is None or oldest.expires_at > now:
                break
            self._bytes -= self._entries.popitem(last=False)[1].size
        while self._bytes + size > max_stored_bytes:
            self._bytes -= self._entries.popitem(last=False)[1].size
        self._entries[response_id] = _StoredEntry(StoredResponse(user, blob), now + ttl_s, size)
        self._bytes += size
        return done()

    async def get(self, response_id: str) -> StoredResponse | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        if entry.expires_at <= self._clock.time():
            self._remove(response_id)
            return None
        return entry.response

    async def delete(self, response_id: str) -> bool:
        entry = self._remove(response_id)
        return entry is not None and entry.expires_at > self._clock.time()

    def _remove(self, response_id: str) -> _StoredEntry | None:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry


class MemoryArmStore:
    """`ArmStore` in this process."""

    def __init__(self) -> None:
        self._arms: dict[str, dict[str, ArmSums]] = {}

    async def add(self, experiment: str, variant: str, reward: float) -> None:
        arms = self._arms.setdefault(experiment, {})
        n, total, total_sq = arms.get(variant, ArmSums(0.0, 0.0, 0.0))
        arms[variant] = ArmSums(n + 1, total + reward, total_sq + reward * reward)

    async def read(self, experiment: str) -> dict[str, ArmSums]:
        return dict(self._arms.get(experiment, {}))

    async def clear(self, experiment: str) -> None:
        self._arms.pop(experiment, None)


class MemoryBackend:
    """The `memory` state backend: nothing to connect to, always ready."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._limits = MemoryLimitStore(clock)
        self._sessions = MemorySessionStore(clock)
        self._responses = MemoryResponsesStore(clock)
        self._arms = MemoryArmStore()

    @property
    def name(self) -> str:
        return "memory"

    @property
    def limits(self) -> MemoryLimitStore:
        return self._limits

    @property
    def cache(self) -> None:
        return None  # one process: the L1 is the whole cache

    @property
    def keys(self) -> None:
        return None

    @property
    def breakers(self) -> None:
        return None  # one process: its breaker board is the only one

    @property
    def event_channel(self) -> None:
        return None  # one process: nothing outside it listens

    @property
    def stats(self) -> None:
        return None  # one process: its own statistics are the deployment's

    @property
    def sessions(self) -> MemorySessionStore:
        return self._sessions

    @property
    def responses(self) -> MemoryResponsesStore:
        return self._responses

    @property
    def arms(self) -> MemoryArmStore:
        return self._arms

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
