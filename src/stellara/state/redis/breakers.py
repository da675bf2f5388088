"""Circuit-breaker changes broadcast between the gateway processes sharing one Redis.

Each change is one message on `{prefix}:breakers` (see `Broadcast`), e.g.
`{"origin":"3f…","breaker_id":"openai","state":"open","opened_at_epoch_s":1767225600.5}`.
Nothing is stored: the sync is eventually consistent and best effort. A process that was not
listening when a change went out (starting, or cut off from Redis) misses it and goes on by
its own breakers: it trips on its own failures, and an open breaker it missed the closing of
closes after its own half-open probe succeeds. Nothing ever waits for Redis on the request
path: the gateway awaits `publish` in a background task, and `publish` logs failures rather
than raising.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis

from stellara.state.redis.broadcast import Broadcast
from stellara.state.redis.pubsub import SUBSCRIBE_TIMEOUT_S

logger = logging.getLogger(__name__)

RemoteCallback = Callable[[str, str, float | None], None]


class _Change(msgspec.Struct, frozen=True):
    """One breaker change; `opened_at_epoch_s` is None unless the breaker is open."""

    breaker_id: str
    state: str
    opened_at_epoch_s: float | None = None


class RedisBreakerSync:
    """`BreakerSync` on the state backend's Redis.

    Args:
        client: the backend's client.
        key_prefix: the backend's key prefix.
        where: the server, password redacted, for messages.
        ping_interval_s: the listener's silence before it pings Redis.
    """

    def __init__(
        self, client: Redis, *, key_prefix: str, where: str, ping_interval_s: float = 5.0
    ) -> None:
        self._callbacks: list[RemoteCallback] = []
        self._broadcast = Broadcast(
            client,
            f"{key_prefix}:breakers",
            what="breaker changes",
            where=where,
            logger=logger,
            ping_interval_s=ping_interval_s,
        )
        self._broadcast.on_message(self._handle)

    @property
    def is_listening(self) -> bool:
        """Whether the listener is subscribed now, i.e. would hear a change published now."""
        return self._broadcast.is_listening

    async def publish(self, breaker_id: str, state: str, opened_at_epoch_s: float | None) -> None:
        """Tell the other processes; a failure is logged, never raised (a background task)."""
        change = {"breaker_id": breaker_id, "state": state, "opened_at_epoch_s": opened_at_epoch_s}
        await self._broadcast.publish(change, f"breaker {breaker_id} {state}")

    def on_remote(self, callback: RemoteCallback) -> None:
        """Call `callback(breaker_id, state, opened_at_epoch_s)` for every change another
        process publishes. Starts listening now inside an event loop, else on `start`."""
        self._callbacks.append(callback)
        self._broadcast.listen()

    async def start(self, *, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        """Start the listener and wait until subscribed; False after `timeout_s`."""
        return await self._broadcast.start(timeout_s=timeout_s)

    async def close(self) -> None:
        await self._broadcast.close()

    def _handle(self, fields: dict[str, Any]) -> None:
        try:
            change = msgspec.convert(fields, _Change)
        except msgspec.ValidationError:
            logger.warning("ignoring a malformed breaker change: %r", fields)
            return
        for callback in list(self._callbacks):
            try:
                callback(change.breaker_id, change.state, change.opened_at_epoch_s)
            except Exception:  # a faulty callback must not deafen the others
                logger.exception("breaker change callback failed")
