"""Circuit breakers: stop sending traffic to a provider that keeps failing, then probe it.

```
closed ──(failure_threshold failures in window_s, or failure_rate at ≥ min_volume calls)──▶ open
open ──(open_s elapsed; noticed on the next allow/snapshot)──▶ half_open
half_open ──(half_open_requests probe successes)──▶ closed
half_open ──(any probe failure)──▶ open
```

A `CircuitBreaker` is a pure state machine over a caller-supplied monotonic `now`; a
`BreakerBoard` owns one breaker per id (the provider id, or `provider/model` with
`scope: target`), reads the clock, and decides which errors count (`is_failure`).

The attempt loop calls `BreakerBoard.allow` right before each call — in half-open that hands out
one of the few probe permits — and `BreakerBoard.record` with the outcome. A call that is never
reported (the task was cancelled) would hold its permit for ever, so a permit older than `open_s`
is taken back.

Across gateway processes (a state backend with `breakers`, i.e. Redis) the app broadcasts each
local change, and every other board takes it with `apply_remote`: `open` opens its breaker at
the sender's opening time (so both half-open together), `closed` (a probe success or a reset)
closes it and clears its window. `half_open` is not applied: each process half-opens on its own
clock and probes on its own, so a recovering provider gets up to one probe round per process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from stellara._clock import Clock
from stellara.config.models import CircuitBreakerConfig
from stellara.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamProtocolError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

BreakerState = Literal["closed", "open", "half_open"]
BreakerScope = Literal["provider", "target"]
TransitionCallback = Callable[[str, BreakerState, BreakerState], None]
"""`on_transition(breaker_id, old_state, new_state)`, called synchronously on every change."""

_PROVIDER_FAULTS = (
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    UpstreamProtocolError,
    UpstreamRateLimitedError,
    UpstreamAuthError,
)

# The rolling window is kept as this many time buckets: memory stays bounded however busy the
# provider is, at the price of outcomes leaving the window up to window_s / _BUCKETS late.
_BUCKETS = 30


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Thresholds of every breaker on a board (`resilience.circuit_breaker`).

    Attributes:
        failure_threshold: failures within `window_s` that open the breaker.
        window_s: length of the rolling window of outcomes.
        open_s: how long the breaker stays open before letting probes through; also how long a
            half-open probe permit may stay unreported before it is taken back.
        half_open_requests: probe permits in half-open; this many successes close the breaker.
        scope: one breaker per provider id, or per `provider/model`.
        failure_rate: if set (in (0, 1]), also open when this share of the calls failed,
        min_volume: provided the window holds at least this many calls.
        slow_call_s: if set, a successful call slower than this counts as a failure.
    """

    failure_threshold: int = 5
    window_s: float = 60.0
    open_s: float = 30.0
    half_open_requests: int = 1
    scope: BreakerScope = "provider"
    failure_rate: float | None = None
    min_volume: int = 10
    slow_call_s: float | None = None

    @classmethod
    def from_config(cls, config: CircuitBreakerConfig) -> BreakerSettings:
        """The settings of `resilience.circuit_breaker`; the rate and slow-call rules stay off."""
        return cls(
            failure_threshold=config.failure_threshold,
            window_s=config.window_s,
            open_s=config.open_s,
            half_open_requests=config.half_open_requests,
            scope=config.scope,
        )


class _Window:
    """Call and failure counts over the last `window_s`, in fixed-width time buckets."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._width = window_s / _BUCKETS
        # Each bucket: [start, calls, failures].
        self._buckets: deque[list[float]] = deque()

    def add(self, now: float, failed: bool, *, is_new_call: bool = True) -> None:
        start = now - (now % self._width)
        if not self._buckets or self._buckets[-1][0] < start:
            self._buckets.append([start, 0.0, 0.0])
        bucket = self._buckets[-1]
        bucket[1] += 1 if is_new_call else 0
        bucket[2] += 1 if failed else 0

    def counts(self, now: float) -> tuple[int, int]:
        """`(calls, failures)` still inside the window at `now`."""
        while self._buckets and self._buckets[0][0] + self._width <= now - self._window_s:
            self._buckets.popleft()
        calls = sum(b[1] for b in self._buckets)
        failures = sum(b[2] for b in self._buckets)
        return int(calls), int(failures)

    def clear(self) -> None:
        self._buckets.clear()


class CircuitBreaker:
    """One breaker's state machine. Not thread-safe; the event loop is its only user.

    Use `BreakerBoard` in the gateway; use this directly only where a single breaker with an
    explicit clock is wanted (tests, a custom board).
    """

    def __init__(
        self,
        breaker_id: str,
        settings: BreakerSettings,
        on_transition: TransitionCallback | None = None,
    ) -> None:
        self.breaker_id = breaker_id
        self._settings = settings
        self._on_transition = on_transition
        self._state: BreakerState = "closed"
        self._window = _Window(settings.window_s)
        self._opened_at: float | None = None
        self._permits: deque[float] = deque()  # issue times of outstanding half-open probes
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        """The state as of the last call; `advance(now)` applies the open → half-open timer."""
        return self._state

    @property
    def opened_at(self) -> float | None:
        """Monotonic time the breaker last opened, while it is open or half-open."""
        return self._opened_at

    def advance(self, now: float) -> BreakerState:
        """Apply time-driven changes (open → half-open, reclaiming stale permits); the state."""
        if self._state == "open" and self._opened_at is not None:
            if now >= self._opened_at + self._settings.open_s:
                self._permits.clear()
                self._probe_successes = 0
                self._move("half_open")
        elif self._state == "half_open":
            while self._permits and self._permits[0] + self._settings.open_s <= now:
                self._permits.popleft()
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go out now; in half-open this takes a probe permit.

        Call it right before the call it guards, and report that call with `record`.
        """
        state = self.advance(now)
        if state == "closed":
            return True
        if state == "open":
            return False
        if len(self._permits) >= self._settings.half_open_requests:
            return False
        self._permits.append(now)
        return True

    def wait_s(self, now: float) -> float:
        """Seconds until `allow` may let a call through: until the half-open time while open,
        else 0 (a half-open breaker lets one through as soon as a probe permit is free)."""
        if self.advance(now) == "open" and self._opened_at is not None:
            return max(0.0, self._opened_at + self._settings.open_s - now)
        return 0.0

    def record(self, success: bool, now: float, *, latency_s: float | None = None) -> None:
        """Report the outcome of a call `allow` let through.

        A call slower than `slow_call_s` counts as a failure. Outcomes that arrive while the
        breaker is open, or in half-open without an outstanding permit, belong to calls sent
        before it opened and are ignored: they say nothing about the provider's recovery.
        """
        slow = self._settings.slow_call_s
        failed = not success or (slow is not None and latency_s is not None and latency_s > slow)
        state = self.advance(now)
        if state == "closed":
            self._window.add(now, failed)
            if failed and self._should_open(now):  # a success never opens a breaker
                self._open(now)
        elif state == "half_open" and self._permits:
            self._permits.popleft()
            if failed:
                self._open(now)
                return
            self._probe_successes += 1
            if self._probe_successes >= self._settings.half_open_requests:
                self._close()

    def record_late_failure(self, now: float) -> None:
        """Count a failure of a call already recorded as a success: a stream that broke off
        after its first chunk. The call is not counted twice, so failure rates stay exact."""
        if self.advance(now) == "closed":
            self._window.add(now, True, is_new_call=False)
            if self._should_open(now):
                self._open(now)

    def release(self, now: float) -> None:
        """Hand back a half-open permit whose call ended without a verdict (cancelled)."""
        if self.advance(now) == "half_open" and self._permits:
            self._permits.popleft()

    def reset(self) -> None:
        """Close the breaker and forget its window (the management API's reset)."""
        self._close()

    def force_open(self, opened_at: float) -> None:
        """Open as if it had opened at monotonic `opened_at` (another process's breaker did),
        so it half-opens at `opened_at + open_s`; an open breaker takes the new time."""
        self._open(opened_at)

    def snapshot(self, now: float) -> dict[str, object]:
        """State and counts at monotonic `now`; times are monotonic (the board converts them)."""
        state = self.advance(now)
        calls, failures = self._window.counts(now)
        next_half_open = None
        if state == "open" and self._opened_at is not None:
            next_half_open = self._opened_at + self._settings.open_s
        return {
            "state": state,
            "calls_in_window": calls,
            "failures_in_window": failures,
            "opened_at": self._opened_at,
            "next_half_open_at": next_half_open,
            "probes_in_flight": len(self._permits),
        }

    def _should_open(self, now: float) -> bool:
        calls, failures = self._window.counts(now)
        if failures >= self._settings.failure_threshold:
            return True
        rate = self._settings.failure_rate
        return rate is not None and calls >= self._settings.min_volume and failures >= rate * calls

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._permits.clear()
        self._probe_successes = 0
        self._move("open")

    def _close(self) -> None:
        self._window.clear()
        self._opened_at = None
        self._permits.clear()
        self._probe_successes = 0
        self._move("closed")

    def _move(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        if old != new and self._on_transition is not None:
            self._on_transition(self.breaker_id, old, new)


class BreakerBoard:
    """Every breaker of one gateway, created on first use; built once by `create_app`.

    Ids are the provider id, or `provider/model` with `scope: target`.
    """

    def __init__(
        self,
        settings: BreakerSettings,
        clock: Clock,
        on_transition: TransitionCallback | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._on_transition = on_transition
        self._breakers: dict[str, CircuitBreaker] = {}
        self._applying_remote = False

    def breaker_id(self, provider_id: str, model: str) -> str:
        """The id of the breaker guarding `model` on `provider_id`."""
        return f"{provider_id}/{model}" if self.settings.scope == "target" else provider_id

    def get(self, provider_id: str, model: str) -> CircuitBreaker:
        """The breaker guarding `model` on `provider_id`, created closed if new."""
        return self._get(self.breaker_id(provider_id, model))

    def _get(self, breaker_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(breaker_id)
        if breaker is None:
            breaker = CircuitBreaker(breaker_id, self.settings, self._on_transition)
            self._breakers[breaker_id] = breaker
        return breaker

    def allow(self, provider_id: str, model: str) -> bool:
        """Whether a call may go now (may take a half-open permit); a refusal costs no attempt."""
        return self.get(provider_id, model).allow(self._clock.monotonic())

    def is_open(self, provider_id: str, model: str) -> bool:
        """Whether the breaker refuses calls for now, without taking a permit.

        For ordering candidates ahead of time; the attempt loop must still call `allow`.
        """
        breaker = self._breakers.get(self.breaker_id(provider_id, model))
        return breaker is not None and breaker.advance(self._clock.monotonic()) == "open"

    def wait_s(self, provider_id: str, model: str) -> float:
        """Seconds until the breaker guarding `model` on `provider_id` may let a call through
        (0: it may now); what a refused client is told to wait (`Retry-After`)."""
        breaker = self._breakers.get(self.breaker_id(provider_id, model))
        return 0.0 if breaker is None else breaker.wait_s(self._clock.monotonic())

    def record(
        self,
        provider_id: str,
        model: str,
        error: BaseException | None,
        *,
        latency_s: float | None = None,
    ) -> None:
        """Report a call's outcome.

        An error that is not the provider's fault (the caller's 4xx) still shows the provider
        answering, so it counts as a success. A call that never finished for reasons outside
        the provider (client gone, task cancelled: anything not an `UpstreamError`) only hands
        its half-open permit back.
        """
        breaker = self.get(provider_id, model)
        now = self._clock.monotonic()
        if error is not None and not isinstance(error, UpstreamError):
            breaker.release(now)
            return
        success = error is None or not self.is_failure(error)
        breaker.record(success, now, latency_s=latency_s)

    def record_broken_stream(self, provider_id: str, model: str, error: BaseException) -> None:
        """Report that a stream, recorded as a success at its first chunk, then broke off."""
        if self.is_failure(error):
            self.get(provider_id, model).record_late_failure(self._clock.monotonic())

    def is_failure(self, error: BaseException) -> bool:
        """Whether `error` counts against the provider's breaker.

        Failures: timeouts, connection errors, 5xx, malformed answers, the provider's 429, and
        `UpstreamAuthError` — bad gateway credentials fail every call to that provider, so the
        breaker should route around it at once. Not failures: the caller's 4xx
        (`UpstreamBadRequestError`, context window, content filter) and anything that is not an
        `UpstreamError` (a client disconnect, a cancellation). `UpstreamNotFoundError` (no such
        model upstream) concerns one model only, so it counts only with `scope: target`; per
        provider it would take the provider's healthy models down with it.
        """
        if not isinstance(error, UpstreamError):
            return False
        if isinstance(error, UpstreamBadRequestError):
            return False
        if isinstance(error, UpstreamNotFoundError):
            return self.settings.scope == "target"
        if isinstance(error, _PROVIDER_FAULTS):
            return True
        # A bare `UpstreamError` from an adapter: judge it by the status the provider sent.
        status = error.upstream_status
        return status is None or status >= 500 or status in (408, 429)

    def reset(self, breaker_id: str) -> bool:
        """Close the breaker `breaker_id`; False if no such breaker exists yet."""
        breaker = self._breakers.get(breaker_id)
        if breaker is None:
            return False
        breaker.reset()
        return True

    @property
    def applying_remote(self) -> bool:
        """True while `apply_remote` runs. `on_transition` is called for remote changes too
        (they are events of this process as well); a callback that broadcasts changes to the
        other processes must skip these, or every change would echo back and forth."""
        return self._applying_remote

    def apply_remote(self, breaker_id: str, state: str, opened_at_epoch_s: float | None) -> None:
        """Take a change another process's board made to `breaker_id`.

        `open` opens it (created if new) at `opened_at_epoch_s`, moved onto this board's
        monotonic clock (never later than now; None: now); `closed` closes it and clears its
        window (a breaker not created yet stays absent: it is closed). `half_open` and unknown
        states are ignored: each process half-opens on its own clock.
        """
        if state not in ("open", "closed") or (
            state == "closed" and breaker_id not in self._breakers
        ):
            return
        breaker = self._get(breaker_id)
        self._applying_remote = True
        try:
            if state == "closed":
                breaker.reset()
                return
            mono = self._clock.monotonic()
            opened_at = mono
            if opened_at_epoch_s is not None:
                opened_at = min(mono, opened_at_epoch_s - self._clock.time() + mono)
            breaker.force_open(opened_at)
        finally:
            self._applying_remote = False

    def opened_at_epoch_s(self, breaker_id: str) -> float | None:
        """When `breaker_id` last opened, in epoch seconds; None unless open or half-open."""
        breaker = self._breakers.get(breaker_id)
        if breaker is None or breaker.opened_at is None:
            return None
        return self._clock.time() + (breaker.opened_at - self._clock.monotonic())

    def states(self) -> dict[str, BreakerState]:
        """Each breaker's state now, by id."""
        now = self._clock.monotonic()
        return {bid: b.advance(now) for bid, b in self._breakers.items()}

    def states_for(self, provider_id: str) -> list[BreakerState]:
        """The states now of every breaker guarding `provider_id` (one per model with
        `scope: target`; provider ids cannot contain `/`); empty if none was used yet."""
        now = self._clock.monotonic()
        prefix = f"{provider_id}/"
        return [
            b.advance(now)
            for bid, b in self._breakers.items()
            if bid == provider_id or bid.startswith(prefix)
        ]

    def snapshot(self) -> dict[str, dict[str, object]]:
        """JSON-ready state per breaker id, for `GET /ai-orchestration/circuit-breakers`.

        Times are given as ISO-8601 UTC and as epoch seconds (`*_epoch_s`), or `None`.
        """
        mono = self._clock.monotonic()
        wall = self._clock.time()
        result: dict[str, dict[str, object]] = {}
        for breaker_id, breaker in sorted(self._breakers.items()):
            raw = breaker.snapshot(mono)
            entry: dict[str, object] = {"id": breaker_id, **raw}
            for key in ("opened_at", "next_half_open_at"):
                when = raw[key]
                epoch = None if not isinstance(when, float | int) else wall + (when - mono)
                entry[key] = _iso(epoch)
                entry[f"{key}_epoch_s"] = epoch
            result[breaker_id] = entry
        return result


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
