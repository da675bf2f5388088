"""Virtual-key changes told between processes sharing one Redis (`RedisKeySync`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stellara.state.redis import RedisBackend
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix
from tests.state.test_redis_cache import eventually


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    yield prefix
    await drop_keys(REDIS_URL, prefix)


async def test_a_key_change_reaches_the_other_process_not_the_sender(prefix: str) -> None:
    a = RedisBackend(REDIS_URL, key_prefix=prefix)
    b = RedisBackend(REDIS_URL, key_prefix=prefix)
    heard_a: list[str | None] = []
    heard_b: list[str | None] = []
    a.keys.on_changed(heard_a.append)
    b.keys.on_changed(heard_b.append)
    try:
        assert await a.keys.start()
        assert await b.keys.start()
        await a.keys.publish("d1")
        await eventually(lambda: heard_b == ["d1"])
        await asyncio.sleep(0.05)
        assert heard_a == []
    finally:
        await a.close()
        await b.close()


async def test_a_malformed_key_change_is_ignored(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    heard: list[str | None] = []
    backend.keys.on_changed(heard.append)
    client = Redis.from_url(REDIS_URL)
    try:
        assert await backend.keys.start()
        with caplog.at_level(logging.WARNING):
            await client.publish(f"{prefix}:keys", b'{"origin":"x","digest":7}')
            await client.publish(f"{prefix}:keys", b'{"origin":"x","digest":"d2"}')
            await eventually(lambda: heard == ["d2"])
    finally:
        await client.aclose()
        await backend.close()
    assert "malformed key change" in caplog.text
