"""The Redis cache level: values with TTLs, clears by scope and model, one round trip per
get and put, and invalidations heard by the other processes, across a Redis restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stellara.errors import StateBackendError
from stellara.state.base import Invalidation, WindowLimit
from stellara.state.redis import RedisBackend, RedisCacheStore
from stellara.state.redis.pipelined import PipelinedRedis
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix
from tests.state.test_redis_backend import CommandCountingProxy, PrivateRedis, free_port

BINARY = bytes(range(256))  # not UTF-8: proves values bypass the client's reply decoding


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    yield prefix
    await drop_keys(REDIS_URL, prefix)


@pytest.fixture
async def backend(prefix: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    yield backend
    await backend.close()


@pytest.fixture
async def pair(prefix: str) -> AsyncIterator[tuple[RedisBackend, RedisBackend]]:
    """Two backends on one Redis, as two gateway processes would have."""
    a = RedisBackend(REDIS_URL, key_prefix=prefix)
    b = RedisBackend(REDIS_URL, key_prefix=prefix)
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until `condition()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def fill(cache: RedisCacheStore, scopes: list[str], models: list[str], per: int) -> None:
    for scope in scopes:
        for model in models:
            for i in range(per):
                await cache.put(f"{scope}/{model}/{i}", b"v", 60, scope=scope, model=model)


async def test_redis_cache_round_trip_and_ttl_expiry(backend: RedisBackend) -> None:
    cache = backend.cache
    await cache.put("k1", BINARY, 0.3, scope="alice", model="gpt-4o")
    await cache.put("k2", b"long", 60, scope="alice", model="gpt-4o")
    assert await cache.get("k1") == BINARY
    assert await cache.get("absent") is None
    deadline = time.monotonic() + 3
    while await cache.get("k1") is not None:
        assert time.monotonic() < deadline, "entry outlived its TTL"
        await asyncio.sleep(0.05)
    assert await cache.get("k2") == b"long"


async def test_redis_cache_keys_carry_prefix_tag_and_ttl(
    prefix: str, backend: RedisBackend
) -> None:
    await backend.cache.put("k:{1}", b"v", 60, scope="a:b*", model="m{x}")
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = sorted([key async for key in client.scan_iter(match=f"{prefix}:*")])
        assert keys == [
            f"{prefix}:c:a%3Ab%2A:m%7Bx%7D:{{k%3A%7B1%7D}}",
            f"{prefix}:cv:{{k%3A%7B1%7D}}",
        ]
        for key in keys:
            assert 0 < await client.pttl(key) <= 60_000
    finally:
        await client.aclose()


async def test_redis_cache_clear_counts_by_scope_model_and_both(backend: RedisBackend) -> None:
    cache = backend.cache
    scopes, models = ["alice", "a:b*"], ["gpt-4o", "m{x}"]
    await fill(cache, scopes, models, 2)
    assert await cache.clear(scope="alice", model="gpt-4o") == 2
    assert await cache.get("alice/gpt-4o/0") is None
    assert await cache.get("alice/m{x}/0") == b"v"
    assert await cache.clear(model="m{x}") == 4
    assert await cache.clear(scope="a:b*") == 2
    assert await cache.get("a:b*/gpt-4o/1") is None
    assert await cache.clear() == 0
    await fill(cache, scopes, models, 3)
    assert await cache.clear() == 12
    assert await cache.clear() == 0


async def test_redis_cache_scopes_isolated(backend: RedisBackend) -> None:
    cache = backend.cache
    await cache.put("ka", b"alice's", 60, scope="alice", model="m")
    await cache.put("kb", b"bob's", 60, scope="bob", model="m")
    await cache.put("kp", b"prefix", 60, scope="alice2", model="m")  # `alice*` must not match
    assert await cache.clear(scope="alice") == 1
    assert await cache.get("ka") is None
    assert await cache.get("kb") == b"bob's"
    assert await cache.get("kp") == b"prefix"


async def test_redis_cache_delete_and_clear_leave_limits_alone(backend: RedisBackend) -> None:
    cache = backend.cache
    limit = WindowLimit("rate:requests", "requests", 60.0, 5)
    await backend.limits.admit("alice", [limit], {"requests": 1}, "r")
    await cache.put("k", b"v", 60, scope="alice", model="m")
    await cache.delete("k")
    await cache.delete("never-stored")
    assert await cache.get("k") is None
    assert await cache.clear() == 0  # the marker left by delete is not an entry
    (state,) = await backend.limits.read("alice", [limit])
    assert state.used == 1


async def test_redis_cache_get_and_put_take_one_round_trip_each(prefix: str) -> None:
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = CommandCountingProxy(port)
    await proxy.start()
    backend = RedisBackend(f"redis://127.0.0.1:{proxy.port}/15", key_prefix=prefix)
    try:
        # Connect both clients (the pipelined one and redis-py's pool) and load the script.
        await backend.cache.put("warm", b"v", 60, scope="s", model="m")
        await backend.cache.delete("warm")
        proxy.commands.clear()
        for i in range(10):
            await backend.cache.put(f"k{i}", BINARY, 60, scope="s", model="m")
            assert await backend.cache.get(f"k{i}") == BINARY
        assert proxy.commands == ["EVALSHA", "GET"] * 10
        await backend.cache.delete("k0")
        assert proxy.commands[20:] == ["UNLINK", "PUBLISH"]  # one pipeline
    finally:
        await backend.close()
        await proxy.close()


async def test_redis_cache_processes_share_entries_and_invalidations(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    heard_a: list[Invalidation] = []
    heard_b: list[Invalidation] = []
    a.cache.on_invalidation(heard_a.append)
    b.cache.on_invalidation(heard_b.append)
    assert await a.cache.start()
    assert await b.cache.start()
    await a.cache.put("k", b"from a", 60, scope="alice", model="m")
    assert await b.cache.get("k") == b"from a"
    await a.cache.put("fresh", b"new", 60, scope="alice", model="m")  # nothing to replace
    await a.cache.put("k", b"again", 60, scope="alice", model="m")  # replaced: B must drop it
    await a.cache.delete("k")
    await a.cache.clear(scope="alice")
    await a.cache.clear(model="m")
    await a.cache.clear(scope="alice", model="m")
    await a.cache.clear()
    expected = [
        Invalidation(key="k"),
        Invalidation(key="k"),
        Invalidation(scope="alice"),
        Invalidation(model="m"),
        Invalidation(scope="alice", model="m"),
        Invalidation(),
    ]
    await eventually(lambda: len(heard_b) >= len(expected))
    assert heard_b == expected
    # Messages reach A in publication order: once A hears B's, it has had all of its own.
    await b.cache.delete("from-b")
    await eventually(lambda: len(heard_a) >= 1)
    assert heard_a == [Invalidation(key="from-b")]


async def test_redis_cache_listener_starts_on_registration(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    heard: list[Invalidation] = []
    b.cache.on_invalidation(heard.append)
    await eventually(lambda: b.cache.is_listening)
    await a.cache.clear(scope="x")
    await eventually(lambda: heard == [Invalidation(scope="x")])


async def test_redis_cache_failing_callback_does_not_deafen_others(
    pair: tuple[RedisBackend, RedisBackend], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    heard: list[Invalidation] = []

    def broken(_: Invalidation) -> None:
        raise RuntimeError("boom")

    b.cache.on_invalidation(broken)
    b.cache.on_invalidation(heard.append)
    assert await b.cache.start()
    with caplog.at_level(logging.ERROR, "stellara.state.redis.cache"):
        await a.cache.delete("k1")
        await a.cache.delete("k2")
        await eventually(lambda: len(heard) == 2)
    assert "callback failed" in caplog.text


async def test_redis_cache_ignores_malformed_messages(
    prefix: str, backend: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[Invalidation] = []
    backend.cache.on_invalidation(heard.append)
    assert await backend.cache.start()
    client = Redis.from_url(REDIS_URL)
    try:
        await client.publish(f"{prefix}:cache:invalidate", b"\xff not json")
        await client.publish(f"{prefix}:cache:invalidate", b'{"origin":"x","key":"k"}')
        await eventually(lambda: heard == [Invalidation(key="k")])
    finally:
        await client.aclose()
    assert "malformed" in caplog.text


async def test_redis_cache_listener_survives_restart_and_clears_all(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    listener = RedisBackend(private_redis.url, key_prefix="restart")
    sender = RedisBackend(private_redis.url, key_prefix="restart")
    heard: list[Invalidation] = []
    listener.cache.on_invalidation(heard.append)
    try:
        assert await listener.cache.start()
        with caplog.at_level(logging.WARNING, "stellara.state.redis.cache"):
            private_redis.stop()
            await eventually(lambda: not listener.cache.is_listening)
            with pytest.raises(StateBackendError):
                await sender.cache.delete("k")
            await asyncio.sleep(0.4)  # several reconnection attempts (backoff 0.05 s, doubling)
            private_redis.start()
            await eventually(lambda: heard == [Invalidation()])
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2  # one when the outage began, one when it ended
        assert "unheard" in warnings[0].getMessage()
        assert "heard again" in warnings[1].getMessage()
        await sender.cache.delete("after")
        await eventually(lambda: heard == [Invalidation(), Invalidation(key="after")])
    finally:
        await listener.close()
        await sender.close()


class StallingProxy(CommandCountingProxy):
    """A proxy that can stop forwarding while keeping every connection open, as a host that
    vanished from the network would: no reset, no answer."""

    is_stalled = False

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not self.is_stalled:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def test_redis_cache_listener_reconnects_when_redis_falls_silent(prefix: str) -> None:
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = StallingProxy(port)
    await proxy.start()
    client = Redis.from_url(f"redis://127.0.0.1:{proxy.port}/15", decode_responses=True)
    commands = PipelinedRedis(client)
    cache = RedisCacheStore(client, commands, key_prefix=prefix, where="proxy", ping_interval_s=0.1)
    heard: list[Invalidation] = []
    cache.on_invalidation(heard.append)
    try:
        assert await cache.start()
        proxy.is_stalled = True
        await eventually(lambda: not cache.is_listening)  # three silent intervals: 0.3 s
        proxy.is_stalled = False
        await eventually(lambda: heard == [Invalidation()])
        assert cache.is_listening
    finally:
        await cache.close()
        await commands.aclose()
        await client.aclose()
        await proxy.close()


async def test_redis_cache_unreachable_fails_fast_without_leaking_password() -> None:
    backend = RedisBackend(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    cache = backend.cache
    try:
        started = time.monotonic()
        for call in (
            cache.get("k"),
            cache.put("k", b"v", 1, scope="s", model="m"),
            cache.delete("k"),
            cache.clear(),
        ):
            with pytest.raises(StateBackendError) as caught:
                await call
            assert "hunter2" not in str(caught.value)
            assert "cache" in str(caught.value)
        assert time.monotonic() - started < 2.0
        assert not await cache.start(timeout_s=0.2)
    finally:
        await backend.close()


def test_redis_cache_key_prefix_rejects_hash_tag_braces() -> None:
    client = Redis.from_url(REDIS_URL)
    with pytest.raises(ValueError, match="key_prefix"):
        RedisCacheStore(client, PipelinedRedis(client), key_prefix="a{b}", where="here")


def test_redis_cache_registered_outside_a_loop_listens_from_first_call(prefix: str) -> None:
    """Apps register callbacks while being built, possibly before any event loop runs."""
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    heard: list[Invalidation] = []
    backend.cache.on_invalidation(heard.append)
    assert not backend.cache.is_listening

    async def first_use() -> None:
        sender = RedisBackend(REDIS_URL, key_prefix=prefix)
        try:
            assert await backend.cache.get("k") is None  # starts the listener
            await eventually(lambda: backend.cache.is_listening)
            await sender.cache.delete("k")
            await eventually(lambda: heard == [Invalidation(key="k")])
        finally:
            await sender.close()
            await backend.close()

    asyncio.run(first_use())


async def test_redis_cache_semantic_entries_are_broadcast_and_reloaded(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    heard_a: list[tuple[str, str, str, bytes]] = []
    heard_b: list[tuple[str, str, str, bytes]] = []
    a.cache.on_semantic(lambda *entry: heard_a.append(entry))
    b.cache.on_semantic(lambda *entry: heard_b.append(entry))
    assert await b.cache.load_semantic(10) == []  # also waits until B is subscribed
    await a.cache.load_semantic(10)
    await a.cache.put_semantic("ns", "k1", "héllo", BINARY, 60)
    await a.cache.put_semantic("ns", "k2", "brief", b"short-lived", 0.05)
    await eventually(lambda: len(heard_b) == 2)
    assert heard_b == [("ns", "k1", "héllo", BINARY), ("ns", "k2", "brief", b"short-lived")]
    await asyncio.sleep(0.1)
    await b.cache.put_semantic("ns", "k3", "from b", b"b", 60)
    await eventually(lambda: len(heard_a) == 1)
    assert heard_a == [("ns", "k3", "from b", b"b")]  # A never hears its own
    # A starting process reloads what is unexpired, oldest first, newest `limit` only.
    assert await a.cache.load_semantic(10) == [
        ("ns", "k1", "héllo", BINARY),
        ("ns", "k3", "from b", b"b"),
    ]
    assert await a.cache.load_semantic(1) == [("ns", "k3", "from b", b"b")]
