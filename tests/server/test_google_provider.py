"""A `type: google` provider end to end: OpenAI SDK → gateway → Gemini-format simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
    ChatCompletionUserMessageParam,
)

from stellara.sim import RunningSimulator, SimConfig, start_simulator
from tests.conftest import (
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
    upstream_requests,
)

MODEL = "gemini-2.0-flash"
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def google_config(sim_url: str) -> dict[str, Any]:
    return {
        "providers": [
            {"id": "gemini", "type": "google", "base_url": sim_url, "api_key": UPSTREAM_KEY}
        ],
        "models": [{"name": "gem", "targets": [{"provider": "gemini", "model": MODEL}]}],
        "keys": [{"key": USER_KEY, "user": "alice"}],
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(google_config(sim.url))


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def last_sent(sim: RunningSimulator) -> dict[str, Any]:
    return (await upstream_requests(sim))[-1]


async def test_google_chat_sends_gemini_request_and_answers_openai(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="gem",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there, gateway"},
        ],
        temperature=0.3,
        max_tokens=50,
        stop=["\n\n"],
    )
    completion = raw.parse()
    assert raw.headers["x-stellara-provider"] == "gemini"
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content is not None
    assert completion.choices[0].message.content.startswith("Hello there, gateway")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 24
    sent = await last_sent(sim)
    assert sent["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert sent["query"] == {}
    assert sent["headers"]["x-goog-api-key"] == UPSTREAM_KEY
    assert "authorization" not in sent["headers"]
    assert sent["body"] == {
        "contents": [{"parts": [{"text": "Hello there, gateway"}], "role": "user"}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 50, "stopSequences": ["\n\n"]},
    }


async def test_google_chat_max_tokens_is_length(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gem", messages=[{"role": "user", "content": "Hello"}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_google_stream_relays_chunks(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    whole = await client.chat.completions.create(
        model="gem", messages=[{"role": "user", "content": "Stream this"}]
    )
    stream = await client.chat.completions.create(
        model="gem",
        messages=[{"role": "user", "content": "Stream this"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in with_choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 24
    assert len({c.id for c in chunks}) == 1
    sent = await last_sent(sim)
    assert sent["path"] == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert sent["query"] == {"alt": "sse"}
    assert sent["headers"]["accept"] == "text/event-stream"


async def test_google_stream_without_usage_request_hides_usage_chunk(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model="gem", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)


async def test_google_tool_call_round_trip(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    question: ChatCompletionUserMessageParam = {
        "role": "user",
        "content": "What is the weather in Paris?",
    }
    first = await client.chat.completions.create(
        model="gem", messages=[question], tools=[WEATHER_TOOL], tool_choice="required"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = await last_sent(sim)
    assert sent["body"]["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert sent["body"]["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    history: list[ChatCompletionMessageParam] = [
        question,
        choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    second = await client.chat.completions.create(
        model="gem",
        messages=history,
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content is not None
    assert second.choices[0].message.content.startswith('Tool result: {"result":{"temp_c":21}}')
    sent = await last_sent(sim)
    assert sent["body"]["contents"] == [
        {"parts": [{"text": "What is the weather in Paris?"}], "role": "user"},
        {
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
            "role": "model",
        },
        {
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"result": {"temp_c": 21}},
                    }
                }
            ],
            "role": "user",
        },
    ]


async def test_google_stream_tool_call(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gem",
        messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    [chunk] = chunks
    delta = chunk.choices[0].delta
    assert delta.tool_calls is not None
    assert delta.tool_calls[0].function is not None
    assert json.loads(delta.tool_calls[0].function.arguments or "") == {"city": "Rome"}
    assert chunk.choices[0].finish_reason == "tool_calls"


async def test_google_images_are_inline_and_file_data(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    await client.chat.completions.create(
        model="gem",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ],
    )
    sent = await last_sent(sim)
    assert sent["body"]["contents"][0]["parts"] == [
        {"text": "What is in these?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.png", "mimeType": "image/png"}},
    ]


async def test_google_json_mode(client: openai.AsyncOpenAI, sim: RunningSimulator) -> None:
    completion = await client.chat.completions.create(
        model="gem",
        messages=[{"role": "user", "content": "Reply in JSON"}],
        response_format={"type": "json_object"},
    )
    assert "answer" in json.loads(completion.choices[0].message.content or "")
    sent = await last_sent(sim)
    assert sent["body"]["generationConfig"] == {"responseMimeType": "application/json"}


async def test_google_json_schema(client: openai.AsyncOpenAI, sim: RunningSimulator) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    completion = await client.chat.completions.create(
        model="gem",
        messages=[{"role": "user", "content": "Capital of Italy: Rome"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "c", "schema": schema, "strict": True},
        },
    )
    assert json.loads(completion.choices[0].message.content or "") == {"city": "Rome"}


async def test_google_invalid_tool_arguments_is_400(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gem",
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "x"},
            ],
        )
    assert caught.value.status_code == 400
    assert await upstream_requests(sim) == []


# ---------------------------------------------------------------- upstream failures


async def test_google_rate_limit_is_429_with_retry_after(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 429, "retry_after_s": 7})
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="gem", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.response.headers["Retry-After"] == "7"


async def test_google_rate_limit_retry_info_becomes_retry_after(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    body = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}],
        }
    }
    await set_faults(sim, {"kind": "status", "status": 429, "body": body})
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="gem", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.response.headers["Retry-After"] == "12"


async def test_google_server_error_is_502(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 500})
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model="gem", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unavailable"  # type: ignore[index]


async def test_google_safety_block_is_content_filter_error(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    blocked = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
            ],
        },
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": MODEL,
    }
    await set_faults(sim, {"kind": "status", "status": 200, "body": blocked})
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gem", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "content_filter"


async def test_google_broken_stream_ends_with_error_event(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 3})
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "gem", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 200
        text = await response.text()
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] in {
        "upstream_unavailable",
        "upstream_protocol_error",
    }
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 3
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


async def test_google_broken_stream_raises_in_sdk(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2})
    stream = await client.chat.completions.create(
        model="gem", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_google_wrong_upstream_key_is_502_without_leaking_it(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    async with await start_simulator(SimConfig(api_key="AIza-the-right-key")) as strict:
        gateway = await start_gateway(google_config(strict.url))
        async with http.post(
            f"{gateway.base_url}/chat/completions",
            json={"model": "gem", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {USER_KEY}"},
        ) as response:
            status, text = response.status, await response.text()
    assert status == 502
    assert json.loads(text)["error"]["code"] == "upstream_auth_failed"
    assert UPSTREAM_KEY not in text
