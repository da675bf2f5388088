"""Dashboard sessions in Redis, so that every gateway process sees a sign-out at once.

One key per session, expiring with it (Redis's own clock and TTL)::

    {prefix}:session:<digest>    the key fingerprint of the master key that opened it

`<digest>` is the SHA-256 of the session's token (hex), so Redis holds no token: reading it
does not sign anyone in. Each call is one command on the backend's pooled client, with its
short timeouts; sign-in and the dashboard's polls are far too rare to need the pipelined
connection.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stellara.errors import StateBackendError


class RedisSessionStore:
    """`SessionStore` shared by every process on one Redis; failures raise
    `StateBackendError`."""

    def __init__(self, client: Redis, *, key_prefix: str, where: str) -> None:
        self._client = client
        self._prefix = f"{key_prefix}:session:"
        self._where = where

    async def open(self, digest: str, key_fingerprint: str, ttl_s: float) -> None:
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        try:
            await self._client.set(self._prefix + digest, key_fingerprint, px=ttl_ms)
        except (RedisError, OSError) as exc:
            raise self._error("open", exc) from exc

    async def find(self, digest: str) -> str | None:
        try:
            key_fingerprint = await self._client.get(self._prefix + digest)
        except (RedisError, OSError) as exc:
            raise self._error("find", exc) from exc
        return None if key_fingerprint is None else str(key_fingerprint)  # replies are text

    async def revoke(self, digest: str) -> None:
        try:
            await self._client.unlink(self._prefix + digest)
        except (RedisError, OSError) as exc:
            raise self._error("revoke", exc) from exc

    def _error(self, operation: str, exc: BaseException) -> StateBackendError:
        detail = str(exc) or type(exc).__name__
        return StateBackendError(
            f"redis state backend at {self._where}: session {operation}: {detail}"
        )
