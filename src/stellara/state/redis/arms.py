"""Adaptive experiments' reward sums in Redis, so every gateway process allocates alike.

One hash per experiment, hash-tagged by its id so it lives on one Cluster slot::

    {prefix}:arms:{<experiment>}    <variant>:n, <variant>:sum, <variant>:sq

A reward is three HINCRBYFLOATs in one MULTI, so a reader never sees a count without its sum.
Feedback is rare next to requests, and allocation reads once per refresh: the pooled client
serves both.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stellara.errors import StateBackendError
from stellara.state.base import ArmSums

_FIELDS = ("n", "sum", "sq")


class RedisArmStore:
    """`ArmStore` shared by every process on one Redis; failures raise `StateBackendError`."""

    def __init__(self, client: Redis, *, key_prefix: str, where: str) -> None:
        self._client = client
        self._prefix = f"{key_prefix}:arms:"
        self._where = where

    def _key(self, experiment: str) -> str:
        return f"{self._prefix}{{{experiment}}}"

    async def add(self, experiment: str, variant: str, reward: float) -> None:
        key = self._key(experiment)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hincrbyfloat(key, f"{variant}:n", 1.0)
                pipe.hincrbyfloat(key, f"{variant}:sum", reward)
                pipe.hincrbyfloat(key, f"{variant}:sq", reward * reward)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._error("count a reward", exc) from exc

    async def read(self, experiment: str) -> dict[str, ArmSums]:
        try:
            raw = await self._client.hgetall(self._key(experiment))
        except (RedisError, OSError) as exc:
            raise self._error("read rewards", exc) from exc
        sums: dict[str, dict[str, float]] = {}
        for field, value in raw.items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            variant, _, part = name.rpartition(":")
            if part in _FIELDS:
                sums.setdefault(variant, {})[part] = float(value)
        return {
            variant: ArmSums(parts.get("n", 0.0), parts.get("sum", 0.0), parts.get("sq", 0.0))
            for variant, parts in sums.items()
        }

    async def clear(self, experiment: str) -> None:
        try:
            await self._client.delete(self._key(experiment))
        except (RedisError, OSError) as exc:
            raise self._error("clear rewards", exc) from exc

    def _error(self, doing: str, exc: BaseException) -> StateBackendError:
        detail = str(exc) or type(exc).__name__
        return StateBackendError(f"redis state backend at {self._where}: {doing}: {detail}")
