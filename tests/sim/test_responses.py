import json
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.responses import (
    FunctionToolParam,
    ResponseInputParam,
    ResponseStreamEvent,
    ToolChoiceFunction,
)

from stellara.sim import RunningSimulator, SimConfig, start_simulator
from tests.specs.openai_schema import validate, validate_event

AUTH = {"Authorization": "Bearer sk-test"}
QUESTION = "What is the weather in Paris?"
WEATHER_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
    "strict": False,
}
TIME_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {}},
    "strict": True,
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 24,  # SimConfig.default_answer_tokens
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def sim():
    simulator = await start_simulator(SimConfig())
    yield simulator
    await simulator.close()


@pytest.fixture
async def client(sim):
    async with openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, sim: RunningSimulator, body: dict[str, Any]
) -> tuple[int, Any]:
    async with http.post(sim.url + "/v1/responses", json=body, headers=AUTH) as response:
        return response.status, await response.json(content_type=None)


async def stream_events(
    http: aiohttp.ClientSession, sim: RunningSimulator, body: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every event of a streamed answer, after checking each `event:` line matches its data."""
    async with http.post(
        sim.url + "/v1/responses", json={**body, "stream": True}, headers=AUTH
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = (await response.read()).decode()
    return parse_events(raw)


def parse_events(raw: str) -> list[dict[str, Any]]:
    events = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


async def set_faults(
    http: aiohttp.ClientSession, sim: RunningSimulator, *rules: dict[str, Any]
) -> None:
    async with http.post(sim.url + "/_sim/faults", json={"faults": list(rules)}) as response:
        assert response.status == 200, await response.text()


REQUESTS: dict[str, dict[str, Any]] = {
    "text": {"model": "gpt-4o", "input": QUESTION},
    "echoed settings": {
        "model": "gpt-4o",
        "instructions": "Answer briefly.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"run": "1"},
        "user": "user-1",
        "safety_identifier": "safe-1",
        "store": False,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"verbosity": "low"},
        "truncation": "auto",
        "parallel_tool_calls": False,
    },
    "function call": {"model": "gpt-4o", "input": QUESTION, "tools": [WEATHER_TOOL]},
    "json schema": {
        "model": "gpt-4o",
        "input": QUESTION,
        "text": {
            "format": {
                "type": "json_schema",
                "name": "weather",
                "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            }
        },
    },
    "cut by max_output_tokens": {"model": "gpt-4o", "input": QUESTION, "max_output_tokens": 16},
    "tool result turn": {
        "model": "gpt-4o",
        "input": [
            {"type": "message", "role": "user", "content": QUESTION},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
    },
}


@pytest.mark.parametrize("body", REQUESTS.values(), ids=REQUESTS.keys())
async def test_responses_json_answer_validates_against_spec(sim, http, body):
    status, answer = await post(http, sim, body)
    assert status == 200
    validate("Response", answer)


@pytest.mark.parametrize("body", REQUESTS.values(), ids=REQUESTS.keys())
async def test_responses_stream_events_validate_against_spec(sim, http, body):
    events = await stream_events(http, sim, body)
    for event in events:
        validate_event(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    final = events[-1]["response"]
    status, answer = await post(http, sim, body)
    assert status == 200
    # The stream ends on the same Response the JSON route answers, but for ids and times.
    assert final["output"][0]["type"] == answer["output"][0]["type"]
    assert final["usage"] == answer["usage"]
    assert final["status"] == answer["status"]


async def test_responses_stream_text_event_sequence(sim, http):
    events = await stream_events(http, sim, {"model": "gpt-4o", "input": QUESTION})
    assert [event["type"] for event in events] == TEXT_EVENTS
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    (done,) = (e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == deltas
    item_ids = {event["item_id"] for event in events if "item_id" in event}
    assert item_ids == {events[-1]["response"]["output"][0]["id"]}
    assert events[0]["response"]["status"] == "in_progress"
    assert "usage" not in events[0]["response"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == deltas


async def test_responses_stream_function_call_event_sequence(sim, http):
    body = {"model": "gpt-4o", "input": QUESTION, "tools": [WEATHER_TOOL]}
    events = await stream_events(http, sim, body)
    kinds = [event["type"] for event in events]
    n_deltas = kinds.count("response.function_call_arguments.delta")
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * n_deltas,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert n_deltas > 1
    arguments = "".join(e["delta"] for e in events if "delta" in e)
    assert events[2]["item"]["arguments"] == ""
    assert events[-3]["arguments"] == arguments
    assert events[-3]["name"] == "get_weather"
    assert json.loads(arguments) == {"city": "Paris", "days": 1}


async def test_responses_max_output_tokens_cuts_to_incomplete(sim, http):
    body = {"model": "gpt-4o", "input": QUESTION, "max_output_tokens": 16}
    status, answer = await post(http, sim, body)
    assert status == 200
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["output"][0]["status"] == "incomplete"
    assert answer["usage"]["output_tokens"] == 16
    events = await stream_events(http, sim, body)
    assert events[-1]["type"] == "response.incomplete"
    assert [e["type"] for e in events].count("response.output_text.delta") == 16


async def test_responses_answer_matches_chat_completions(sim, http, client):
    image = "https://example.com/paris.png"
    chat = await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            },
        ],
    )
    response = await client.responses.create(
        model="gpt-4o",
        instructions="Answer briefly.",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": QUESTION},
                    {"type": "input_image", "image_url": image, "detail": "auto"},
                ],
            }
        ],
    )
    assert response.output_text == chat.choices[0].message.content
    assert response.usage is not None
    assert chat.usage is not None
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == chat.usage.completion_tokens
    assert response.usage.total_tokens == chat.usage.total_tokens


async def test_responses_sdk_create_answers_text(client):
    response = await client.responses.create(model="gpt-4o", input=QUESTION)
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text.startswith(QUESTION)
    (message,) = response.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert response.usage is not None
    assert response.usage.output_tokens == 24
    again = await client.responses.create(model="gpt-4o", input=QUESTION)
    assert again.output_text == response.output_text
    assert again.id != response.id


async def test_responses_sdk_stream_final_response_matches_create(client):
    created = await client.responses.create(model="gpt-4o", input=QUESTION)
    events: list[ResponseStreamEvent] = []
    async with client.responses.stream(model="gpt-4o", input=QUESTION) as stream:
        async for event in stream:
            events.append(event)  # noqa: PERF401 - the stream is only iterable in this block
        final = await stream.get_final_response()
    assert final.output_text == created.output_text
    assert final.status == "completed"
    assert final.usage == created.usage
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == created.output_text


async def test_responses_sdk_function_tool_round_trip(client):
    response = await client.responses.create(
        model="gpt-4o", input=QUESTION, tools=[WEATHER_TOOL, TIME_TOOL]
    )
    (call,) = response.output
    assert call.type == "function_call"
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 1}
    turn: ResponseInputParam = [
        {"role": "user", "content": QUESTION},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"},
    ]
    answer = await client.responses.create(model="gpt-4o", input=turn, tools=[WEATHER_TOOL])
    assert answer.output_text.startswith("Tool result: 18C and sunny")


async def test_responses_sdk_stream_function_call(client):
    async with client.responses.stream(
        model="gpt-4o", input=QUESTION, tools=[WEATHER_TOOL], tool_choice="required"
    ) as stream:
        final = await stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 1}


async def test_responses_tool_choice_names_function_or_none(client):
    named = await client.responses.create(
        model="gpt-4o",
        input=QUESTION,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "name": "get_time"},
    )
    (call,) = named.output
    assert call.type == "function_call"
    assert call.name == "get_time"
    assert isinstance(named.tool_choice, ToolChoiceFunction)
    assert named.tool_choice.name == "get_time"
    none = await client.responses.create(
        model="gpt-4o", input=QUESTION, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert none.output[0].type == "message"


async def test_responses_json_schema_answer_follows_schema(client):
    response = await client.responses.create(
        model="gpt-4o",
        input=QUESTION,
        text={
            "format": {
                "type": "json_schema",
                "name": "weather",
                "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        },
    )
    assert json.loads(response.output_text) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": QUESTION}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": QUESTION, "max_output_tokens": 15}, "max_output_tokens"),
        ({"model": "m", "input": QUESTION, "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "m", "input": [{"type": "message", "content": "hi"}]}, "input[0].role"),
        (
            {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
        ),
        ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].id"),
        ({"model": "m", "input": [{"type": "computer_call_output"}]}, "input[0].type"),
        (
            {"model": "m", "input": QUESTION, "previous_response_id": "resp_1"},
            "previous_response_id",
        ),
        (
            {
                "model": "m",
                "input": QUESTION,
                "text": {"format": {"type": "json_schema", "name": "x"}},
            },
            "text.format.schema",
        ),
        (
            {
                "model": "m",
                "input": QUESTION,
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "name": "nope"},
            },
            "tool_choice",
        ),
    ],
)
async def test_responses_invalid_request_is_400_with_param(sim, http, body, param):
    status, error = await post(http, sim, body)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param
    assert error["error"]["message"]


async def test_responses_reasoning_items_are_skipped(client):
    plain = await client.responses.create(model="gpt-4o", input=QUESTION)
    with_reasoning = await client.responses.create(
        model="gpt-4o",
        input=[
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "user", "content": QUESTION},
        ],
    )
    assert with_reasoning.output_text == plain.output_text


async def test_responses_auth_is_checked_as_on_chat():
    simulator = await start_simulator(SimConfig(api_key="sk-right-key"))
    try:
        async with openai.AsyncOpenAI(
            base_url=simulator.url + "/v1", api_key="sk-wrong-key-12345", max_retries=0
        ) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.responses.create(model="m", input=QUESTION)
        async with (
            aiohttp.ClientSession() as http,
            http.post(simulator.url + "/v1/responses", json={}) as response,
        ):
            assert response.status == 401
    finally:
        await simulator.close()
    assert caught.value.code == "invalid_api_key"


async def test_responses_other_methods_and_paths_are_404(sim, http):
    async with http.get(sim.url + "/v1/responses", headers=AUTH) as response:
        assert response.status == 404
    async with http.get(sim.url + "/v1/responses/resp_1", headers=AUTH) as response:
        assert response.status == 404
        assert (await response.json())["error"]["type"] == "invalid_request_error"


async def test_responses_fault_status_applies(sim, http, client):
    await set_faults(http, sim, {"kind": "status", "status": 429, "retry_after_s": 2})
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.create(model="gpt-4o", input=QUESTION)
    assert caught.value.response.headers["retry-after"] == "2"


async def test_responses_fault_path_filter_spares_chat(sim, http, client):
    await set_faults(http, sim, {"kind": "status", "status": 503, "path": "/responses"})
    completion = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.choices[0].message.content
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="gpt-4o", input=QUESTION)


async def test_responses_fault_cut_stream_stops_after_deltas(sim, http):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 3})
    received = bytearray()

    async def read_stream() -> None:
        body = {"model": "gpt-4o", "input": QUESTION, "stream": True}
        async with http.post(sim.url + "/v1/responses", json=body, headers=AUTH) as response:
            assert response.status == 200
            async for data in response.content.iter_any():
                received.extend(data)

    with pytest.raises(aiohttp.ClientPayloadError):
        await read_stream()
    events = parse_events(received.decode())
    assert [event["type"] for event in events] == TEXT_EVENTS[: 4 + 3]
    for event in events:
        validate_event(event)


async def test_responses_fault_cut_stream_sdk_never_sees_completion(sim, http, client):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 1})
    events: list[ResponseStreamEvent] = []

    async def read_stream() -> None:
        async with client.responses.stream(
            model="gpt-4o", input=QUESTION, tools=[WEATHER_TOOL]
        ) as stream:
            async for event in stream:
                events.append(event)  # noqa: PERF401 - keeps the events received before the cut

    with pytest.raises(openai.APIConnectionError):
        await read_stream()
    assert [event.type for event in events][-1] == "response.function_call_arguments.delta"
    assert all(event.type != "response.completed" for event in events)


async def test_responses_fault_cut_stream_on_non_stream_resets(sim, http):
    await set_faults(http, sim, {"kind": "cut_stream"})
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, sim, {"model": "gpt-4o", "input": QUESTION})
