"""The OpenAI adapter against small purpose-built upstream servers (real sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from stellara.errors import UpstreamProtocolError
from stellara.providers.openai import OpenAIAdapter, OpenAISettings
from stellara.schema.chat import ChatRequest, UserMessage

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[Handler], Awaitable[OpenAIAdapter]]]:
    runners: list[web.AppRunner] = []
    adapters: list[OpenAIAdapter] = []

    async def start(handler: Handler) -> OpenAIAdapter:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        port = runner.addresses[0][1]
        adapter = OpenAIAdapter(
            OpenAISettings(id="up", type="openai", base_url=f"http://127.0.0.1:{port}/v1")
        )
        adapters.append(adapter)
        return adapter

    yield start
    for adapter in adapters:
        await adapter.close()
    for runner in runners:
        await runner.cleanup()


def chunk(content: str) -> bytes:
    return (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"' + content.encode() + b'"}}]}\n\n'
    )


REQUEST = ChatRequest(model="public", messages=[UserMessage(content="hi")], stream=True)


async def test_stream_event_larger_than_default_buffer_is_relayed(upstream) -> None:
    big = "x" * 300_000  # aiohttp's default buffer refuses lines over 128 KiB

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk(big) + b"data: [DONE]\n\n")
        return response

    adapter = await upstream(handler)
    chunks = [c async for c in adapter.chat_stream(REQUEST, "m", timeout_s=5)]
    assert chunks[0].choices[0].delta.content == big


async def test_stream_without_done_is_protocol_error(upstream) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk("partial"))
        return response

    adapter = await upstream(handler)
    with pytest.raises(UpstreamProtocolError):
        async for _ in adapter.chat_stream(REQUEST, "m", timeout_s=5):
            pass
