"""Redis event sink: a redis-py subscriber hears every event on `<key_prefix>:events`."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stellara._clock import SystemClock
from stellara.config.models import TelemetryConfig
from stellara.events import BreakerChanged, CacheCleared, EventBus, RequestCompleted
from stellara.state.memory import MemoryBackend
from stellara.state.redis import RedisBackend
from stellara.state.redis.events import RedisEventChannel
from stellara.state.redis.pipelined import PipelinedRedis
from stellara.telemetry.setup import attach_sinks
from stellara.telemetry.sinks.channel import ChannelEventSink
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix
from tests.store.test_usage_writer import PROMPT, completed, failed


@pytest.fixture
async def backend() -> AsyncIterator[RedisBackend]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    yield backend
    await backend.close()
    await drop_keys(REDIS_URL, prefix)


@pytest.fixture
async def listener(backend: RedisBackend) -> AsyncIterator[PubSub]:
    """A plain redis-py subscriber, as an outside tool would be."""
    client = Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{backend.key_prefix}:events")
    assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
    yield pubsub
    await pubsub.aclose()
    await client.aclose()


async def heard(pubsub: PubSub, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while len(messages) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                messages.append(json.loads(message["data"]))
    return messages


async def test_redis_sink_publishes_every_event_on_the_prefix_channel(backend, listener):
    bus = EventBus()
    sinks = attach_sinks(bus, TelemetryConfig(), state=backend, clock=SystemClock())
    assert sinks.redis is not None
    await sinks.start()
    before = time.time()
    bus.publish(failed("r1", message=f"upstream said: {PROMPT}"))
    bus.publish(BreakerChanged(breaker="p", from_state="closed", to_state="open"))
    bus.publish(CacheCleared(scope=None, model=None, removed=2))
    after = time.time()
    messages = await heard(listener, 3)
    await sinks.close(1.0)

    assert [m["event"] for m in messages] == [
        "request.failed",
        "circuit_breaker.state_changed",
        "cache.cleared",
    ]
    assert messages[0]["data"]["request_id"] == "r1"
    assert not {"message", "prompt", "completion"} & messages[0]["data"].keys()
    assert PROMPT not in json.dumps(messages)  # content and messages may echo the prompt
    assert messages[1]["data"] == {"breaker": "p", "from": "closed", "to": "open"}
    assert messages[2]["data"] == {"scope": None, "model": None, "removed": 2}
    at = datetime.fromisoformat(messages[0]["at"].replace("Z", "+00:00")).timestamp()
    assert before - 0.001 <= at <= after
    assert sinks.status()["redis"] == {
        "channel": f"{backend.key_prefix}:events",
        "pending": 0,
        "published": 3,
        "dropped": 0,
    }


async def test_redis_sink_only_with_redis_state_and_redis_events(backend):
    off, memory = EventBus(), EventBus()
    config = TelemetryConfig(redis_events=False)
    assert attach_sinks(off, config, state=backend, clock=SystemClock()).redis is None
    assert not off.has_subscribers(RequestCompleted)
    sinks = attach_sinks(
        memory, TelemetryConfig(), state=MemoryBackend(SystemClock()), clock=SystemClock()
    )
    assert sinks.redis is None
    assert not memory.has_subscribers(RequestCompleted)


async def test_redis_sink_drops_and_counts_while_redis_is_down():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Redis(port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    bus = EventBus()
    channel = RedisEventChannel(PipelinedRedis(client), key_prefix="x", where="nowhere")
    sink = ChannelEventSink(channel, clock=SystemClock(), pause_s=0.05)
    sink.attach(bus)
    sink.start()
    for i in range(5):
        bus.publish(completed(f"r{i}"))
    async with asyncio.timeout(5):
        while sink.dropped < 5:  # noqa: ASYNC110 - the sink has no event to wait on
            await asyncio.sleep(0.01)
    await sink.close(1.0)
    await client.aclose()
    assert sink.status()["published"] == 0
    assert sink.status()["pending"] == 0
