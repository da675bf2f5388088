"""The pipelined Redis connection under both event loops the gateway runs on (asyncio in
tests, uvloop in `stellara serve`): replies reach the right callers however many commands
share a write, scripts survive a flushed script cache, and the connection recovers by itself
after Redis drops it, restarts or goes silent."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from stellara.state.redis.pipelined import PipelinedRedis
from tests.state.conftest import REDIS_URL, redis_or_fail
from tests.state.test_redis_backend import PrivateRedis

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A server on a free port that accepts connections and never answers: its port, and the
    connections it accepted."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


def run_on(loop_name: str, test: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(redis_or_fail(REDIS_URL))
        runner.run(test())  # type: ignore[arg-type]


@pytest.mark.parametrize("loop_name", LOOPS)
def test_concurrent_commands_each_get_their_own_reply(loop_name: str) -> None:
    async def test() -> None:
        client = Redis.from_url(REDIS_URL, socket_timeout=2)
        commands = PipelinedRedis(client)
        try:
            keys = [f"stellara-test-pipelined:{loop_name}:{i}" for i in range(500)]
            await asyncio.gather(*(commands.execute("SET", k, k.encode() * 3) for k in keys))
            values = await asyncio.gather(*(commands.execute("GET", k) for k in keys))
            assert values == [k.encode() * 3 for k in keys]
            assert await commands.execute("DEL", *keys) == 500
            with pytest.raises(ResponseError):
                await commands.execute("NOSUCHCOMMAND")
            assert await commands.execute("PING") == b"PONG"  # still in step after an error
        finally:
            await commands.aclose()
            await client.aclose()

    run_on(loop_name, test)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_script_runs_again_after_the_script_cache_is_flushed(loop_name: str) -> None:
    async def test() -> None:
        client = Redis.from_url(REDIS_URL, socket_timeout=2)
        commands = PipelinedRedis(client)
        script = client.register_script("return {ARGV[1], KEYS[1]}")
        try:
            assert await commands.run_script(script, ["k"], ["a"]) == [b"a", b"k"]
            await commands.execute("SCRIPT", "FLUSH")
            assert await commands.run_script(script, ["k"], ["b"]) == [b"b", b"k"]
            assert await commands.execute("SCRIPT", "EXISTS", script.sha) == [1]
        finally:
            await commands.aclose()
            await client.aclose()

    run_on(loop_name, test)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_recovers_after_redis_restarts(loop_name: str, tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    server.start()

    async def test() -> None:
        client = Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        commands = PipelinedRedis(client)
        try:
            assert await commands.execute("SET", "k", "v") == b"OK"
            server.stop()
            with pytest.raises(ConnectionError):
                await commands.execute("GET", "k")
            server.start()
            assert await commands.execute("GET", "k") is None  # a new, empty server
        finally:
            await commands.aclose()
            await client.aclose()

    try:
        run_on(loop_name, test)
    finally:
        server.stop()


@pytest.mark.parametrize("loop_name", LOOPS)
def test_silent_server_times_out_and_the_connection_is_replaced(loop_name: str) -> None:
    async def test() -> None:
        async with silent_server() as (port, connections):
            client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
            commands = PipelinedRedis(client)
            try:
                results = await asyncio.gather(
                    *(commands.execute("GET", "k") for _ in range(5)), return_exceptions=True
                )
                assert all(isinstance(r, OSError) for r in results), results
                with pytest.raises(TimeoutError):
                    await commands.execute("GET", "k")
                assert len(connections) == 2  # the timed-out connection was closed, not reused
            finally:
                await commands.aclose()
                await client.aclose()

    run_on(loop_name, test)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_loop_busy_past_the_timeout_does_not_fail_a_command_redis_answered(
    loop_name: str,
) -> None:
    """The timeout is measured on the wire: a process that stalls its own loop (decoding a
    huge body, say) must not take a healthy Redis for a dead one (it would then admit
    requests without their shared limits)."""

    async def test() -> None:
        client = Redis.from_url(REDIS_URL, socket_timeout=0.1)
        commands = PipelinedRedis(client)
        try:
            await commands.execute("PING")  # connected
            pings = [asyncio.ensure_future(commands.execute("PING")) for _ in range(20)]
            # Right after the commands are sent, before their write leaves: the loop stalls
            # for three timeouts (another request's huge body, say).
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)
            replies = await asyncio.gather(*pings)
            assert replies == [b"PONG"] * 20
            assert await commands.execute("PING") == b"PONG"  # the same connection goes on
        finally:
            await commands.aclose()
            await client.aclose()

    run_on(loop_name, test)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_silent_server_still_times_out_after_a_stalled_loop(loop_name: str) -> None:
    async def test() -> None:
        async with silent_server() as (port, _):
            client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.1)
            commands = PipelinedRedis(client)
            try:
                asyncio.get_running_loop().call_later(0.01, time.sleep, 0.2)
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await commands.execute("GET", "k")
                # it still gives up, once the loop has looked at its socket after the stall
                assert 0.2 < time.monotonic() - started < 1.0
            finally:
                await commands.aclose()
                await client.aclose()

    run_on(loop_name, test)


def test_refused_connection_is_an_os_error() -> None:
    async def test() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
        commands = PipelinedRedis(client)
        with pytest.raises(ConnectionRefusedError):
            await commands.execute("PING")
        await client.aclose()

    run_on("uvloop", test)


def test_callers_share_one_connect_attempt_to_an_unreachable_redis() -> None:
    async def test() -> None:
        # The server accepts, then never answers the handshake's SELECT.
        async with silent_server() as (port, connections):
            client = Redis.from_url(
                f"redis://127.0.0.1:{port}/3", socket_timeout=0.2, socket_connect_timeout=0.3
            )
            commands = PipelinedRedis(client)
            started = asyncio.get_running_loop().time()
            results = await asyncio.gather(
                *(commands.execute("GET", "k") for _ in range(50)), return_exceptions=True
            )
            elapsed = asyncio.get_running_loop().time() - started
            assert all(isinstance(r, TimeoutError) for r in results), results
            assert elapsed < 1.0  # one shared 0.3 s attempt, not fifty in a row
            assert len(connections) == 1
            await commands.aclose()
            await client.aclose()

    run_on("uvloop", test)


def test_execute_all_replies_in_order_and_raises_the_first_failure() -> None:
    async def test() -> None:
        client = Redis.from_url(REDIS_URL, socket_timeout=2)
        commands = PipelinedRedis(client)
        key = "stellara-test-pipelined:all"
        try:
            replies = await commands.execute_all([("SET", key, "1"), ("INCR", key), ("GET", key)])
            assert replies == [b"OK", 2, b"2"]
            with pytest.raises(ResponseError):
                await commands.execute_all([("INCR", key), ("NOSUCHCOMMAND",), ("INCR", key)])
            assert await commands.execute("GET", key) == b"4"  # the others still ran
        finally:
            await commands.execute("DEL", key)
            await commands.aclose()
            await client.aclose()

    run_on("uvloop", test)
