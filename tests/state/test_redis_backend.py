"""What only the Redis backend must show: exactness across processes, one round trip per call,
fast failure and recovery, Cluster-ready keys that all expire, and the Lua calendar port."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stellara.errors import StateBackendError
from stellara.state.base import Amounts, Limit, PeriodLimit, WindowLimit
from stellara.state.periods import period_bounds
from stellara.state.redis import RedisBackend
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix

WORKERS = 5  # independent backends, each with its own pool, as separate processes would have


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    yield prefix
    await drop_keys(REDIS_URL, prefix)


@pytest.fixture
async def workers(prefix: str) -> AsyncIterator[list[RedisBackend]]:
    # All workers share this test's one event loop (real processes would not): 500 calls in
    # flight starve its timers, so the default 0.25 s timeouts would measure the loop, not Redis.
    backends = [
        RedisBackend(REDIS_URL, key_prefix=prefix, socket_timeout_s=5.0) for _ in range(WORKERS)
    ]
    yield backends
    for backend in backends:
        await backend.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A `redis-server` of the test's own, to stop and start under a live backend."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


class CommandCountingProxy:
    """A TCP proxy in front of Redis that records the name of every command clients send."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.commands: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, count=True), self._pipe(up_reader, writer)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool = False
    ) -> None:
        buffer = b""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                if count:
                    buffer = self._count(buffer + data)
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _count(self, buffer: bytes) -> bytes:
        """Consume every complete RESP command (`*N` then N `$len` strings) in `buffer`."""
        while (end := buffer.find(b"\r\n")) >= 0:
            pos, args = end + 2, []
            for _ in range(int(buffer[1:end])):
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    return buffer
                start = end + 2
                stop = start + int(buffer[pos + 1 : end])
                if len(buffer) < stop + 2:
                    return buffer
                args.append(buffer[start:stop])
                pos = stop + 2
            self.commands.append(args[0].decode().upper())
            buffer = buffer[pos:]
        return buffer


async def test_redis_admit_exact_across_workers(workers: list[RedisBackend]) -> None:
    limit = WindowLimit("rate:requests", "requests", 60.0, 50)
    calls = [
        workers[i % WORKERS].limits.admit("alice", [limit], {"requests": 1}, f"r{i}")
        for i in range(500)
    ]
    admissions = await asyncio.gather(*calls)
    assert sum(a.admitted for a in admissions) == 50
    assert {a.denied_by for a in admissions if not a.admitted} == {"rate:requests"}
    (state,) = await workers[0].limits.read("alice", [limit])
    assert state.used == 50


async def test_redis_token_budget_exact_across_workers(workers: list[RedisBackend]) -> None:
    budget = 1_000
    limit = WindowLimit("rate:tokens", "tokens", 60.0, budget)
    amounts = [random.randint(1, 40) for _ in range(500)]
    admissions = await asyncio.gather(
        *(
            workers[i % WORKERS].limits.admit("alice", [limit], {"tokens": amount}, f"r{i}")
            for i, amount in enumerate(amounts)
        )
    )
    admitted = sum(amount for amount, a in zip(amounts, admissions, strict=True) if a.admitted)
    assert admitted <= budget
    for amount, admission in zip(amounts, admissions, strict=True):
        if not admission.admitted:  # refused only when it truly did not fit at its turn
            assert admission.states[0].used + amount > budget
    # Under 40 tokens remain (else every request would have fit): size-1 requests fill it.
    ones = await asyncio.gather(
        *(
            workers[i % WORKERS].limits.admit("alice", [limit], {"tokens": 1}, f"one{i}")
            for i in range(60)
        )
    )
    assert admitted + sum(a.admitted for a in ones) == budget
    (state,) = await workers[0].limits.read("alice", [limit])
    assert state.used == budget
    assert not (await workers[1].limits.admit("alice", [limit], {"tokens": 1}, "last")).admitted


async def test_redis_admit_and_settle_take_one_round_trip_each(prefix: str) -> None:
    host_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = CommandCountingProxy(host_port)
    await proxy.start()
    backend = RedisBackend(f"redis://127.0.0.1:{proxy.port}/15", key_prefix=prefix)
    limits: list[Limit] = [
        WindowLimit("rate:requests", "requests", 60.0, 1_000),
        WindowLimit("rate:tokens", "tokens", 60.0, 1_000_000),
        WindowLimit("burst:requests", "requests", 1.0, 1_000),
        PeriodLimit("quota:daily", "cost_usd", "daily", 100.0),
        PeriodLimit("quota:session", "tokens", "session", 1e6, session_id="s", idle_s=60),
    ]
    amounts: Amounts = {"requests": 1.0, "tokens": 500.0, "cost_usd": 0.01}
    try:
        await backend.limits.admit("alice", limits, amounts, "warm")  # connect, load scripts
        await backend.limits.settle("alice", limits, "warm", amounts)
        proxy.commands.clear()
        for i in range(20):
            assert (await backend.limits.admit("alice", limits, amounts, f"r{i}")).admitted
            await backend.limits.settle("alice", limits, f"r{i}", {"tokens": 100.0})
        assert proxy.commands == ["EVALSHA"] * 40
    finally:
        await backend.close()
        await proxy.close()


async def test_redis_unreachable_fails_fast_without_leaking_password() -> None:
    backend = RedisBackend(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    limit = WindowLimit("rate:requests", "requests", 60.0, 5)
    try:
        started = time.monotonic()
        with pytest.raises(StateBackendError) as caught:
            await backend.limits.admit("alice", [limit], {"requests": 1}, "r")
        assert time.monotonic() - started < 1.0
        assert "hunter2" not in str(caught.value)
        assert "127.0.0.1" in str(caught.value)
        assert not await backend.ping()
        with pytest.raises(StateBackendError):
            await backend.limits.reset("alice")
    finally:
        await backend.close()


async def test_redis_silent_server_times_out_within_budget() -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        backend = RedisBackend(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        limit = WindowLimit("rate:requests", "requests", 60.0, 5)
        try:
            started = time.monotonic()
            with pytest.raises(StateBackendError, match=r"no reply from redis within 0\.25 s"):
                await backend.limits.admit("alice", [limit], {"requests": 1}, "r")
            assert time.monotonic() - started < 1.0  # 0.25 s socket timeout, one retry
        finally:
            await backend.close()


async def test_redis_backend_recovers_when_redis_returns(private_redis: PrivateRedis) -> None:
    backend = RedisBackend(private_redis.url, key_prefix="recovery")
    limit = WindowLimit("rate:requests", "requests", 60.0, 5)
    try:
        assert (await backend.limits.admit("alice", [limit], {"requests": 1}, "a")).admitted
        private_redis.stop()
        with pytest.raises(StateBackendError):
            await backend.limits.admit("alice", [limit], {"requests": 1}, "b")
        assert not await backend.ping()
        private_redis.start()  # empty: no data, no scripts loaded
        assert await backend.ping()
        admission = await backend.limits.admit("alice", [limit], {"requests": 1}, "c")
        assert admission.admitted
        assert admission.states[0].used == 1
    finally:
        await backend.close()


async def test_redis_pool_waits_instead_of_failing_when_exhausted(prefix: str) -> None:
    backend = RedisBackend(REDIS_URL, key_prefix=prefix, max_connections=2, pool_timeout_s=5.0)
    limit = WindowLimit("rate:requests", "requests", 60.0, 1_000)
    try:
        admissions = await asyncio.gather(
            *(backend.limits.admit("alice", [limit], {"requests": 1}, f"r{i}") for i in range(200))
        )
        assert all(a.admitted for a in admissions)
    finally:
        await backend.close()


async def test_redis_keys_are_hash_tagged_and_expire(prefix: str) -> None:
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    limits: list[Limit] = [
        WindowLimit("rate:tokens", "tokens", 60.0, 1_000),
        PeriodLimit("quota:daily", "tokens", "daily", 1_000, utc_offset_s=3_600),
        PeriodLimit("quota:monthly", "cost_usd", "monthly", 10.0),
        PeriodLimit("quota:session", "requests", "session", 10, session_id="s:1", idle_s=30),
    ]
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for scope in ("alice", "b{o}b"):
            await backend.limits.admit(scope, limits, {"tokens": 5, "requests": 1}, "r1")
            await backend.limits.settle(scope, limits, "r1", {"tokens": 7, "requests": 1})
        await backend.limits.block("alice", 30)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        assert len(keys) == 2 * 6 + 1  # per scope: window ZSET + HASH, 3 periods, registry
        for key in keys:
            assert key.startswith((f"{prefix}:{{alice}}:", f"{prefix}:{{b%7Bo%7Db}}:")), key
            assert await client.pttl(key) > 0, key
    finally:
        await client.aclose()
        await backend.close()


async def test_redis_admit_retried_with_same_reservation_counts_once(prefix: str) -> None:
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    limits: list[Limit] = [
        WindowLimit("rate:tokens", "tokens", 60.0, 100),
        PeriodLimit("quota:daily", "tokens", "daily", 100),
    ]
    try:
        for _ in range(2):  # as when the first reply was lost and redis-py retried
            assert (await backend.limits.admit("alice", limits, {"tokens": 60}, "same")).admitted
        assert [s.used for s in await backend.limits.read("alice", limits)] == [60, 60]
    finally:
        await backend.close()


async def test_redis_period_from_an_earlier_day_starts_from_zero(prefix: str) -> None:
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    quota = PeriodLimit("quota:daily", "tokens", "daily", 100)
    try:
        await client.hset(f"{prefix}:{{alice}}:p:quota%3Adaily", mapping={"k": "d1", "u": "100"})
        admission = await backend.limits.admit("alice", [quota], {"tokens": 30}, "r")
        assert admission.admitted
        assert admission.states[0].used == 30
    finally:
        await client.aclose()
        await backend.close()


def test_redis_key_prefix_rejects_hash_tag_braces() -> None:
    with pytest.raises(ValueError, match="key_prefix"):
        RedisBackend(REDIS_URL, key_prefix="a{b}")


async def test_redis_lua_calendar_matches_periods_py() -> None:
    """lib.lua's period_bounds against periods.py, across month ends, leap days and zones."""
    await redis_or_fail(REDIS_URL)
    lib = (resources.files("stellara.state.redis") / "lua" / "lib.lua").read_text()
    probe = (
        lib
        + """
local out = {}
for i = 1, #ARGV, 3 do
  local key, ends = period_bounds(ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]))
  out[#out + 1] = key
  out[#out + 1] = fmt(ends)
end
return out
"""
    )
    rng = random.Random(7)
    edges = [
        datetime(y, m, 1, tzinfo=UTC).timestamp() for y in (2000, 2024, 2100) for m in (1, 2, 3, 12)
    ]
    moments = [t + d for t in edges for d in (-1.0, -0.001, 0.0, 0.5)]
    moments += [rng.uniform(0, 4_102_444_800) for _ in range(600)]
    cases = [
        (p, t, rng.randrange(-12 * 3600, 14 * 3600 + 1, 900)) for p in ("d", "m") for t in moments
    ]
    args = [str(v) if not isinstance(v, float) else repr(v) for case in cases for v in case]
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        reply = await client.eval(probe, 0, *args)
    finally:
        await client.aclose()
    for i, (kind, now, offset) in enumerate(cases):
        key, ends = period_bounds("daily" if kind == "d" else "monthly", now, offset)
        assert (reply[2 * i], float(reply[2 * i + 1])) == (key, ends), (kind, now, offset)
