"""Breaker changes broadcast through Redis: two boards, wired as the app wires them, agree."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from stellara._clock import SystemClock
from stellara.errors import UpstreamUnavailableError
from stellara.routing.breaker import BreakerBoard, BreakerSettings, BreakerState
from stellara.state.memory import MemoryBackend
from stellara.state.redis import RedisBackend
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix
from tests.state.test_redis_cache import eventually

DOWN = UpstreamUnavailableError("down", provider="p")


@dataclass
class Wired:
    """A board whose changes go out through `backend` and whose board hears the others'."""

    backend: RedisBackend
    board: BreakerBoard = field(init=False)
    seen: list[tuple[str, BreakerState, BreakerState]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def state(self, breaker_id: str = "p") -> BreakerState | None:
        return self.board.states().get(breaker_id)


def wire(backend: RedisBackend, settings: BreakerSettings) -> Wired:
    """As `build_attempt_runner` does: publish local changes in the background, apply remote
    ones without publishing them again."""
    wired = Wired(backend)

    def transition(breaker_id: str, old: BreakerState, new: BreakerState) -> None:
        wired.seen.append((breaker_id, old, new))
        if wired.board.applying_remote:
            return
        opened_at = wired.board.opened_at_epoch_s(breaker_id) if new == "open" else None
        task = asyncio.get_running_loop().create_task(
            backend.breakers.publish(breaker_id, new, opened_at)
        )
        wired.tasks.add(task)
        task.add_done_callback(wired.tasks.discard)

    wired.board = BreakerBoard(settings, SystemClock(), transition)
    backend.breakers.on_remote(wired.board.apply_remote)
    return wired


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    yield prefix
    await drop_keys(REDIS_URL, prefix)


@pytest.fixture
async def pair(prefix: str) -> AsyncIterator[tuple[Wired, Wired]]:
    """Two gateway processes' boards on one Redis, both listening."""
    settings = BreakerSettings(failure_threshold=2, open_s=0.3)
    a = wire(RedisBackend(REDIS_URL, key_prefix=prefix), settings)
    b = wire(RedisBackend(REDIS_URL, key_prefix=prefix), settings)
    try:
        assert await a.backend.breakers.start()
        assert await b.backend.breakers.start()
        yield a, b
    finally:
        await a.backend.close()
        await b.backend.close()


def trip(wired: Wired) -> None:
    wired.board.record("p", "m", DOWN)
    wired.board.record("p", "m", DOWN)


async def test_opening_in_one_process_opens_in_the_other_at_the_same_time(
    pair: tuple[Wired, Wired],
) -> None:
    a, b = pair
    trip(a)
    assert a.state() == "open"
    await eventually(lambda: b.state() == "open")
    a_snap, b_snap = a.board.snapshot()["p"], b.board.snapshot()["p"]
    assert isinstance(a_snap["opened_at_epoch_s"], float)
    assert b_snap["opened_at_epoch_s"] == pytest.approx(a_snap["opened_at_epoch_s"], abs=0.01)
    assert b_snap["next_half_open_at_epoch_s"] == pytest.approx(
        a_snap["opened_at_epoch_s"] + 0.3, abs=0.01
    )
    assert not b.board.allow("p", "m")
    await asyncio.sleep(0.2)  # time for an echo to come back, if there were one
    assert a.seen == [("p", "closed", "open")]
    assert b.seen == [("p", "closed", "open")]


async def test_a_probe_success_in_one_process_closes_the_other(
    pair: tuple[Wired, Wired],
) -> None:
    a, b = pair
    trip(a)
    await eventually(lambda: b.state() == "open")
    await asyncio.sleep(0.3)  # open_s: both half-open, each on its own clock
    assert a.board.allow("p", "m")
    a.board.record("p", "m", None)
    assert a.state() == "closed"
    await eventually(lambda: b.state() == "closed")
    assert b.board.snapshot()["p"]["calls_in_window"] == 0
    await asyncio.sleep(0.2)
    assert a.seen == [
        ("p", "closed", "open"),
        ("p", "open", "half_open"),
        ("p", "half_open", "closed"),
    ]


async def test_a_reset_in_one_process_closes_the_other(pair: tuple[Wired, Wired]) -> None:
    a, b = pair
    trip(b)  # the other direction, for once
    await eventually(lambda: a.state() == "open")
    assert a.board.reset("p")
    await eventually(lambda: b.state() == "closed")
    assert b.board.allow("p", "m")
    await asyncio.sleep(0.2)
    assert a.seen == [("p", "closed", "open"), ("p", "open", "closed")]
    assert b.seen == [("p", "closed", "open"), ("p", "open", "closed")]


async def test_breaker_sync_ignores_malformed_and_own_messages(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    heard: list[tuple[str, str, float | None]] = []
    backend.breakers.on_remote(lambda *change: heard.append(change))
    client = Redis.from_url(REDIS_URL)
    try:
        assert await backend.breakers.start()
        await backend.breakers.publish("mine", "open", 1.0)
        await client.publish(f"{prefix}:breakers", b"\xff not json")
        await client.publish(
            f"{prefix}:breakers", b'{"origin":"x","breaker_id":"p","state":"closed"}'
        )
        await eventually(lambda: heard == [("p", "closed", None)])
    finally:
        await client.aclose()
        await backend.close()
    assert "malformed" in caplog.text


async def test_breaker_publish_failure_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0", connect_timeout_s=0.2)
    try:
        with caplog.at_level(logging.WARNING, "stellara.state.redis.breakers"):
            await backend.breakers.publish("p", "open", 1.0)
    finally:
        await backend.close()
    assert "not told to other processes" in caplog.text


def test_memory_backend_has_no_breaker_sync() -> None:
    assert MemoryBackend().breakers is None
