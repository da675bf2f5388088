"""A finished request leaves nothing behind for the cyclic collector: with multi-megabyte
bodies, requests kept until the next full collection were hundreds of MB (issue 25)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from stellara.pipeline.context import RequestContext
from stellara.sim import RunningSimulator
from stellara.wire.anthropic import MessagesRequest
from tests.conftest import USER_KEY, StartGateway, gateway_config

NO_REQUESTS = {"tiers": {"default": {"rate": {"window_s": 60, "requests": 0}}}}


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def live_requests() -> list[object]:
    """The decoded requests and pipeline contexts still in memory."""
    return [o for o in gc.get_objects() if isinstance(o, RequestContext | MessagesRequest)]


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize(
    ("model", "limits", "status"),
    [
        pytest.param("test-model", {}, 200, id="answered"),
        pytest.param("test-model", NO_REQUESTS, 429, id="refused-by-limits"),
        pytest.param("no-such-model", {}, 404, id="unknown-model"),
    ],
)
async def test_request_is_freed_without_the_cyclic_collector(
    sim: RunningSimulator,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: str,
    limits: dict[str, Any],
    status: int,
) -> None:
    gateway = await start_gateway(gateway_config(sim.url, limits=limits))
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    for _ in range(3):
        async with http.post(f"{gateway.url}/v1/messages", json=body, headers=headers) as answer:
            assert answer.status == status
            await answer.read()
    assert live_requests() == []
