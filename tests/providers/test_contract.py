"""The contract every registered provider type passes: both SDKs → gateway → that type's
simulator, for plain chat, streaming, tools, images and failures. A new provider type joins
these tests by registering itself; none of them needs a key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from stellara.providers import provider_types
from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, set_faults, upstream_requests

KINDS = sorted(provider_types())
TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAF"
    "AAH/iZk9HQAAAABJRU5ErkJggg=="
)


@pytest.fixture(params=KINDS)
async def gateway(
    request: pytest.FixtureRequest, sim: RunningSimulator, start_gateway: StartGateway
) -> RunningGateway:
    kind = request.param
    provider_type = provider_types()[kind]
    entry: dict[str, Any] = {"id": f"p-{kind}", **provider_type.sim_entry(sim.url)}
    return await start_gateway(
        {
            "providers": [entry],
            "models": [
                {
                    "name": "m",
                    "targets": [{"provider": entry["id"], "model": provider_type.sim_model}],
                }
            ],
            "keys": [{"key": USER_KEY, "user": "alice"}],
        }
    )


@pytest.fixture
async def oai(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def ant(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as client:
        yield client


async def test_contract_chat_answers_and_reports_usage(
    oai: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await oai.chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello contract"},
        ],
    )
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert len(await upstream_requests(sim)) == 1


async def test_contract_stream_matches_non_stream(oai: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Tell me about streams"}]
    whole = await oai.chat.completions.create(model="m", messages=messages)
    stream = await oai.chat.completions.create(
        model="m", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert text == whole.choices[0].message.content
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens > 0


async def test_contract_tool_call_round_trip(oai: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await oai.chat.completions.create(
        model="m", messages=messages, tools=[TOOL], tool_choice="required"
    )
    [call] = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "21 degrees"})
    second = await oai.chat.completions.create(model="m", messages=messages, tools=[TOOL])
    assert "21 degrees" in (second.choices[0].message.content or "")


async def test_contract_image_reaches_provider(
    oai: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    content: Any = [
        {"type": "text", "text": "Describe this"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
    ]
    completion = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}]
    )
    assert completion.choices[0].message.content
    [sent] = await upstream_requests(sim)
    assert PIXEL.split(",", 1)[1] in json.dumps(sent["body"])


async def test_contract_anthropic_sdk_reaches_provider(
    ant: anthropic.AsyncAnthropic,
) -> None:
    message = await ant.messages.create(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "Hello from Claude SDK"}]
    )
    assert message.content[0].type == "text"
    assert message.usage.output_tokens > 0
    async with ant.messages.stream(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "Hello from Claude SDK"}]
    ) as stream:
        streamed = "".join([text async for text in stream.text_stream])
    assert streamed == message.content[0].text


async def test_contract_provider_5xx_is_502(oai: openai.AsyncOpenAI, sim: RunningSimulator) -> None:
    await set_faults(sim, {"kind": "status", "status": 500})
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502


async def test_contract_provider_429_keeps_retry_after(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 429, "retry_after_s": 3})
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
    assert caught.value.response.headers["Retry-After"] == "3"


async def test_contract_cut_stream_is_an_error_not_an_answer(
    oai: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2})
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "cut me off"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


ANTHROPIC_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


async def test_contract_anthropic_sdk_tool_round_trip(ant: anthropic.AsyncAnthropic) -> None:
    messages: Any = [{"role": "user", "content": "What is the weather in Oslo?"}]
    first = await ant.messages.create(
        model="m",
        max_tokens=128,
        messages=messages,
        tools=[ANTHROPIC_TOOL],
        tool_choice={"type": "any"},
    )
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather"
    assert isinstance(call.input, dict)
    messages.append(
        {"role": "assistant", "content": [block.model_dump() for block in first.content]}
    )
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4 degrees"}],
        }
    )
    second = await ant.messages.create(
        model="m", max_tokens=128, messages=messages, tools=[ANTHROPIC_TOOL]
    )
    text = "".join(block.text for block in second.content if block.type == "text")
    assert "4 degrees" in text


async def test_contract_anthropic_sdk_image_reaches_provider(
    ant: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    data = PIXEL.split(",", 1)[1]
    message = await ant.messages.create(
        model="m",
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": data},
                    },
                ],
            }
        ],
    )
    assert message.content[0].type == "text"
    [sent] = await upstream_requests(sim)
    assert data in json.dumps(sent["body"])
