"""Virtual-key changes broadcast between the gateway processes sharing one Redis.

A message names the digest of a key that was created, changed or revoked
(`{"origin": "…", "digest": "…"}`); each process drops what it cached about that key and
looks it up again on its next use. A process that was cut off may have missed messages, so
after reconnecting it drops everything it cached (`on_resumed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from stellara.state.redis.broadcast import Broadcast
from stellara.state.redis.pubsub import SUBSCRIBE_TIMEOUT_S

logger = logging.getLogger(__name__)


class RedisKeySync:
    """`KeySync` on the state backend's Redis."""

    def __init__(
        self, client: Redis, *, key_prefix: str, where: str, ping_interval_s: float = 5.0
    ) -> None:
        self._on_changed: list[Callable[[str | None], None]] = []
        self._broadcast = Broadcast(
            client,
            f"{key_prefix}:keys",
            what="key changes",
            where=where,
            logger=logger,
            on_resumed=lambda: self._notify(None),
            resumed_note="; cached keys dropped",
            ping_interval_s=ping_interval_s,
        )
        self._broadcast.on_message(self._handle)

    @property
    def is_listening(self) -> bool:
        return self._broadcast.is_listening

    async def publish(self, digest: str) -> None:
        """Tell the other processes that the key with `digest` changed (never raises)."""
        await self._broadcast.publish({"digest": digest}, f"key change {digest[:8]}…")

    def on_changed(self, callback: Callable[[str | None], None]) -> None:
        """Call `callback(digest)` for each change another process publishes, and
        `callback(None)` (forget every key) after missing messages. Starts listening now
        inside an event loop, else on `start`."""
        self._on_changed.append(callback)
        self._broadcast.listen()

    async def start(self, *, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        return await self._broadcast.start(timeout_s=timeout_s)

    async def close(self) -> None:
        await self._broadcast.close()

    def _handle(self, fields: dict[str, Any]) -> None:
        digest = fields.get("digest")
        if not isinstance(digest, str):
            logger.warning("ignoring a malformed key change: %r", fields)
            return
        self._notify(digest)

    def _notify(self, digest: str | None) -> None:
        for callback in list(self._on_changed):
            callback(digest)
