"""Test doubles for the limits stage: failing stores and a failing backend."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from stellara.errors import StateBackendError
from stellara.state.base import (
    Admission,
    Amounts,
    ArmSums,
    Limit,
    LimitState,
    SessionStore,
    StoredResponse,
)

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


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


class DownSessionStore:
    """A `SessionStore` whose backend is unreachable."""

    async def open(self, digest: str, key_fingerprint: str, ttl_s: float) -> None:
        raise StateBackendError("redis state backend: connection refused")

    async def find(self, digest: str) -> str | None:
        raise StateBackendError("redis state backend: connection refused")

    async def revoke(self, digest: str) -> None:
        raise StateBackendError("redis state backend: connection refused")


class DownResponsesStore:
    """A `ResponsesStore` whose backend is unreachable."""

    async def start_put(
        self, response_id: str, user: str, blob: bytes, ttl_s: float, *, max_stored_bytes: int
    ) -> Awaitable[None]:
        raise StateBackendError("redis state backend: connection refused")

    async def get(self, response_id: str) -> StoredResponse | None:
        raise StateBackendError("redis state backend: connection refused")

    async def delete(self, response_id: str) -> bool:
        raise StateBackendError("redis state backend: connection refused")


class DownArmStore:
    """An `ArmStore` whose backend is unreachable."""

    async def add(self, experiment: str, variant: str, reward: float) -> None:
        raise StateBackendError("redis state backend: connection refused")

    async def read(self, experiment: str) -> dict[str, ArmSums]:
        raise StateBackendError("redis state backend: connection refused")

    async def clear(self, experiment: str) -> None:
        raise StateBackendError("redis state backend: connection refused")


class DownBackend:
    """A `StateBackend` whose server is unreachable: every limit, session, responses and
    experiment call fails, `ping` says no. `sessions` replaces the failing session store (a
    test of the limits alone that needs a signed-in dashboard)."""

    def __init__(self, sessions: SessionStore | None = None) -> None:
        self.limits = DownStore()
        self.sessions = sessions or DownSessionStore()
        self.responses = DownResponsesStore()
        self.arms = DownArmStore()

    @property
    def name(self) -> str:
        return "redis"

    @property
    def cache(self) -> None:
        return None

    @property
    def breakers(self) -> None:
        return None

    @property
    def keys(self) -> None:
        return None

    @property
    def event_channel(self) -> None:
        return None

    @property
    def stats(self) -> None:
        return None

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None
