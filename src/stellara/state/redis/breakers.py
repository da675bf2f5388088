"""Circuit-breaker changes broadcast between the gateway processes sharing one Redis.

Each change is one `PUBLISH` on `{prefix}:breakers` of a JSON message (see `_Message`), e.g.
`{"origin":"3f…","breaker_id":"openai","state":"open","opened_at_epoch_s":1767225600.5}`.
The sender's id travels with it, so a process ignores its own messages. Nothing is stored:
the sync is eventually consistent and best effort. A process that was not listening when a
change went out (starting, or cut off from Redis) misses it and goes on by its own breakers:
it trips on its own failures, and an open breaker it missed the closing of closes after its
own half-open probe succeeds. Nothing ever waits for Redis on the request path: the gateway
awaits `publish` in a background task, and `publish` logs failures rather than raising.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stellara.state.redis.pubsub import SUBSCRIBE_TIMEOUT_S, ChannelListener

logger = logging.getLogger(__name__)

RemoteCallback = Callable[[str, str, float | None], None]


class _Message(msgspec.Struct, frozen=True):
    """One breaker change; `opened_at_epoch_s` is None unless the breaker is open."""

    origin: str
    breaker_id: str
    state: str
    opened_at_epoch_s: float | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Message).decode


class RedisBreakerSync:
    """`BreakerSync` on the state backend's Redis.

    Publishes go through the backend's pooled client, one at a time and in the order they
    were called (a lock), so another process never sees `closed` before the `open` it
    follows. The listener (`ChannelListener`) holds one connection of its own and reconnects
    by itself.

    Args:
        client: the backend's client.
        key_prefix: the backend's key prefix.
        where: the server, password redacted, for messages.
        ping_interval_s: the listener's silence before it pings Redis.
    """

    def __init__(
        self, client: Redis, *, key_prefix: str, where: str, ping_interval_s: float = 5.0
    ) -> None:
        self._client = client
        self._where = where
        self._channel = f"{key_prefix}:breakers"
        self._origin = uuid.uuid4().hex
        self._callbacks: list[RemoteCallback] = []
        self._send_lock = asyncio.Lock()
        self._sending: set[asyncio.Task[object]] = set()
        self._is_closed = False
        self._listener = ChannelListener(
            client,
            self._channel,
            self._handle,
            where=where,
            what="breaker changes",
            logger=logger,
            ping_interval_s=ping_interval_s,
        )

    @property
    def is_listening(self) -> bool:
        """Whether the listener is subscribed now, i.e. would hear a change published now."""
        return self._listener.is_listening

    async def publish(self, breaker_id: str, state: str, opened_at_epoch_s: float | None) -> None:
        """Tell the other processes; a failure is logged, never raised (a background task)."""
        if self._is_closed:
            return
        self._listener.start()
        task = asyncio.current_task()
        if task is not None:
            self._sending.add(task)
        message = _encode(_Message(self._origin, breaker_id, state, opened_at_epoch_s))
        try:
            async with self._send_lock:
                await self._client.publish(self._channel, message)
        except (RedisError, OSError) as exc:
            logger.warning(
                "breaker %s %s not told to other processes via %s: %s",
                breaker_id,
                state,
                self._where,
                str(exc) or type(exc).__name__,
            )
        finally:
            if task is not None:
                self._sending.discard(task)

    def on_remote(self, callback: RemoteCallback) -> None:
        """Call `callback(breaker_id, state, opened_at_epoch_s)` for every change another
        process publishes. Starts the listener now inside an event loop, else on `start`."""
        self._callbacks.append(callback)
        self._listener.start()

    async def start(self, *, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        """Start the listener and wait until subscribed; False after `timeout_s`."""
        return await self._listener.wait_listening(timeout_s)

    async def close(self) -> None:
        """Let publishes in flight finish (each is bounded by the client's timeouts), then
        stop the listener. The client belongs to the backend, which closes it."""
        self._is_closed = True
        current = asyncio.current_task()
        pending = [task for task in self._sending if task is not current]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._listener.close()

    def _handle(self, data: bytes) -> None:
        try:
            message = _decode(data)
        except msgspec.DecodeError:
            logger.warning("ignoring a malformed breaker change: %r", data[:200])
            return
        if message.origin == self._origin:  # our own change, applied before it was sent
            return
        for callback in list(self._callbacks):
            try:
                callback(message.breaker_id, message.state, message.opened_at_epoch_s)
            except Exception:  # a faulty callback must not deafen the others
                logger.exception("breaker change callback failed")
