"""One Redis connection shared by every request of a process, with automatic pipelining.

Commands issued in the same event-loop iteration leave in one write; Redis answers in the order
it received them, so replies are matched to callers first in, first out. Under load this costs
a few microseconds of CPU per command, where redis-py's pooled request-and-reply costs ~70
(check out a connection, write, wait, parse, return it). The hot commands use it: limit
scripts, cache reads and writes, and the event sink's PUBLISH batches. Everything else
(subscriptions, management) stays on redis-py. A stored response's write uses it too
(`send_script`), so the gateway can answer once the write has left, before its reply.

Replies come back as hiredis parses them: bulk strings as `bytes`, integers as `int`, arrays as
lists, errors as `redis.exceptions.ResponseError`. Failures raise `OSError`s (`TimeoutError`,
`ConnectionError`), so callers handle them as they do redis-py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

Arg = bytes | str | int | float


# A watchdog that fires this much later than it was due found the event loop busy: the time
# was spent in this process, not waiting for Redis (whose reply may already sit in the socket).
LOOP_STALL_S = 0.005


class _Protocol(asyncio.Protocol):
    """The wire: writes batched per loop iteration, replies handed to waiters in order.

    One watchdog timer, not one per command (a timer per command was a tenth of the CPU in
    the profile): replies come in order, so the oldest waiter is the only one to watch. When
    it has waited `timeout_s`, the connection is closed and every waiter fails.

    The wait is measured on the wire, not on a busy loop: when the watchdog fires late (the
    loop was running something else, a large request body, say), every deadline moves by the
    delay and the watchdog looks again after the loop has read its sockets. Otherwise a
    process that stalls itself would blame Redis, and `on_failure: open` would then treat a
    healthy Redis as down.
    """

    def __init__(self, timeout_s: float) -> None:
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._timeout_s = timeout_s
        # (waiter, deadline on the loop's clock), oldest first
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._lost: BaseException | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_due = 0.0

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._lost is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self._waiters:  # a reply nobody asked for: the stream is out of step
                self.abort(ConnectionError("redis sent a reply nobody waited for"))
                return
            waiter, _ = self._waiters.popleft()
            if waiter.done():
                continue  # its caller was cancelled
            if isinstance(reply, ResponseError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(exc or ConnectionError("redis closed the connection"))

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        if self._lost is not None:
            raise ConnectionError(f"redis connection lost: {self._lost}")
        waiter = self._loop.create_future()
        deadline = self._loop.time() + self._timeout_s
        self._waiters.append((waiter, deadline))
        if self._watchdog is None:
            self._arm(deadline)
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        # hiredis' stub types the argument as a one-element tuple; any length is packed
        self._outgoing.append(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]
        return waiter

    def send_now(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        """`send`, written at once with the rest of this iteration's batch rather than at the
        iteration's end: for a caller that must know its command left before it goes on."""
        waiter = self.send(args)
        self._flush()
        return waiter

    def _arm(self, due: float) -> None:
        self._watchdog_due = due
        self._watchdog = self._loop.call_at(due, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if not self._waiters or self._lost is not None:
            return
        now = self._loop.time()
        stalled_s = now - self._watchdog_due
        if stalled_s > LOOP_STALL_S:
            # Look again once the loop has read its sockets, whatever the deadlines say: a
            # reply that came in during the stall is still unread.
            self._waiters = deque((waiter, at + stalled_s) for waiter, at in self._waiters)
            self._arm(max(self._waiters[0][1], now + LOOP_STALL_S))
            return
        _, deadline = self._waiters[0]
        if deadline <= now:
            self.abort(TimeoutError(f"no reply from redis within {self._timeout_s:g} s"))
        else:
            self._arm(deadline)

    def _flush(self) -> None:
        if not self._outgoing:
            return  # written early by `send_now`
        data, self._outgoing = b"".join(self._outgoing), []
        if self._transport is not None and self._lost is None:
            self._transport.write(data)

    def abort(self, exc: BaseException) -> None:
        """Close at once: every waiting command fails with `exc`."""
        self._fail_all(exc)
        if self._transport is not None:
            self._transport.abort()

    def _fail_all(self, exc: BaseException) -> None:
        """Fail every waiter: with a `TimeoutError` when replies stopped coming, else with a
        `ConnectionError` (which `PipelinedRedis.execute` retries once on a new connection)."""
        if self._lost is None:
            self._lost = exc if isinstance(exc, OSError) else ConnectionError(str(exc))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        lost = self._lost
        failure, message = (
            (TimeoutError, str(lost))
            if isinstance(lost, TimeoutError)
            else (ConnectionError, f"redis connection lost: {lost}")
        )
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(failure(message))


class PipelinedRedis:
    """A lazily opened, shared, pipelined connection to the Redis a redis-py client uses.

    A command that gets no reply within the client's socket timeout raises `TimeoutError` and
    closes the connection (its place in the reply order is lost), failing the commands behind
    it. A command sent with `execute` that finds the connection lost (Redis restarted) is sent
    once more on a new one, so only idempotent commands may use it (the limit scripts are, by
    reservation id; so are GET and the cache's put); `execute_all` never resends. So the
    client recovers by itself after an outage.
    """

    def __init__(self, client: Redis) -> None:
        """Connect where `client` connects (address, database, credentials, TLS), with its
        socket timeouts."""
        pool = client.connection_pool
        self._kind = pool.connection_class
        self._settings = pool.connection_kwargs
        self._timeout_s = float(self._settings.get("socket_timeout") or 1.0)
        self._connect_timeout_s = float(
            self._settings.get("socket_connect_timeout") or self._timeout_s
        )
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply."""
        try:
            return await self._execute_once(args)
        except TimeoutError:
            raise
        except ConnectionError:
            return await self._execute_once(args)

    async def execute_all(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send `commands` together and return their replies in order; raises the first
        failure. Not retried on a lost connection: for commands that must not run twice."""
        protocol = await self._connected()
        replies = await asyncio.gather(
            *(protocol.send(command) for command in commands), return_exceptions=True
        )
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def send_script(
        self, script: AsyncScript, keys: Sequence[Arg], args: Sequence[Arg]
    ) -> Awaitable[Any]:
        """Write a script's EVAL now and return its reply, to be awaited later.

        When this returns, the command is in the socket to Redis, which runs commands in the
        order they arrive: a command any process sends after learning of it runs after it.
        EVAL with the source, not EVALSHA: a NOSCRIPT reply (after a Redis restart) and its
        resend would come too late to keep that order. The reply is resent once on a new
        connection when the connection is lost, so only idempotent scripts may use it.
        """
        source = script.script
        source = bytes(source) if isinstance(source, memoryview) else source
        command = ["EVAL", source, len(keys), *keys, *args]
        return self._reply(command, (await self._connected()).send_now(command))

    async def _reply(self, command: Sequence[Arg], sent: asyncio.Future[Any]) -> Any:
        try:
            return await sent
        except ConnectionError:
            return await self._execute_once(command)

    async def _execute_once(self, args: Sequence[Arg]) -> Any:
        return await (await self._connected()).send(args)

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is None or not protocol.is_open:
            protocol = await self._connect()
        return protocol

    async def run_script(
        self, script: AsyncScript, keys: Sequence[Arg], args: Sequence[Arg]
    ) -> Any:
        """Run a script registered with redis-py: EVALSHA, falling back to EVAL (which caches
        the script) when Redis lacks it, e.g. after a restart or a `SCRIPT FLUSH`."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        source = script.script
        source = bytes(source) if isinstance(source, memoryview) else source
        return await self.execute("EVAL", source, len(keys), *keys, *args)

    async def _connect(self) -> _Protocol:
        # One attempt at a time, shared: callers arriving while it runs get its outcome, so an
        # unreachable Redis costs each request one connect timeout at most, never a queue of
        # them; a caller that is cancelled leaves the attempt running for the others.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open_and_greet())
            self._connecting.add_done_callback(self._attempt_ended)
        return await asyncio.shield(self._connecting)

    def _attempt_ended(self, attempt: asyncio.Future[_Protocol]) -> None:
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved here, in case every caller was cancelled

    async def _open_and_greet(self) -> _Protocol:
        async with asyncio.timeout(self._connect_timeout_s):
            protocol = await self._open()
            try:
                await self._handshake(protocol)
            except BaseException:
                protocol.abort(ConnectionError("handshake failed"))
                raise
        self._protocol = protocol
        return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        settings = self._settings
        if issubclass(self._kind, UnixDomainSocketConnection):
            _, protocol = await loop.create_unix_connection(
                lambda: _Protocol(self._timeout_s), settings["path"]
            )
            return protocol
        context = ssl.create_default_context() if issubclass(self._kind, SSLConnection) else None
        host, port = settings.get("host", "localhost"), settings.get("port", 6379)
        _, protocol = await loop.create_connection(
            lambda: _Protocol(self._timeout_s), host, port, ssl=context
        )
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        settings = self._settings
        replies = []
        if settings.get("password") is not None:
            user = settings.get("username")
            credentials = [settings["password"]] if user is None else [user, settings["password"]]
            replies.append(protocol.send(["AUTH", *credentials]))
        if settings.get("db", 0):
            replies.append(protocol.send(["SELECT", settings["db"]]))
        await asyncio.gather(*replies)

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            with contextlib.suppress(Exception):
                self._protocol.abort(ConnectionError("client closed"))
            self._protocol = None
