"""openai SDK structured output → Stellara → Anthropic (simulated): `parse` and its stream helper
on a Claude-backed model, which the gateway enforces with a forced answer tool."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, upstream_requests
from tests.server.test_anthropic_provider import anthropic_config
from tests.specs.openai_schema import validate

OSLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "The weather in Oslo?"}]
ANSWER_TOOL = "stellara_answer_Weather"


class Weather(BaseModel):
    city: str
    degrees: int
    sky: str


class Forecast(BaseModel):
    today: Weather
    later: list[Weather]


class GetWeather(BaseModel):
    """Current weather for a city."""

    city: str


async def sdk_for(gateway: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY, max_retries=0)


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(anthropic_config(sim.url))


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with await sdk_for(gateway) as client:
        yield client


async def sent_bodies(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [sent["body"] for sent in await upstream_requests(sim)]


async def test_parse_gives_the_model_on_a_claude_model(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await sdk.chat.completions.parse(
        model="smart", messages=OSLO, response_format=Weather
    )
    [choice] = completion.choices
    assert choice.message.parsed == Weather(city="Oslo", degrees=1, sky="in")
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls in (None, [])
    [body] = await sent_bodies(sim)
    [tool] = body["tools"]
    assert tool["name"] == ANSWER_TOOL
    assert tool["input_schema"]["properties"].keys() == {"city", "degrees", "sky"}
    assert body["tool_choice"] == {
        "type": "tool",
        "name": ANSWER_TOOL,
        "disable_parallel_tool_use": True,
    }
    assert "system" not in body


async def test_parse_streamed_gives_the_model_from_content_deltas(
    sdk: openai.AsyncOpenAI,
) -> None:
    async with sdk.chat.completions.stream(
        model="smart",
        messages=OSLO,
        response_format=Weather,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = [event.chunk async for event in stream if event.type == "chunk"]
        final = await stream.get_final_completion()
    deltas = [choice.delta for chunk in chunks for choice in chunk.choices]
    assert all(not delta.tool_calls for delta in deltas)
    assert len([delta for delta in deltas if delta.content]) > 1  # streamed, not in one piece
    [choice] = final.choices
    assert choice.message.parsed == Weather(city="Oslo", degrees=1, sky="in")
    assert choice.finish_reason == "stop"


async def test_parse_of_a_nested_model_keeps_its_defs(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await sdk.chat.completions.parse(
        model="smart", messages=OSLO, response_format=Forecast
    )
    oslo = Weather(city="Oslo", degrees=1, sky="in")
    assert completion.choices[0].message.parsed == Forecast(today=oslo, later=[oslo])
    [body] = await sent_bodies(sim)
    assert body["tools"][0]["input_schema"]["$defs"].keys() == {"Weather"}


async def test_json_object_answers_one_json_object(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="smart", messages=OSLO, response_format={"type": "json_object"}
    )
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert isinstance(json.loads(choice.message.content or ""), dict)


async def test_client_tools_beside_response_format_stay_tool_calls_then_the_answer_parses(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    tools = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    first = await sdk.chat.completions.parse(
        model="smart", messages=OSLO, response_format=Weather, tools=tools
    )
    [choice] = first.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert call.function.parsed_arguments == GetWeather(city="Oslo")
    history: list[ChatCompletionMessageParam] = [
        *OSLO,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "7 degrees, clear"},
    ]
    second = await sdk.chat.completions.parse(
        model="smart", messages=history, response_format=Weather, tools=tools
    )
    [answer] = second.choices
    assert answer.finish_reason == "stop"
    assert isinstance(answer.message.parsed, Weather)
    assert answer.message.tool_calls in (None, [])
    bodies = await sent_bodies(sim)
    assert [[tool["name"] for tool in body["tools"]] for body in bodies] == [
        ["get_weather", ANSWER_TOOL],
        ["get_weather", ANSWER_TOOL],
    ]
    assert [body["tool_choice"] for body in bodies] == [{"type": "any"}, {"type": "any"}]


async def test_client_tool_streamed_beside_response_format_is_a_tool_call_delta(
    sdk: openai.AsyncOpenAI,
) -> None:
    tools = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    async with sdk.chat.completions.stream(
        model="smart", messages=OSLO, response_format=Weather, tools=tools
    ) as stream:
        final = await stream.get_final_completion()
    [choice] = final.choices
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    [call] = choice.message.tool_calls or []
    assert call.function.parsed_arguments == GetWeather(city="Oslo")


async def test_client_tool_named_as_the_answer_tool_is_400(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    clash = openai.pydantic_function_tool(GetWeather, name=ANSWER_TOOL)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.parse(
            model="smart", messages=OSLO, response_format=Weather, tools=[clash]
        )
    validate("Error", caught.value.body)
    assert ANSWER_TOOL in caught.value.message
    assert await upstream_requests(sim) == []


async def test_strict_reaches_anthropic_only_with_strict_tools(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    for strict_tools in (False, True):
        gateway = await start_gateway(anthropic_config(sim.url, strict_tools=strict_tools))
        async with await sdk_for(gateway) as client:
            completion = await client.chat.completions.parse(
                model="smart", messages=OSLO, response_format=Weather
            )
        assert isinstance(completion.choices[0].message.parsed, Weather)
    without, with_strict = await sent_bodies(sim)
    assert "strict" not in without["tools"][0]
    assert with_strict["tools"][0]["strict"] is True
