"""`ManualClock`: a `Clock` whose time moves only when the test moves it.

Use it wherever code under test takes a `clock` (breakers, health, limits, caches, the attempt
runner, the gateway): the test decides how much time passes, so windows, expiries, cool-downs
and deadlines are checked to the second without waiting. Use the real `SystemClock` only where
another process keeps time for you (Redis expiring keys, a real server): there time must pass
for real.

It moves no asyncio timer: `asyncio.sleep` and `asyncio.timeout` still run on the event
loop's own clock, so code that sleeps should be given tiny delays in tests.
"""

from __future__ import annotations

DEFAULT_EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DEFAULT_MONOTONIC_S = 1_000.0


class ManualClock:
    """Wall time and monotonic time that stand still until `advance` or `set_time`.

    The two start apart (2026-01-01T00:00:00Z and 1,000 s by default), as they are on a real
    machine, so code that mixes them up fails here rather than in production. Pass `epoch_s`
    when a test needs a particular date (a quota period, a day boundary).
    """

    def __init__(
        self, epoch_s: float = DEFAULT_EPOCH_S, *, monotonic_s: float = DEFAULT_MONOTONIC_S
    ) -> None:
        self._epoch_s = epoch_s
        self._monotonic_s = monotonic_s

    def time(self) -> float:
        """Seconds since the epoch, as the test last set or advanced them."""
        return self._epoch_s

    def monotonic(self) -> float:
        """Seconds on the never-decreasing clock; only differences mean anything."""
        return self._monotonic_s

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass: both clocks move forward by that much."""
        if seconds < 0:
            raise ValueError(f"time cannot go back ({seconds} s); use set_time to set the date")
        self._epoch_s += seconds
        self._monotonic_s += seconds

    def set_time(self, epoch_s: float) -> None:
        """Set the wall clock to `epoch_s`, forward or back, as an operator or NTP would.

        The monotonic clock does not move: setting a machine's date makes no time pass.
        """
        self._epoch_s = epoch_s

    def __repr__(self) -> str:
        return f"ManualClock(epoch_s={self._epoch_s!r}, monotonic_s={self._monotonic_s!r})"
