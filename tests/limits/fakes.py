"""Test doubles for the limits stage: a clock that moves only when told, a failing store."""

from __future__ import annotations

from collections.abc import Sequence

from stellara.errors import StateBackendError
from stellara.state.base import Admission, Amounts, Limit, LimitState

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DownStore:
    """A `LimitStore` whose backend is unreachable."""

    def __init__(self) -> None:
        self.calls = 0

    async def admit(
        self, scope: str, limits: Sequence[Limit], amounts: Amounts, reservation: str
    ) -> Admission:
        self.calls += 1
        raise StateBackendError("redis state backend: connection refused")

    async def settle(
        self, scope: str, limits: Sequence[Limit], reservation: str, actual: Amounts
    ) -> None:
        self.calls += 1
        raise StateBackendError("redis state backend: connection refused")

    async def read(self, scope: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        raise StateBackendError("redis state backend: connection refused")

    async def reset(self, scope: str, names: Sequence[str] | None = None) -> None:
        raise StateBackendError("redis state backend: connection refused")

    async def block(self, scope: str, seconds: float) -> None:
        raise StateBackendError("redis state backend: connection refused")
