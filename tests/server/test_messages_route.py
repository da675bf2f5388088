"""The Anthropic route end to end: official `anthropic` SDK → gateway → OpenAI-format simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    USER_KEY,
    RunningGateway,
    set_faults,
    upstream_requests,
)

WEATHER_TOOL: anthropic.types.ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
HELLO: dict[str, Any] = {
    "model": "test-model",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    # No retries: every status must reach the test as the gateway sent it, without waiting.
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def post_messages(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    sent = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(
        f"{gateway.url}/v1/messages",
        data=sent,
        headers=headers if headers is not None else {"x-api-key": USER_KEY},
    ) as response:
        return response.status, dict(response.headers), await response.text()


def error_of(exc: anthropic.APIStatusError) -> dict[str, Any]:
    """The `error` object of an Anthropic error body, checking the envelope on the way."""
    body = exc.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    error: dict[str, Any] = body["error"]
    return error


def assert_anthropic_error(text: str, error_type: str) -> None:
    body = json.loads(text)
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


# ---------------------------------------------------------------- answers


async def test_messages_plain_message_is_anthropic_shaped(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="test-model",
        max_tokens=100,
        messages=[{"role": "user", "content": "Hello there, gateway"}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "test-model"
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text"
    assert block.text.startswith("Hello there, gateway")
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


async def test_messages_headers_name_request_and_provider(
    client: anthropic.AsyncAnthropic,
) -> None:
    raw = await client.messages.with_raw_response.create(
        model="test-model", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-stellara-request-id"].startswith("req_")
    assert raw.headers["x-stellara-provider"] == "sim"
    assert raw.headers["x-stellara-attempts"] == "1"
    assert raw.headers["x-stellara-cache"] == "miss"


async def test_messages_system_prompt_reaches_upstream_first(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    await client.messages.create(
        model="test-model",
        max_tokens=7,
        system="Be brief.",
        extra_body={"temperature": 0.3},  # this SDK version no longer types temperature
        messages=[{"role": "user", "content": "hi"}],
    )
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        "max_tokens": 7,
        "temperature": 0.3,
    }


async def test_messages_max_tokens_cuts_answer(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="test-model", max_tokens=3, messages=[{"role": "user", "content": "tell me more"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


async def test_messages_stop_sequences_cut_answer(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    message = await client.messages.create(
        model="test-model",
        max_tokens=100,
        stop_sequences=["gamma"],
        messages=[{"role": "user", "content": "alpha beta gamma delta"}],
    )
    [block] = message.content
    assert block.type == "text"
    assert "gamma" not in block.text
    assert block.text.startswith("alpha beta")
    assert message.stop_reason == "end_turn"
    [sent] = await upstream_requests(sim)
    assert sent["body"]["stop"] == ["gamma"]


async def test_messages_stream_text_matches_final_message(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    request: dict[str, Any] = {
        "model": "test-model",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Stream this answer please"}],
    }
    whole = await client.messages.create(**request)
    async with client.messages.stream(**request) as stream:
        parts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(parts) == whole.content[0].text
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(parts)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    streamed = (await upstream_requests(sim))[-1]["body"]
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


async def test_messages_stream_is_anthropic_server_sent_events(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    status, headers, text = await post_messages(http, gateway, {**HELLO, "stream": True})
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["x-stellara-provider"] == "sim"
    frames = [frame.split("\n") for frame in text.split("\n\n") if frame]
    names = [lines[0].removeprefix("event: ") for lines in frames]
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in frames]
    assert all(data["type"] == name for name, data in zip(names, datas, strict=True))
    assert names[0] == "message_start"
    assert names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert datas[-2]["delta"]["stop_reason"] == "end_turn"
    assert datas[-2]["usage"]["output_tokens"] > 0


async def test_messages_tool_use_round_trip(client: anthropic.AsyncAnthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await client.messages.create(
        model="test-model", max_tokens=200, messages=messages, tools=[WEATHER_TOOL]
    )
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather"
    assert isinstance(call.input, dict)
    assert "city" in call.input

    messages.append({"role": "assistant", "content": first.content})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18 C and sunny"}
            ],
        }
    )
    second = await client.messages.create(
        model="test-model", max_tokens=200, messages=messages, tools=[WEATHER_TOOL]
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert "18 C and sunny" in second.content[0].text


async def test_messages_stream_tool_use_input_is_assembled(
    client: anthropic.AsyncAnthropic,
) -> None:
    async with client.messages.stream(
        model="test-model",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        final = await stream.get_final_message()
    [call] = final.content
    assert call.type == "tool_use"
    assert call.name == "get_weather"
    assert "city" in call.input
    assert final.stop_reason == "tool_use"


async def test_messages_base64_image_reaches_upstream_as_data_url(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    await client.messages.create(
        model="test-model",
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                ],
            }
        ],
    )
    [sent] = await upstream_requests(sim)
    assert sent["body"]["messages"][0]["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


@pytest.mark.parametrize("header", ["x-api-key", "Authorization"])
async def test_messages_accepts_either_key_header_and_any_version(
    gateway: RunningGateway, http: aiohttp.ClientSession, header: str
) -> None:
    value = USER_KEY if header == "x-api-key" else f"Bearer {USER_KEY}"
    headers = {header: value, "anthropic-version": "1999-01-01"}
    status, _, text = await post_messages(http, gateway, HELLO, headers)
    assert status == 200
    assert json.loads(text)["type"] == "message"


# ---------------------------------------------------------------- errors


async def test_messages_without_key_is_authentication_error(gateway: RunningGateway) -> None:
    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key=None, max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await sdk.messages.create(**HELLO, extra_headers={"Authorization": anthropic.Omit()})
    assert caught.value.status_code == 401
    assert error_of(caught.value)["type"] == "authentication_error"


async def test_messages_unknown_model_is_not_found_error(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.messages.create(**{**HELLO, "model": "no-such-model"})
    assert error_of(caught.value)["type"] == "not_found_error"


async def test_messages_model_not_allowed_is_permission_error(gateway: RunningGateway) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=LIMITED_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            await sdk.messages.create(**HELLO)
    assert error_of(caught.value)["type"] == "permission_error"


async def test_messages_missing_max_tokens_is_bad_request(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = {key: value for key, value in HELLO.items() if key != "max_tokens"}
    status, _, text = await post_messages(http, gateway, body)
    assert status == 400
    assert_anthropic_error(text, "invalid_request_error")
    assert "max_tokens" in json.loads(text)["error"]["message"]


async def test_messages_missing_max_tokens_raises_bad_request_in_sdk(
    client: anthropic.AsyncAnthropic,
) -> None:
    # `messages.create` refuses to send without max_tokens, so use the SDK's raw request path.
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
    assert error_of(caught.value)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"model": "test-model", "max_tokens": 5, "messages": "nope"}'],
)
async def test_messages_malformed_body_is_invalid_request(
    gateway: RunningGateway, http: aiohttp.ClientSession, body: bytes
) -> None:
    status, _, text = await post_messages(http, gateway, body)
    assert status == 400
    assert_anthropic_error(text, "invalid_request_error")


async def test_messages_oversized_body_is_413_request_too_large(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * (65 * 1024)}]}
    status, _, text = await post_messages(http, gateway, big)
    assert status == 413
    assert_anthropic_error(text, "request_too_large")


async def test_messages_upstream_500_is_502_api_error(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 500})
    with pytest.raises(anthropic.APIStatusError) as caught:
        await client.messages.create(**HELLO)
    assert caught.value.status_code == 502
    assert error_of(caught.value)["type"] == "api_error"
    assert caught.value.response.headers["x-stellara-provider"] == "sim"


async def test_messages_upstream_429_is_rate_limit_error_with_retry_after(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 429, "retry_after_s": 7})
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(**HELLO)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert error_of(caught.value)["type"] == "rate_limit_error"


async def test_messages_stream_failure_before_first_chunk_is_http_error(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "status", "status": 500})
    status, headers, text = await post_messages(http, gateway, {**HELLO, "stream": True})
    assert status == 502
    assert headers["Content-Type"].startswith("application/json")
    assert_anthropic_error(text, "api_error")


async def test_messages_stream_cut_midway_ends_with_error_event(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 3})
    status, _, text = await post_messages(http, gateway, {**HELLO, "stream": True})
    assert status == 200
    frames = [frame for frame in text.split("\n\n") if frame]
    assert frames[-1].startswith("event: error\ndata: ")
    assert_anthropic_error(frames[-1].split("\n")[1].removeprefix("data: "), "api_error")
    assert not any(frame.startswith("event: message_stop") for frame in frames)
    assert not any(frame.startswith("event: message_delta") for frame in frames)


async def test_messages_stream_cut_midway_raises_in_sdk(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2})

    async def read_all() -> None:
        async with client.messages.stream(**HELLO) as stream:
            async for _ in stream.text_stream:
                pass

    with pytest.raises(anthropic.APIStatusError) as caught:
        await read_all()
    assert error_of(caught.value)["type"] == "api_error"


async def test_messages_wrong_method_keeps_generic_405(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/v1/messages") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
