"""Messages from one gateway process to all the others sharing a Redis, on one channel.

Each message is a JSON object carrying its sender's `origin`, so a process ignores its own.
Nothing is stored: delivery is best effort, to the processes listening at the time. Publishes
go out one at a time in call order (a lock), so a receiver sees changes in the order they
were made; a failed publish is logged, never raised (callers await it in background tasks).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stellara.state.redis.pubsub import SUBSCRIBE_TIMEOUT_S, ChannelListener

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Broadcast:
    """One channel: `publish` a dict to the others; `on_message` hears theirs.

    Args:
        client: the backend's pooled client (the listener builds one connection of its own).
        channel: the Redis channel.
        what: what travels on it, for messages (`breaker changes`).
        where: the server, password redacted, for messages.
        logger: the caller's logger.
        on_resumed: called after the listener reconnects (messages may have been missed).
        ping_interval_s: the listener's silence before it pings Redis.
    """

    def __init__(
        self,
        client: Redis,
        channel: str,
        *,
        what: str,
        where: str,
        logger: logging.Logger,
        on_resumed: Callable[[], None] | None = None,
        resumed_note: str = "",
        ping_interval_s: float = 5.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._what = what
        self._where = where
        self._logger = logger
        self._origin = uuid.uuid4().hex
        self._callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._send_lock = asyncio.Lock()
        self._sending: set[asyncio.Task[object]] = set()
        self._is_closed = False
        self._listener = ChannelListener(
            client,
            channel,
            self._handle,
            where=where,
            what=what,
            logger=logger,
            on_resumed=on_resumed,
            resumed_note=resumed_note,
            ping_interval_s=ping_interval_s,
        )

    @property
    def is_listening(self) -> bool:
        return self._listener.is_listening

    async def publish(self, fields: dict[str, Any], describe: str) -> None:
        """Send `fields` (plus the origin) to the others; `describe` names it in a failure's
        log line."""
        if self._is_closed:
            return
        self._listener.start()
        task = asyncio.current_task()
        if task is not None:
            self._sending.add(task)
        message = _encode({"origin": self._origin, **fields})
        try:
            async with self._send_lock:
                await self._client.publish(self._channel, message)
        except (RedisError, OSError) as exc:
            self._logger.warning(
                "%s not told to other processes via %s: %s",
                describe,
                self._where,
                str(exc) or type(exc).__name__,
            )
        finally:
            if task is not None:
                self._sending.discard(task)

    def on_message(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call `callback(fields)` for each message of another process heard once listening
        (see `listen`, `start`)."""
        self._callbacks.append(callback)

    def listen(self) -> None:
        """Start listening now inside an event loop, else on `start`."""
        self._listener.start()

    async def start(self, *, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        """Start the listener and wait until subscribed; False after `timeout_s`."""
        return await self._listener.wait_listening(timeout_s)

    async def close(self) -> None:
        """Let publishes in flight finish (each bounded by the client's timeouts), then stop
        listening. The client belongs to the backend, which closes it."""
        self._is_closed = True
        current = asyncio.current_task()
        pending = [task for task in self._sending if task is not current]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._listener.close()

    def _handle(self, data: bytes) -> None:
        try:
            fields = _decode(data)
        except msgspec.DecodeError:
            what, sample = self._what, data[:200]
            self._logger.warning("ignoring a malformed message among %s: %r", what, sample)
            return
        if fields.get("origin") == self._origin:  # our own, applied before it was sent
            return
        for callback in list(self._callbacks):
            try:
                callback(fields)
            except Exception:  # a faulty callback must not deafen the others
                self._logger.exception("%s callback failed", self._what)
