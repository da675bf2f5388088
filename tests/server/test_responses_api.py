"""openai SDK → Stellara `/v1/responses` → every provider type (simulated): the calls a Responses
client makes, each answer and stream event checked against OpenAI's published schemas."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.responses import (
    FunctionToolParam,
    ResponseInputParam,
    ResponseInputText,
    ResponseOutputText,
)
from pydantic import BaseModel

from stellara.sim import RunningSimulator
from tests.conftest import (
    MASTER_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
)
from tests.specs.openai_schema import validate, validate_event

OTHER_KEY = "sk-test-other-user-key-0003"
MODELS = ("gpt", "claude", "gem", "azure")
PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d49484452")).decode()
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def four_providers(sim_url: str) -> dict[str, Any]:
    """A model on each provider type, all answered by the one simulator."""
    return {
        "server": {"master_key": MASTER_KEY},
        "providers": [
            {"id": "oai", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY},
            {"id": "ant", "type": "anthropic", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {"id": "goo", "type": "google", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {
                "id": "azu",
                "type": "azure",
                "base_url": sim_url,
                "api_key": UPSTREAM_KEY,
                "api_version": "2024-10-21",
                "deployments": {"gpt-4o": "prod-gpt4o"},
            },
        ],
        "models": [
            {"name": "gpt", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
            {"name": "claude", "targets": [{"provider": "ant", "model": "claude-sonnet-5-5"}]},
            {"name": "gem", "targets": [{"provider": "goo", "model": "gemini-2.0-flash"}]},
            {"name": "azure", "targets": [{"provider": "azu", "model": "gpt-4o"}]},
        ],
        "keys": [
            {"key": USER_KEY, "user": "alice"},
            {"key": OTHER_KEY, "user": "mallory"},
        ],
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(four_providers(sim.url))


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def raw_create(gateway: RunningGateway, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.base_url}/responses", json=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


async def raw_stream(gateway: RunningGateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event of a streamed answer, each checked against its schema as it arrives, with
    the `event:` line equal to its `type`."""
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    events: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.base_url}/responses", json={**body, "stream": True}, headers=headers
        ) as answer,
    ):
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        name = None
        async for line in answer.content:
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                name = text.removeprefix("event: ")
            elif text.startswith("data: "):
                event = json.loads(text.removeprefix("data: "))
                assert event["type"] == name
                validate_event(event)
                events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


@pytest.mark.parametrize("model", MODELS)
async def test_responses_create_answers_text_on_every_provider(
    gateway: RunningGateway, client: openai.AsyncOpenAI, model: str
) -> None:
    raw = await client.responses.with_raw_response.create(
        model=model, input="Tell me about rivers.", instructions="Be brief.", max_output_tokens=64
    )
    validate("Response", json.loads(raw.text))
    response = raw.parse()
    assert response.status == "completed"
    assert response.model == model
    assert response.output_text
    assert response.usage is not None
    assert response.usage.output_tokens > 0
    assert (
        raw.headers["x-stellara-provider"]
        == {
            "gpt": "oai",
            "claude": "ant",
            "gem": "goo",
            "azure": "azu",
        }[model]
    )


@pytest.mark.parametrize("model", MODELS)
async def test_responses_image_input_reaches_every_provider(
    client: openai.AsyncOpenAI, model: str
) -> None:
    content: ResponseInputParam = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in this picture?"},
                {
                    "type": "input_image",
                    "image_url": f"data:image/png;base64,{PNG}",
                    "detail": "auto",
                },
            ],
        }
    ]
    response = await client.responses.create(model=model, input=content)
    assert response.status == "completed"
    assert response.output_text


@pytest.mark.parametrize("model", MODELS)
async def test_responses_function_tool_turn_continues_by_previous_response_id(
    client: openai.AsyncOpenAI, model: str
) -> None:
    first = await client.responses.create(
        model=model, input="What is the weather in Paris?", tools=[WEATHER]
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    second = await client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"}],
        tools=[WEATHER],
    )
    assert second.status == "completed"
    assert second.previous_response_id == first.id
    assert second.output_text


class Weather(BaseModel):
    city: str
    degrees: int


@pytest.mark.parametrize("model", MODELS)
async def test_responses_parse_gives_structured_output(
    client: openai.AsyncOpenAI, model: str
) -> None:
    raw = await client.responses.with_raw_response.parse(
        model=model, input="The weather in Oslo?", text_format=Weather
    )
    validate("Response", json.loads(raw.text))
    parsed = raw.parse()
    assert parsed.output_parsed == Weather(city="Oslo", degrees=1)
    assert parsed.status == "completed"


@pytest.mark.parametrize("model", MODELS)
async def test_responses_stream_with_text_format_parses_the_final_response(
    client: openai.AsyncOpenAI, model: str
) -> None:
    async with client.responses.stream(
        model=model, input="The weather in Oslo?", text_format=Weather
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert final.output_parsed == Weather(city="Oslo", degrees=1)
    assert Weather.model_validate_json("".join(deltas)) == final.output_parsed


async def test_responses_stream_events_with_text_format_on_claude_follow_the_spec(
    gateway: RunningGateway,
) -> None:
    text = {
        "format": {
            "type": "json_schema",
            "name": "Weather",
            "strict": True,
            "schema": {**Weather.model_json_schema(), "additionalProperties": False},
        }
    }
    events = await raw_stream(
        gateway, {"model": "claude", "input": "The weather in Oslo?", "text": text}
    )
    types = [event["type"] for event in events]
    assert "response.function_call_arguments.delta" not in types
    (done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert Weather.model_validate_json(done["text"]) == Weather(city="Oslo", degrees=1)
    assert types[-1] == "response.completed"


@pytest.mark.parametrize("model", MODELS)
async def test_responses_stream_helper_gets_the_final_response(
    client: openai.AsyncOpenAI, model: str
) -> None:
    async with client.responses.stream(model=model, input="Tell me about rivers.") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "".join(deltas) != ""
    stored = await client.responses.retrieve(final.id)
    assert stored.output_text == final.output_text


async def test_responses_stream_events_follow_the_spec_in_order(gateway: RunningGateway) -> None:
    events = await raw_stream(gateway, {"model": "claude", "input": "Hello"})
    types = [event["type"] for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.output_text.delta" in types
    assert types.index("response.output_text.done") < types.index("response.output_item.done")


async def test_responses_stream_of_a_tool_call_streams_its_arguments(
    gateway: RunningGateway,
) -> None:
    events = await raw_stream(
        gateway, {"model": "gem", "input": "Weather in Rome?", "tools": [WEATHER]}
    )
    types = [event["type"] for event in events]
    assert "response.function_call_arguments.delta" in types
    (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert json.loads(done["arguments"])["city"]


async def test_responses_retrieve_delete_and_list_input_items(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="gpt",
        input=[
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": "Second question"},
        ],
    )
    assert (await client.responses.retrieve(response.id)).id == response.id
    items = await client.responses.input_items.list(response.id, order="asc")
    texts = [
        part.text
        for item in items.data
        if item.type == "message"
        for part in item.content
        if isinstance(part, ResponseInputText | ResponseOutputText)
    ]
    assert texts == ["First question", "First answer", "Second question"]
    newest = await client.responses.input_items.list(response.id, limit=1)
    assert newest.has_more
    assert [item.id for item in newest.data] == [items.data[-1].id]
    await client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(response.id)


async def test_responses_of_another_user_are_not_found(
    gateway: RunningGateway, client: openai.AsyncOpenAI
) -> None:
    response = await client.responses.create(model="gpt", input="A secret of alice")
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=OTHER_KEY, max_retries=0
    ) as other:
        with pytest.raises(openai.NotFoundError) as info:
            await other.responses.retrieve(response.id)
        assert info.value.body == {
            "message": f"Response with id '{response.id}' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
        with pytest.raises(openai.NotFoundError):
            await other.responses.create(
                model="gpt", input="go on", previous_response_id=response.id
            )
        with pytest.raises(openai.NotFoundError):
            await other.responses.delete(response.id)
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0
    ) as master:
        assert (await master.responses.retrieve(response.id)).id == response.id


async def test_responses_store_false_keeps_nothing(client: openai.AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(
        model="gpt", input="Forget me", store=False
    )
    assert json.loads(raw.text)["store"] is False
    response = raw.parse()
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt", "input": "hi", "previous_response_id": "resp_nope"}, None),
        (
            {
                "model": "gpt",
                "input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}],
            },
            None,
        ),
        ({"model": "gpt", "input": "hi", "tools": [{"type": "web_search"}]}, None),
        ({"model": "gpt", "input": "hi", "temperature": "hot"}, "temperature"),
        ({"model": "gpt", "input": "hi", "frobnicate": True}, None),
        ({"model": "gpt", "input": [{"type": "wat"}]}, None),
    ],
)
async def test_responses_bad_requests_get_openai_4xx_errors(
    gateway: RunningGateway, body: dict[str, Any], param: str | None
) -> None:
    status, answer = await raw_create(gateway, body)
    assert status in (400, 404), answer
    validate("Error", answer["error"])
    assert answer["error"]["message"]
    if param is not None:
        assert answer["error"]["param"] == param


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_responses_stream_broken_by_the_provider_ends_failed(
    gateway: RunningGateway, sim: RunningSimulator, model: str
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 3})
    events = await raw_stream(gateway, {"model": model, "input": "Tell me about rivers."})
    types = [event["type"] for event in events]
    assert types[-2:] == ["error", "response.failed"]
    assert "response.completed" not in types
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["message"]
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.NotFoundError):  # a failed response is not stored
            await sdk.responses.retrieve(failed["id"])
