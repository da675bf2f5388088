"""Fixtures for the state-backend tests: the same contract run against memory and Redis."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stellara.state.base import ResponsesStore
from stellara.state.memory import MemoryBackend
from stellara.state.redis import RedisBackend
from stellara.testing import ManualClock

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def stored(
    store: ResponsesStore,
    response_id: str,
    user: str,
    blob: bytes,
    ttl_s: float,
    *,
    max_stored_bytes: int,
) -> None:
    """`start_put` through to its end: the write sent, then done."""
    written = await store.start_put(
        response_id, user, blob, ttl_s, max_stored_bytes=max_stored_bytes
    )
    await written


@dataclass
class Harness:
    """A fresh backend and how to let time pass on it.

    Memory runs on a manual clock; Redis decides time itself, so real time passes (tests keep its
    windows short). `clock` is None for Redis: tests that must set the date run on memory only.
    """

    kind: str
    backend: MemoryBackend | RedisBackend
    clock: ManualClock | None

    async def advance(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


async def redis_or_fail(url: str) -> None:
    """Fail (never skip) when the test Redis does not answer: these tests are the proof."""
    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        pytest.fail(
            f'Redis at {url} does not answer ({exc}); start one (eval "$(scripts/services)") '
            "or set STELLARA_TEST_REDIS_URL",
            pytrace=False,
        )
    finally:
        await client.aclose()


async def drop_keys(url: str, prefix: str) -> None:
    """Delete every key a test created under its private prefix."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def unique_prefix() -> str:
    return f"stellara-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = ManualClock()
        yield Harness("memory", MemoryBackend(clock), clock)
        return
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    try:
        yield Harness("redis", backend, None)
    finally:
        await backend.close()
        await drop_keys(REDIS_URL, prefix)


@pytest.fixture
def memory_harness() -> Harness:
    """For what only a settable clock can show (crossing midnight, the 1st of a month)."""
    clock = ManualClock()
    return Harness("memory", MemoryBackend(clock), clock)
