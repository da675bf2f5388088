"""The OpenAI route end to end: official SDK → gateway → simulator, over real sockets."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import openai
import pytest

from stellara.server.intake import new_request_id
from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    upstream_requests,
)

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def client(gateway: RunningGateway):
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        yield sdk


async def test_chat_completion_answers_through_sdk(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "Hello there, gateway"}]
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert (completion.choices[0].message.content or "").startswith("Hello there, gateway")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_chat_completion_headers_name_request_and_provider(
    client: openai.AsyncOpenAI,
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="test-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-stellara-request-id"].startswith("req_")
    assert raw.headers["x-stellara-provider"] == "sim"
    assert raw.headers["x-stellara-attempts"] == "1"
    assert raw.headers["x-stellara-cache"] == "miss"


async def test_chat_completion_upstream_gets_target_model_and_provider_key(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    await client.chat.completions.create(
        model="test-model",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        temperature=0.3,
        max_tokens=7,
        stop=["\n\n"],
    )
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 0.3,
        "max_tokens": 7,
        "stop": ["\n\n"],
    }


async def test_chat_completion_max_tokens_cuts_answer(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "tell me more"}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_stream_relays_same_answer_as_non_stream(client: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Stream this answer please"}]
    whole = await client.chat.completions.create(model="test-model", messages=messages)
    stream = await client.chat.completions.create(
        model="test-model", messages=messages, stream=True
    )
    parts: list[str] = []
    finish_reasons: list[str] = []
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        assert chunk.usage is None  # the client did not ask for usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    assert "".join(parts) == whole.choices[0].message.content
    assert finish_reasons == ["stop"]


async def test_stream_include_usage_ends_with_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="test-model",
        messages=[{"role": "user", "content": "count me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


async def test_stream_upstream_always_asked_for_usage(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    stream = await client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "x"}], stream=True
    )
    async for _ in stream:
        pass
    [sent] = await upstream_requests(sim)
    assert sent["body"]["stream"] is True
    assert sent["body"]["stream_options"] == {"include_usage": True}


async def test_stream_is_relayed_as_server_sent_events(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={
            "model": "test-model",
            "stream": True,
            "messages": [{"role": "user", "content": "a"}],
        },
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["x-stellara-provider"] == "sim"
        body = await response.text()
    events = [line for line in body.split("\n\n") if line]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0].removeprefix("data: "))
    assert first["choices"][0]["delta"]["role"] == "assistant"


async def test_tools_round_trip(client: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await client.chat.completions.create(
        model="test-model", messages=messages, tools=[WEATHER_TOOL]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"})
    second = await client.chat.completions.create(
        model="test-model", messages=messages, tools=[WEATHER_TOOL]
    )
    assert second.choices[0].finish_reason == "stop"
    assert "18 C and sunny" in (second.choices[0].message.content or "")


async def test_tools_stream_tool_call_arguments(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="test-model",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    name, arguments, finish = "", "", None
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                name += (delta.function.name or "") if delta.function else ""
                arguments += (delta.function.arguments or "") if delta.function else ""
            finish = choice.finish_reason or finish
    assert name == "get_weather"
    assert "city" in json.loads(arguments)
    assert finish == "tool_calls"


async def test_image_parts_are_relayed(client: openai.AsyncOpenAI, sim: RunningSimulator) -> None:
    content: Any = [
        {"type": "text", "text": "What is in this picture?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        },
    ]
    await client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": content}]
    )
    [sent] = await upstream_requests(sim)
    assert sent["body"]["messages"][0]["content"] == content


async def test_response_format_json_object(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="test-model",
        messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


async def test_models_lists_public_models_for_key(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        names = [model.id async for model in sdk.models.list()]
    assert names == ["test-model", "other-model"]


async def test_models_hides_models_the_key_may_not_use(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=LIMITED_KEY) as sdk:
        names = [model.id async for model in sdk.models.list()]
    assert names == ["other-model"]


def test_request_ids_are_unique_and_keep_their_format() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", request_id) for request_id in ids)
    assert len({request_id[:16] for request_id in ids}) == 1  # one process, one prefix
