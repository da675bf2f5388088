"""What only the Redis session store must show: what Redis holds at rest, one process's sign-in
and sign-out seen by another at once, and failures as `StateBackendError`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stellara.errors import StateBackendError
from stellara.pipeline.sessions import SESSION_S, DashboardSessions
from stellara.state.redis import RedisBackend
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix
from tests.state.test_redis_backend import free_port

MASTER_KEY = "sk-test-master-key-9999"


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


async def test_redis_holds_the_digest_and_fingerprint_never_the_token(
    prefix: str, processes: tuple[RedisBackend, RedisBackend]
) -> None:
    backend, _ = processes
    token = await DashboardSessions(MASTER_KEY, backend.sessions).issue()
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        [key] = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        value = await client.get(key)
        ttl_ms = await client.pttl(key)
    finally:
        await client.aclose()
    assert key.startswith(f"{prefix}:session:")
    assert len(key.rpartition(":")[2]) == 64  # SHA-256, hex
    assert value is not None
    assert len(value) == 64
    for text in (key, value):
        assert token not in text
        assert MASTER_KEY not in text
    assert (SESSION_S - 5) * 1000 < ttl_ms <= SESSION_S * 1000


async def test_redis_session_of_one_process_ends_on_the_other_at_once(
    processes: tuple[RedisBackend, RedisBackend],
) -> None:
    first, second = (DashboardSessions(MASTER_KEY, backend.sessions) for backend in processes)
    token = await first.issue()
    assert await second.is_valid(token)
    await second.revoke(token)
    assert not await first.is_valid(token)
    assert not await second.is_valid(token)


async def test_redis_session_is_refused_under_another_master_key(
    processes: tuple[RedisBackend, RedisBackend],
) -> None:
    old, new = processes
    token = await DashboardSessions(MASTER_KEY, old.sessions).issue()
    assert not await DashboardSessions("sk-rotated-master-key", new.sessions).is_valid(token)
    assert await DashboardSessions(MASTER_KEY, new.sessions).is_valid(token)


async def test_redis_sessions_unreachable_raise_state_backend_error() -> None:
    backend = RedisBackend(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    sessions = DashboardSessions(MASTER_KEY, backend.sessions)
    try:
        with pytest.raises(StateBackendError) as caught:
            await sessions.issue()
        assert "hunter2" not in str(caught.value)
        with pytest.raises(StateBackendError):
            await sessions.is_valid("A" * 43)
        with pytest.raises(StateBackendError):
            await sessions.revoke("A" * 43)
    finally:
        await backend.close()
