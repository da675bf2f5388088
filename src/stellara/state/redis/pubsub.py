"""A background listener on one Redis pub/sub channel, shared by the cache and the breakers.

The listener has a one-connection pool of its own built from the client's settings, but
without redis-py's retry (a silent reconnection would hide that messages were missed) and
without decoding (a foreign, non-UTF-8 message must be skipped, not fail the connection). It
subscribes, waits for Redis to confirm, hands every message's bytes to `on_message`, and after
any failure backs off and subscribes again, until `close`. While it is disconnected it hears
nothing, so after every reconnection it calls `on_resumed` (if given) before serving messages
again. A silent connection is pinged: a vanished host sends no reset, so only a missing answer
shows it. One warning per outage, on the caller's logger, however many attempts it takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

SUBSCRIBE_TIMEOUT_S = 2.0
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 2.0


class ChannelListener:
    """Listens on `channel` through `client`'s server in a task of its own.

    Args:
        client: the backend's client; only its connection settings are used.
        channel: the channel to subscribe to.
        on_message: called with each message's raw bytes; it must not raise.
        where: the server, password redacted, for messages.
        what: what the channel carries, for messages (`cache invalidations`).
        logger: where outages are reported.
        on_resumed: called after every reconnection (messages may have been missed).
        resumed_note: appended to the warning logged when the listener hears again.
        ping_interval_s: silence before a ping; three intervals without a reply reconnect.
    """

    def __init__(
        self,
        client: Redis,
        channel: str,
        on_message: Callable[[bytes], None],
        *,
        where: str,
        what: str,
        logger: logging.Logger,
        on_resumed: Callable[[], None] | None = None,
        resumed_note: str = "",
        ping_interval_s: float = 5.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._where = where
        self._what = what
        self._logger = logger
        self._on_resumed = on_resumed
        self._resumed_note = resumed_note
        self._ping_interval_s = ping_interval_s
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._is_closed = False

    @property
    def is_listening(self) -> bool:
        """Whether it is subscribed now, i.e. would hear a message published now."""
        return self._listening.is_set()

    def start(self) -> None:
        """Start the task if it is not running, not closed, and an event loop runs."""
        if self._task is not None or self._is_closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # outside a loop (at app construction): the caller starts it later
        name = f"stellara-{self._what.replace(' ', '-')}"
        self._task = asyncio.create_task(self._listen(), name=name)

    async def wait_listening(self, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        """Start, and wait until subscribed; False after `timeout_s` (it keeps trying)."""
        self.start()
        try:
            await asyncio.wait_for(self._listening.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the task for good. The client belongs to the caller."""
        self._is_closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _listen(self) -> None:
        """Subscribe, dispatch, and after any failure back off and subscribe again."""
        main = self._client.connection_pool
        pool = ConnectionPool(
            connection_class=main.connection_class,
            max_connections=1,
            **{**main.connection_kwargs, "retry": Retry(NoBackoff(), 0), "decode_responses": False},
        )
        loop = asyncio.get_running_loop()
        outage_since: float | None = None
        delay = _BACKOFF_MIN_S
        try:
            while True:
                pubsub = PubSub(pool)
                try:
                    await self._subscribe(pubsub)
                    if outage_since is not None:
                        self._logger.warning(
                            "%s from %s heard again after %.1f s%s",
                            self._what,
                            self._where,
                            loop.time() - outage_since,
                            self._resumed_note,
                        )
                        if self._on_resumed is not None:
                            self._on_resumed()
                    outage_since, delay = None, _BACKOFF_MIN_S
                    await self._receive(pubsub)
                except Exception as exc:  # noqa: BLE001 - a background runner outlives failures
                    self._listening.clear()
                    if outage_since is None:
                        outage_since = loop.time()
                        self._logger.warning(
                            "%s from %s unheard, retrying: %s",
                            self._what,
                            self._where,
                            str(exc) or type(exc).__name__,
                        )
                finally:
                    await pubsub.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
        finally:
            self._listening.clear()
            await pool.aclose()

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe and wait for Redis to confirm: only from then on is nothing missed."""
        await pubsub.subscribe(self._channel)
        reply = await pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT_S)
        if reply is None or reply["type"] != "subscribe":
            raise RedisConnectionError(f"no confirmation of SUBSCRIBE: {reply!r}")
        self._listening.set()

    async def _receive(self, pubsub: PubSub) -> None:
        """Dispatch messages until the connection fails (raises) or falls silent."""
        loop = asyncio.get_running_loop()
        heard_at = loop.time()
        pinged = False
        while True:
            reply = await pubsub.get_message(timeout=self._ping_interval_s)
            now = loop.time()
            if reply is not None:
                heard_at, pinged = now, False
                if reply["type"] == "message":
                    self._on_message(reply["data"])
            elif now - heard_at >= 3 * self._ping_interval_s:
                raise RedisConnectionError("no answer to PING")
            elif not pinged and now - heard_at >= self._ping_interval_s:
                await pubsub.ping()
                pinged = True
