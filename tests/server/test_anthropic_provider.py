"""openai SDK → Stellara → Anthropic Messages API (simulated): what goes up, what comes back."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from stellara.sim import RunningSimulator
from tests.conftest import (
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
    upstream_requests,
)

UPSTREAM_MODEL = "claude-sonnet-5-5"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there Claude"}]
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def anthropic_config(sim_url: str, **provider: Any) -> dict[str, Any]:
    return {
        "providers": [
            {
                "id": "claude",
                "type": "anthropic",
                "base_url": sim_url,
                "api_key": UPSTREAM_KEY,
                **provider,
            }
        ],
        "models": [{"name": "smart", "targets": [{"provider": "claude", "model": UPSTREAM_MODEL}]}],
        "keys": [{"key": USER_KEY, "user": "alice"}],
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(anthropic_config(sim.url))


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as client:
        yield client


async def sent_body(sim: RunningSimulator) -> dict[str, Any]:
    [sent] = await upstream_requests(sim)
    body: dict[str, Any] = sent["body"]
    return body


# ---------------------------------------------------------------- plain chat


async def test_chat_goes_to_messages_with_anthropic_headers_and_body(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    raw = await sdk.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
    completion = raw.parse()
    assert raw.headers["x-stellara-provider"] == "claude"
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith("Hello there Claude")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 24  # the simulator's default answer length
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["headers"]["content-type"] == "application/json"
    assert "authorization" not in sent["headers"]
    assert sent["body"] == {
        "model": UPSTREAM_MODEL,
        "messages": [{"role": "user", "content": "Hello there Claude"}],
        "max_tokens": 4096,
    }


async def test_chat_system_stop_and_max_tokens_are_translated(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await sdk.chat.completions.create(
        model="smart",
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        stop=["zzz"],
        max_tokens=5,
        temperature=0.4,
        user="u-7",
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert await sent_body(sim) == {
        "model": UPSTREAM_MODEL,
        "messages": [{"role": "user", "content": "Hello there Claude"}],
        "max_tokens": 5,
        "system": "Be brief.",
        "stop_sequences": ["zzz"],
        "temperature": 0.4,
        "metadata": {"user_id": "u-7"},
    }


async def test_chat_stop_sequence_hit_finishes_with_stop(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await sdk.chat.completions.create(model="smart", messages=HELLO, stop=["Claude"])
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == "Hello there "


async def test_chat_default_max_tokens_comes_from_provider_settings(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(anthropic_config(sim.url, default_max_tokens=64))
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        await sdk.chat.completions.create(model="smart", messages=HELLO)
    assert (await sent_body(sim))["max_tokens"] == 64


async def test_chat_api_version_2026_10_21_never_sends_temperature(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    config = anthropic_config(sim.url, anthropic_version="2026-10-21")
    gateway = await start_gateway(config)
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        completion = await sdk.chat.completions.create(
            model="smart", messages=HELLO, temperature=0.2, top_p=0.5
        )
    assert completion.choices[0].message.content
    [sent] = await upstream_requests(sim)
    assert sent["headers"]["anthropic-version"] == "2026-10-21"
    assert "temperature" not in sent["body"]
    assert "top_p" not in sent["body"]


async def test_chat_images_are_sent_as_base64_and_url_sources(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()
    await sdk.chat.completions.create(
        model="smart",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these pictures?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )
    [message] = (await sent_body(sim))["messages"]
    assert message["content"] == [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


async def test_chat_n_above_one_is_400_and_never_goes_upstream(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="smart", messages=HELLO, n=2)
    assert caught.value.param == "n"
    assert await upstream_requests(sim) == []


# ---------------------------------------------------------------- tools


PARIS: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in Paris?"}
]


async def test_tool_call_comes_back_as_openai_tool_calls(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="smart", messages=PARIS, tools=[WEATHER])
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I will use get_weather."
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_tool_call_round_trip_sends_tool_use_and_tool_result(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    first = await sdk.chat.completions.create(model="smart", messages=PARIS, tools=[WEATHER])
    message = first.choices[0].message
    [call] = message.tool_calls or []
    assert call.type == "function"
    arguments = call.function.arguments
    history: list[ChatCompletionMessageParam] = [
        *PARIS,
        {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    second = await sdk.chat.completions.create(
        model="smart", messages=history, tools=[WEATHER], parallel_tool_calls=False
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content is not None
    assert second.choices[0].message.content.startswith("Tool result: 18C and sunny")
    _, sent = await upstream_requests(sim)
    assert sent["body"]["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER["function"]["parameters"],
            "description": "Current weather for a city.",
        }
    ]
    assert sent["body"]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    tool_use = {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    tool_result = {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}
    assert sent["body"]["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "text", "text": message.content}, tool_use]},
        {"role": "user", "content": [tool_result]},
    ]


async def test_tool_call_streamed_arrives_as_openai_deltas(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="smart",
        messages=PARIS,
        tools=[WEATHER],
        tool_choice="required",
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    calls = [c for chunk in chunks for c in chunk.choices[0].delta.tool_calls or []]
    assert calls[0].id is not None
    assert calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert {call.index for call in calls} == {0}
    arguments = "".join(call.function.arguments or "" for call in calls if call.function)
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# ---------------------------------------------------------------- streaming


async def test_stream_matches_the_plain_answer(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    plain = await sdk.chat.completions.create(model="smart", messages=HELLO)
    stream = await sdk.chat.completions.create(model="smart", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        plain.choices[0].message.content
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)  # the client did not ask for usage
    _, sent = await upstream_requests(sim)
    assert sent["body"]["stream"] is True
    assert sent["headers"]["accept"] == "text/event-stream"


async def test_stream_usage_is_forwarded_when_asked(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="smart", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None
    assert usage.completion_tokens == 24
    assert usage.prompt_tokens > 0


# ---------------------------------------------------------------- upstream errors


async def test_error_429_is_relayed_with_retry_after(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "status", "status": 429, "retry_after_s": 7})
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "smart", "messages": HELLO},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
        body = await response.json()
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "upstream_rate_limited"


async def test_error_529_overloaded_is_502(sdk: openai.AsyncOpenAI, sim: RunningSimulator) -> None:
    await set_faults(sim, {"kind": "status", "status": 529})
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="smart", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unavailable"
    assert "overloaded" in caught.value.message


async def test_error_prompt_too_long_is_400_context_length_exceeded(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    message = "prompt is too long: 215000 tokens > 200000 maximum"
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    await set_faults(sim, {"kind": "status", "status": 400, "body": error})
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="smart", messages=HELLO)
    assert caught.value.code == "context_length_exceeded"
    assert message in caught.value.message


async def test_error_upstream_auth_failure_hides_the_key(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 401})
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="smart", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert UPSTREAM_KEY not in str(caught.value.body)


async def test_error_broken_stream_ends_with_sse_error_event(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 3})
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "smart", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 200
        text = await response.text()
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["code"] in {"upstream_unavailable", "upstream_protocol_error"}
    chunks = [json.loads(e) for e in events[:-1]]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert len([c for c in contents if c]) == 3
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


async def test_error_malformed_stream_fails_before_first_chunk(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "malformed"})
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "smart", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 502
        body = await response.json()
    assert body["error"]["code"] == "upstream_protocol_error"
