"""What only the Redis responses store must show: what Redis holds at rest (one hash slot, every
key expiring), one process's entries seen by another, the cap exact under concurrent puts from
two processes, and failures as `StateBackendError`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from stellara.errors import StateBackendError
from stellara.state.base import StoredResponse, stored_bytes
from stellara.state.redis import RedisBackend
from stellara.state.redis.pipelined import PipelinedRedis
from stellara.state.redis.responses import PIPELINED_BLOB_MAX, RedisResponsesStore
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, stored, unique_prefix
from tests.state.test_redis_backend import free_port

USER = "alice"
LONG_S = 60.0
CAP = 10_000


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    yield prefix
    await drop_keys(REDIS_URL, prefix)


@pytest.fixture
async def processes(prefix: str) -> AsyncIterator[tuple[RedisBackend, RedisBackend]]:
    """Two backends on one Redis, each with its own pool, as two processes would have."""
    first, second = (RedisBackend(REDIS_URL, key_prefix=prefix) for _ in range(2))
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def index_of(raw: Redis, prefix: str) -> tuple[list[str], int]:
    """The index's members, oldest first, and the bytes `meta` says they hold."""
    replies = cast(list[bytes], await raw.zrange(f"{prefix}:{{responses}}:index", 0, -1))
    members = [member.decode() for member in replies]
    counted = await raw.hget(f"{prefix}:{{responses}}:meta", "bytes")
    return members, int(counted or 0)


async def test_redis_responses_keys_share_one_slot_and_all_expire(
    prefix: str, processes: tuple[RedisBackend, RedisBackend], raw: Redis
) -> None:
    store = processes[0].responses
    await stored(store, "resp_1", USER, b"{}", 30.0, max_stored_bytes=CAP)
    await stored(store, "resp_2", USER, b"[]", 2.0, max_stored_bytes=CAP)
    keys = sorted([key.decode() async for key in raw.scan_iter(match=f"{prefix}:*")])
    tag = f"{prefix}:{{responses}}"
    assert keys == [f"{tag}:index", f"{tag}:meta", f"{tag}:r:resp_1", f"{tag}:r:resp_2"]
    assert len({key_slot(key.encode()) for key in keys}) == 1
    ttl_ms = {key: await raw.pttl(key) for key in keys}
    assert 29_000 < ttl_ms[f"{tag}:r:resp_1"] <= 30_000
    assert 1_000 < ttl_ms[f"{tag}:r:resp_2"] <= 2_000
    for bookkeeping in (f"{tag}:index", f"{tag}:meta"):  # outlive the longest entry, then go
        assert 30_000 < ttl_ms[bookkeeping] <= 31_000
    assert await raw.hgetall(f"{tag}:r:resp_1") == {
        b"u": USER.encode(),
        b"b": b"{}",
        b"m": f"1:{stored_bytes('resp_1', USER, b'{}')}:resp_1".encode(),
    }


async def test_redis_responses_expired_leave_the_count_at_the_next_put(
    prefix: str, processes: tuple[RedisBackend, RedisBackend], raw: Redis
) -> None:
    store = processes[0].responses
    await stored(store, "resp_1", USER, b"a" * 100, 0.1, max_stored_bytes=CAP)
    await stored(store, "resp_2", USER, b"b" * 100, 0.1, max_stored_bytes=CAP)
    await asyncio.sleep(0.15)
    await stored(store, "resp_3", USER, b"c" * 100, LONG_S, max_stored_bytes=CAP)
    members, counted = await index_of(raw, prefix)
    assert [m.rpartition(":")[2] for m in members] == ["resp_3"]
    assert counted == stored_bytes("resp_3", USER, b"c" * 100)


async def test_redis_responses_of_one_process_are_seen_by_another(
    processes: tuple[RedisBackend, RedisBackend],
) -> None:
    first, second = (backend.responses for backend in processes)
    await stored(first, "resp_1", USER, b"{}", LONG_S, max_stored_bytes=CAP)
    assert await second.get("resp_1") == StoredResponse(USER, b"{}")
    assert await second.delete("resp_1") is True
    assert await first.get("resp_1") is None


@pytest.mark.parametrize("size", [100, PIPELINED_BLOB_MAX + 1], ids=["pipelined", "pooled"])
async def test_redis_responses_a_sent_put_is_seen_by_another_process_before_it_is_confirmed(
    processes: tuple[RedisBackend, RedisBackend], size: int
) -> None:
    """What lets the gateway answer before Redis replies: a read another process sends after
    `start_put` returned runs after the write (small blobs on the pipelined connection, large
    ones on the pool, whose `start_put` waits for the reply)."""
    first, second = (backend.responses for backend in processes)
    blob = b"y" * size
    for n in range(20):
        written = await first.start_put(
            f"resp_{n}", USER, blob, LONG_S, max_stored_bytes=100 * PIPELINED_BLOB_MAX
        )
        assert await second.get(f"resp_{n}") == StoredResponse(USER, blob)
        await written


async def test_redis_responses_put_after_a_script_flush_still_stores(
    processes: tuple[RedisBackend, RedisBackend], raw: Redis
) -> None:
    store = processes[0].responses
    await stored(store, "resp_1", USER, b"{}", LONG_S, max_stored_bytes=CAP)
    await raw.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    await stored(store, "resp_2", USER, b"[]", LONG_S, max_stored_bytes=CAP)
    assert await processes[1].responses.get("resp_2") == StoredResponse(USER, b"[]")


async def test_redis_responses_concurrent_puts_of_two_processes_stay_under_the_cap(
    prefix: str, processes: tuple[RedisBackend, RedisBackend], raw: Redis
) -> None:
    rng = random.Random(17)
    sizes = [rng.randint(50, 900) for _ in range(400)]

    async def store(i: int, size: int) -> None:
        backend = processes[i % 2]
        await stored(
            backend.responses, f"resp_{i}", USER, b"x" * size, LONG_S, max_stored_bytes=CAP
        )

    await asyncio.gather(*(store(i, size) for i, size in enumerate(sizes)))

    members, counted = await index_of(raw, prefix)
    held = 0
    for member in members:
        key = f"{prefix}:{{responses}}:r:{member.rpartition(':')[2]}"
        entry = cast(dict[bytes, bytes], await raw.hgetall(key))
        assert entry[b"m"].decode() == member  # every member's entry is there, and its own
        held += stored_bytes(member.rpartition(":")[2], USER, entry[b"b"])
    largest = max(stored_bytes(f"resp_{i}", USER, b"x" * s) for i, s in enumerate(sizes))
    assert counted == held
    assert CAP - largest < held <= CAP  # exact: evicted no more than room needed
    live = [key async for key in raw.scan_iter(match=f"{prefix}:{{responses}}:r:*")]
    assert len(live) == len(members)  # no entry outside the index


async def test_redis_responses_unreachable_raise_state_backend_error() -> None:
    backend = RedisBackend(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    store = backend.responses
    try:
        with pytest.raises(StateBackendError) as caught:
            await stored(store, "resp_1", USER, b"{}", LONG_S, max_stored_bytes=CAP)
        assert "hunter2" not in str(caught.value)
        with pytest.raises(StateBackendError):
            await store.get("resp_1")
        with pytest.raises(StateBackendError):
            await store.delete("resp_1")
    finally:
        await backend.close()


async def test_redis_responses_refuse_a_prefix_that_would_open_a_hash_tag(raw: Redis) -> None:
    with pytest.raises(ValueError, match="must not contain"):
        RedisResponsesStore(raw, PipelinedRedis(raw), key_prefix="stellara{x}", where="test")
