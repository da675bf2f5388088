"""Provider health: what live traffic and active probes say about each provider.

Passive records come from every call (`HealthBoard.record_call`), active ones from the prober
loop (`record_probe`, every `health_check.interval_s`). A provider's `status` is derived, in
this order:

1. `unhealthy` when every breaker guarding it is open;
2. `unhealthy` when its last active probe failed and nothing (call or probe) succeeded since;
3. `unhealthy` when ≥ 50 % of its counted calls failed (at least `min_volume` calls);
4. `degraded` when a breaker guarding it is open or half-open (with `scope: target`, one model
   down), or > 20 % of its counted calls failed (at least `min_volume` calls);
5. `healthy` otherwise, including a provider nothing is known about yet: it gets traffic, and
   the first calls or probe tell.

The counted calls are those of the last `window_s` seconds since the provider last recovered.
It recovers when it answers `recovery_successes` times in a row (calls and probes alike)
after counted calls of which at least half failed, however few: the calls before that run stop
counting. So the status follows a recovery within a few answers (once its breaker has closed
and calls or probes succeed) rather than when the failures leave the window, while a provider
that still fails often cannot flip to healthy on a lucky call: any failure restarts the run.
The same number of answers that condemns a provider by its rate (`min_volume`) acquits it by
default. A provider that fails now and then (`degraded`, under the unhealthy line) keeps its
whole window: runs of successes are common there and would hide its error rate.

What counts as an error: any `UpstreamError` except the caller's own 4xx
(`UpstreamBadRequestError` and its subclasses), which shows the provider answering. Auth and
not-found errors count: they break every call to that provider or model. Errors that are not
`UpstreamError`s (a client leaving) say nothing of the provider and are not recorded.

Statuses are derived, so a change shows when someone looks: a call, a probe, a breaker change
or a read of the board (`report`, `status`, `healthy_providers`) tells `on_change` of it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from stellara._clock import Clock
from stellara.errors import StellaraError, UpstreamBadRequestError, UpstreamError
from stellara.routing.breaker import BreakerBoard, BreakerState

HealthStatus = Literal["healthy", "degraded", "unhealthy"]
StatusChange = Callable[[str, HealthStatus, HealthStatus, str], None]
_SEVERITY: tuple[BreakerState, ...] = ("open", "half_open", "closed")


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Thresholds of the status rule (see the module docstring).

    Attributes:
        window_s: error rates count the calls of this many last seconds (since a recovery).
        max_samples: calls kept per provider (latency percentiles use their successes).
        min_volume: fewer counted calls than this never make a provider look bad.
        recovery_successes: answers in a row (calls or probes) after a bad spell that make
            its failures stop counting.
        degraded_error_rate: an error rate above this is `degraded`.
        unhealthy_error_rate: an error rate at or above this is `unhealthy`.
    """

    window_s: float = 300.0
    max_samples: int = 256
    min_volume: int = 5
    recovery_successes: int = 5
    degraded_error_rate: float = 0.2
    unhealthy_error_rate: float = 0.5


@dataclass(frozen=True, slots=True)
class _Call:
    seq: int  # the provider's calls in order: a recovery cuts by it, as calls may share a time
    at: float  # monotonic
    ok: bool
    latency_s: float | None


@dataclass(frozen=True, slots=True)
class _Event:
    """A last error or a last probe; `at_epoch_s` is wall time, `at` monotonic."""

    at: float
    at_epoch_s: float
    ok: bool
    message: str | None
    latency_s: float | None = None
    model: str | None = None
    code: str | None = None


class ProviderHealth:
    """The passive and active record of one provider."""

    def __init__(self, provider_id: str, settings: HealthSettings) -> None:
        self.provider_id = provider_id
        self._settings = settings
        self._calls: deque[_Call] = deque(maxlen=settings.max_samples)
        self._last_error: _Event | None = None
        self._last_probe: _Event | None = None
        # Set by a failed probe, cleared by any later success (call or probe).
        self._probe_failed = False
        self._recorded = 0  # calls recorded so far: the next call's `seq`
        self._counted_from = 0  # the first call's `seq` the error rate counts (a recovery)
        self._run = 0  # successes in a row, calls and probes alike
        self._run_from = 0  # the first call's `seq` of that run

    def record_call(
        self, now: float, wall: float, model: str, latency_s: float, error: BaseException | None
    ) -> None:
        """Record a finished call at monotonic `now` (wall clock `wall`)."""
        if error is not None and not isinstance(error, UpstreamError):
            return
        failed = error is not None and not isinstance(error, UpstreamBadRequestError)
        if failed and error is not None:
            self._run = 0
            self._last_error = _Event(
                now, wall, False, _message(error), latency_s, model, _code(error)
            )
        else:
            self._answered(now)
        latency = None if failed else max(0.0, latency_s)
        self._calls.append(_Call(self._recorded, now, not failed, latency))
        self._recorded += 1

    def record_probe(
        self,
        now: float,
        wall: float,
        ok: bool,
        latency_s: float | None,
        error: BaseException | str | None = None,
    ) -> None:
        """Record an active probe's result."""
        message = None if error is None else (error if isinstance(error, str) else _message(error))
        code = _code(error) if isinstance(error, BaseException) else None
        self._last_probe = _Event(now, wall, ok, message, latency_s, None, code)
        if ok:
            self._answered(now)
            return
        self._probe_failed = True
        self._run = 0
        if message is not None:
            self._last_error = _Event(now, wall, False, message, latency_s, None, code)

    def _answered(self, now: float) -> None:
        """Count a success into the run; the run that reaches `recovery_successes` after calls
        of which at least half failed (any number of them) ends that bad spell."""
        self._probe_failed = False
        if self._run == 0:
            self._run_from = self._recorded
        self._run += 1
        if self._run == self._settings.recovery_successes:
            rate, volume = self._error_rate(now, self._run_from)
            if volume and rate >= self._settings.unhealthy_error_rate:
                self._counted_from = self._run_from

    def error_rate(self, now: float) -> tuple[float, int]:
        """`(share of failed calls, number of calls)` among the counted calls: those of the
        window since the last recovery."""
        return self._error_rate(now, self._recorded)

    def _error_rate(self, now: float, before_seq: int) -> tuple[float, int]:
        since = now - self._settings.window_s
        first = self._counted_from
        outcomes = [c.ok for c in self._calls if c.at >= since and first <= c.seq < before_seq]
        if not outcomes:
            return 0.0, 0
        return outcomes.count(False) / len(outcomes), len(outcomes)

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        """`(p50, p95)` in seconds of the kept successful calls; `None` without any."""
        samples = sorted(c.latency_s for c in self._calls if c.latency_s is not None)
        if not samples:
            return None, None
        return _percentile(samples, 0.50), _percentile(samples, 0.95)

    def status_and_reason(
        self, now: float, breakers: Sequence[BreakerState]
    ) -> tuple[HealthStatus, str]:
        """The derived status (rule in the module docstring) and why, given the states of the
        breakers guarding this provider."""
        s = self._settings
        if breakers and all(b == "open" for b in breakers):
            return "unhealthy", "circuit breaker open"
        if self._probe_failed:
            return "unhealthy", "last probe failed"
        rate, volume = self.error_rate(now)
        if volume >= s.min_volume and rate >= s.unhealthy_error_rate:
            return "unhealthy", f"error rate {rate:.0%}"
        if any(b != "closed" for b in breakers):
            return "degraded", "a circuit breaker is not closed"
        if volume >= s.min_volume and rate > s.degraded_error_rate:
            return "degraded", f"error rate {rate:.0%}"
        return "healthy", "ok"

    def report(
        self,
        now: float,
        wall: float,
        breakers: Sequence[BreakerState],
        verdict: tuple[HealthStatus, str],
    ) -> dict[str, object]:
        """JSON-ready state of this provider, whose `(status, reason)` is `verdict`."""
        status, reason = verdict
        rate, volume = self.error_rate(now)
        p50, p95 = self.latency_percentiles()
        return {
            "status": status,
            "reason": reason,
            "latency_ms": {"p50": _ms(p50), "p95": _ms(p95)},
            "error_rate": round(rate, 4),
            "calls_in_window": volume,
            "breaker": _worst(breakers),
            "last_error": _event_json(self._last_error),
            "last_probe": _event_json(self._last_probe),
        }


class HealthBoard:
    """Health of every provider of one gateway; built once by `create_app`.

    Feed it from the attempt loop (`record_call`) and the prober (`record_probe`); read it for
    the health routes (`report`, `healthy_providers`) and for routing (`is_usable`).
    """

    def __init__(
        self,
        provider_ids: Iterable[str],
        clock: Clock,
        breakers: BreakerBoard | None = None,
        settings: HealthSettings | None = None,
        on_change: StatusChange | None = None,
    ) -> None:
        """`on_change(provider, old, new, reason)` hears every status change that a call, a
        probe, `check` or a read reveals (statuses are derived, so a change shows when looked
        for)."""
        self._clock = clock
        self._breakers = breakers
        self._settings = settings or HealthSettings()
        self._providers = {pid: ProviderHealth(pid, self._settings) for pid in provider_ids}
        self._on_change = on_change
        self._last_status: dict[str, HealthStatus] = {}

    def provider(self, provider_id: str) -> ProviderHealth:
        """The record of `provider_id`, created empty if new."""
        health = self._providers.get(provider_id)
        if health is None:
            health = self._providers[provider_id] = ProviderHealth(provider_id, self._settings)
        return health

    def record_call(
        self, provider: str, target_model: str, latency_s: float, error: BaseException | None
    ) -> None:
        """Record a finished live call (`error` is `None` on success)."""
        now, wall = self._clock.monotonic(), self._clock.time()
        self.provider(provider).record_call(now, wall, target_model, latency_s, error)
        # A success cannot make a healthy provider unhealthy: skip the check on the hot path.
        if error is not None or self._last_status.get(provider, "healthy") != "healthy":
            self.check(provider)

    def record_probe(
        self,
        provider: str,
        ok: bool,
        latency_s: float | None,
        error: BaseException | str | None = None,
    ) -> None:
        """Record an active probe's result."""
        now, wall = self._clock.monotonic(), self._clock.time()
        self.provider(provider).record_probe(now, wall, ok, latency_s, error)
        self.check(provider)

    def check(self, provider: str) -> None:
        """Tell `on_change` if `provider`'s status moved since last looked at (breaker changes
        call it too)."""
        self._verdict(provider, self._clock.monotonic(), self._breaker_states(provider))

    def _verdict(
        self, provider: str, now: float, breakers: Sequence[BreakerState]
    ) -> tuple[HealthStatus, str]:
        """`(status, reason)` of `provider` now, told to `on_change` if the status moved since
        last looked at: whoever derives a status publishes its change, so the events (and the
        metric they drive) never lag behind what the health routes show."""
        status, reason = self.provider(provider).status_and_reason(now, breakers)
        old = self._last_status.get(provider, "healthy")
        if status != old:
            self._last_status[provider] = status
            if self._on_change is not None:
                self._on_change(provider, old, status, reason)
        return status, reason

    def status(self, provider: str) -> HealthStatus:
        """The derived status of `provider` now."""
        breakers = self._breaker_states(provider)
        return self._verdict(provider, self._clock.monotonic(), breakers)[0]

    def is_usable(self, provider: str) -> bool:
        """Whether routing should offer `provider` traffic: anything but `unhealthy`."""
        return self.status(provider) != "unhealthy"

    def healthy_providers(self) -> list[str]:
        """Provider ids that may take traffic (healthy or degraded), sorted."""
        return sorted(pid for pid in self._providers if self.is_usable(pid))

    def report(self) -> dict[str, dict[str, object]]:
        """JSON-ready health per provider id, for `GET /ai-orchestration/health`."""
        now, wall = self._clock.monotonic(), self._clock.time()
        report: dict[str, dict[str, object]] = {}
        for pid, health in sorted(self._providers.items()):
            breakers = self._breaker_states(pid)
            report[pid] = health.report(now, wall, breakers, self._verdict(pid, now, breakers))
        return report

    def _breaker_states(self, provider: str) -> list[BreakerState]:
        return [] if self._breakers is None else self._breakers.states_for(provider)


def _percentile(sorted_samples: list[float], q: float) -> float:
    """Nearest-rank percentile: always a latency that was actually seen."""
    index = min(len(sorted_samples) - 1, max(0, math.ceil(q * len(sorted_samples)) - 1))
    return sorted_samples[index]


def _worst(states: Sequence[BreakerState]) -> BreakerState | None:
    return next((s for s in _SEVERITY if s in states), None)


def _message(error: BaseException) -> str:
    return error.message if isinstance(error, StellaraError) else str(error) or type(error).__name__


def _code(error: BaseException | None) -> str | None:
    return error.code if isinstance(error, StellaraError) else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _event_json(event: _Event | None) -> dict[str, object] | None:
    if event is None:
        return None
    return {
        "ok": event.ok,
        "message": event.message,
        "code": event.code,
        "model": event.model,
        "latency_ms": _ms(event.latency_s),
        "at": datetime.fromtimestamp(event.at_epoch_s, UTC).isoformat().replace("+00:00", "Z"),
        "at_epoch_s": event.at_epoch_s,
    }
