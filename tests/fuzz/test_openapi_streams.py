"""Streamed answers match the event schema `/openapi.json` documents for them: every chunk of a
whole stream, and the error event a stream broken by its provider ends with. (Schema tools do
not read `text/event-stream` schemas as the schema of each event's data, so this checks them.)"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, set_faults
from tests.fuzz.sse_schema import event_data, stream_schema_errors

AUTH = {"Authorization": f"Bearer {USER_KEY}"}
OPENAI_BODY: dict[str, Any] = {
    "model": "test-model",
    "messages": [{"role": "user", "content": "Tell me a story"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "test-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Tell me a story"}],
    "stream": True,
}
ROUTES = [("/v1/chat/completions", OPENAI_BODY), ("/v1/messages", ANTHROPIC_BODY)]


async def stream(
    http: aiohttp.ClientSession, gateway: RunningGateway, path: str, body: dict[str, Any]
) -> str:
    async with http.post(gateway.url + path, json=body, headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        return await response.text()


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_whole_stream_matches_documented_events(
    gateway: RunningGateway, http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> None:
    text = await stream(http, gateway, path, body)
    assert len(event_data(text)) > 3
    assert stream_schema_errors(path, text) == []


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_broken_stream_error_event_matches_documented_events(
    gateway: RunningGateway,
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any],
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2})
    text = await stream(http, gateway, path, body)
    assert "error" in event_data(text)[-1]
    assert stream_schema_errors(path, text) == []


def test_checker_finds_an_event_the_schema_does_not_allow() -> None:
    bad = 'data: {"id": 5, "choices": "none"}\n\ndata: [DONE]\n\n'
    assert stream_schema_errors("/v1/chat/completions", bad) != []
    assert stream_schema_errors("/v1/messages", 'event: x\ndata: {"type": "nope"}\n\n') != []
