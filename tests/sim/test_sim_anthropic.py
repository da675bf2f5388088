"""The simulator's Anthropic dialect, driven by the official `anthropic` SDK and by raw HTTP."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam, ToolParam

from stellara.sim import RunningSimulator, SimConfig, start_simulator
from stellara.sim import text as sim_text

MODEL = "claude-sonnet-5-5"
PARIS: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@pytest.fixture
async def sim():
    simulator = await start_simulator(SimConfig())
    yield simulator
    await simulator.close()


@pytest.fixture
async def client(sim):
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0) as c:
        yield c


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.post(
        sim.url + "/v1/messages", json=body, headers=HEADERS if headers is None else headers
    ) as response:
        return response.status, await response.json(content_type=None)


def request(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 100, "messages": PARIS, **fields}


async def set_faults(http: aiohttp.ClientSession, sim: RunningSimulator, *rules: Any) -> None:
    async with http.post(sim.url + "/_sim/faults", json={"faults": list(rules)}) as response:
        assert response.status == 200, await response.text()


# ---------------------------------------------------------------- answers


async def test_messages_sdk_parses_text_message(client):
    message = await client.messages.create(model=MODEL, max_tokens=100, messages=PARIS)
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text"
    assert block.text.startswith("What is the weather in Paris?")
    assert message.usage.output_tokens == len(sim_text.split_pieces(block.text))
    assert message.usage.input_tokens > 0


async def test_messages_wire_fields_match_the_api_reference(sim, http):
    status, body = await post(http, sim, request())
    assert status == 200
    fields = "id type role model content stop_reason stop_sequence usage"
    assert set(body) == set(fields.split())
    assert body["type"] == "message"
    assert body["stop_sequence"] is None
    assert body["usage"]["cache_read_input_tokens"] == 0
    assert body["usage"]["cache_creation_input_tokens"] == 0


async def test_messages_same_prompt_same_answer(client):
    first = await client.messages.create(model=MODEL, max_tokens=100, messages=PARIS)
    second = await client.messages.create(model=MODEL, max_tokens=100, messages=PARIS)
    assert first.content == second.content
    assert first.id != second.id


async def test_messages_max_tokens_cuts_with_max_tokens_reason(client):
    message = await client.messages.create(model=MODEL, max_tokens=3, messages=PARIS)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


async def test_messages_stop_sequence_cuts_and_is_reported(client):
    full = await client.messages.create(model=MODEL, max_tokens=100, messages=PARIS)
    assert full.content[0].type == "text"
    stop = full.content[0].text.split()[3]
    message = await client.messages.create(
        model=MODEL, max_tokens=100, messages=PARIS, stop_sequences=["zzz", stop]
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == stop
    assert message.content[0].type == "text"
    assert stop not in message.content[0].text


async def test_messages_system_and_images_count_as_input(client):
    plain = await client.messages.create(model=MODEL, max_tokens=5, messages=PARIS)
    image: MessageParam = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is the weather in Paris?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        ],
    }
    richer = await client.messages.create(
        model=MODEL, max_tokens=5, messages=[image], system="Be brief."
    )
    extra = richer.usage.input_tokens - plain.usage.input_tokens
    assert extra == sim_text.IMAGE_TOKENS + sim_text.count_tokens("Be brief.")


# ---------------------------------------------------------------- streaming


async def test_stream_sdk_assembles_the_same_message(client):
    plain = await client.messages.create(model=MODEL, max_tokens=100, messages=PARIS)
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=PARIS) as stream:
        types = [event.type async for event in stream]
        streamed = await stream.get_final_message()
    assert [b.type for b in streamed.content] == ["text"]
    assert streamed.content[0].type == "text"
    assert plain.content[0].type == "text"
    assert streamed.content[0].text == plain.content[0].text
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"


async def test_stream_wire_follows_the_event_sequence(sim, http):
    async with http.post(
        sim.url + "/v1/messages", json=request(stream=True, max_tokens=4), headers=HEADERS
    ) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.text()
    events = [block.split("\n") for block in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [data["type"] for data in datas] == names
    assert datas[0]["message"]["stop_reason"] is None
    assert datas[-2]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert datas[-2]["usage"] == {"output_tokens": 4}


async def test_stream_tool_use_streams_input_json(client):
    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=PARIS, tools=[WEATHER]
    ) as stream:
        deltas = [e.delta for e in [ev async for ev in stream] if e.type == "content_block_delta"]
        message = await stream.get_final_message()
    assert any(d.type == "input_json_delta" and d.partial_json == "" for d in deltas)
    tool_use = message.content[-1]
    assert tool_use.type == "tool_use"
    assert tool_use.input == {"city": "Paris", "days": 1}


# ---------------------------------------------------------------- tools


async def test_tools_auto_says_what_it_does_then_calls_the_first_tool(client):
    message = await client.messages.create(
        model=MODEL, max_tokens=100, messages=PARIS, tools=[WEATHER]
    )
    assert message.stop_reason == "tool_use"
    text_block, tool_use = message.content
    assert text_block.type == "text"
    assert text_block.text == "I will use get_weather."
    assert tool_use.type == "tool_use"
    assert tool_use.id.startswith("toolu_")
    assert tool_use.name == "get_weather"
    assert tool_use.input == {"city": "Paris", "days": 1}


async def test_tools_named_choice_calls_that_tool_without_text(client):
    clock: ToolParam = {"name": "get_time", "input_schema": {"type": "object"}}
    message = await client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=PARIS,
        tools=[WEATHER, clock],
        tool_choice={"type": "tool", "name": "get_time"},
    )
    [tool_use] = message.content
    assert tool_use.type == "tool_use"
    assert tool_use.name == "get_time"


async def test_tools_choice_none_answers_text(client):
    message = await client.messages.create(
        model=MODEL, max_tokens=100, messages=PARIS, tools=[WEATHER], tool_choice={"type": "none"}
    )
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]


async def test_tools_result_round_trip_quotes_the_result(client):
    first = await client.messages.create(
        model=MODEL, max_tokens=100, messages=PARIS, tools=[WEATHER]
    )
    tool_use = first.content[-1]
    assert tool_use.type == "tool_use"
    result: MessageParam = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18C, sunny"}],
    }
    messages: list[MessageParam] = [*PARIS, {"role": "assistant", "content": first.content}, result]
    second = await client.messages.create(
        model=MODEL, max_tokens=100, messages=messages, tools=[WEATHER]
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text.startswith("Tool result: 18C, sunny")


async def forced_after_result(client, choice: dict[str, Any]) -> Any:
    """The answer, under `choice`, to a conversation whose last turn is a tool result."""
    clock: ToolParam = {"name": "get_time", "input_schema": {"type": "object"}}
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}
    messages: list[Any] = [
        *PARIS,
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    return await client.messages.create(
        model=MODEL, max_tokens=100, messages=messages, tools=[WEATHER, clock], tool_choice=choice
    )


async def test_tools_choice_any_after_a_result_still_calls_a_tool_the_last(client):
    message = await forced_after_result(client, {"type": "any"})
    assert message.stop_reason == "tool_use"
    assert [(block.type, getattr(block, "name", None)) for block in message.content] == [
        ("tool_use", "get_time")
    ]


async def test_tools_named_choice_after_a_result_still_calls_it(client):
    message = await forced_after_result(client, {"type": "tool", "name": "get_weather"})
    [tool_use] = message.content
    assert tool_use.type == "tool_use"
    assert tool_use.name == "get_weather"


async def test_tools_forced_input_follows_the_input_schema(client):
    schema: dict[str, object] = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "degrees": {"type": "integer"},
            "sky": {"enum": ["clear", "cloudy"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "wind": {"type": "object", "properties": {"knots": {"type": "number"}}},
        },
        "required": ["city", "degrees", "sky", "tags", "wind"],
    }
    tool: ToolParam = {"name": "answer", "input_schema": schema}
    message = await client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=PARIS,
        tools=[tool],
        tool_choice={"type": "tool", "name": "answer"},
    )
    [tool_use] = message.content
    assert tool_use.type == "tool_use"
    assert tool_use.input == {
        "city": "Paris",
        "degrees": 1,
        "sky": "clear",
        "tags": ["in"],  # successive strings take successive words from the end
        "wind": {"knots": 1},
    }


@pytest.mark.parametrize(
    ("model", "status"),
    [
        ("claude-3-5-haiku-latest", 400),
        ("claude-sonnet-4-20250514", 400),
        ("claude-sonnet-4-5", 200),
        ("claude-opus-4-6", 200),
    ],
)
async def test_tools_strict_is_refused_by_models_before_structured_outputs(
    sim, http, model, status
):
    tools = [{**WEATHER, "strict": True}]
    answer_status, answer = await post(http, sim, request(model=model, tools=tools))
    assert answer_status == status
    if status == 400:
        assert answer["error"]["message"] == f"'{model}' does not support strict tools."


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
async def test_tools_forced_choice_with_thinking_is_400(sim, http, choice):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    body = request(max_tokens=2048, tools=[WEATHER], tool_choice=choice, thinking=thinking)
    status, answer = await post(http, sim, body)
    assert status == 400
    assert "tool_choice forces tool use" in answer["error"]["message"]
    auto = {**body, "tool_choice": {"type": "auto"}}
    assert (await post(http, sim, auto))[0] == 200


async def test_tools_result_without_tool_use_is_400(sim, http):
    messages = [
        *PARIS,
        {"role": "assistant", "content": "Let me check."},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]},
    ]
    status, body = await post(http, sim, request(messages=messages))
    assert status == 400
    assert "unexpected `tool_use_id`" in body["error"]["message"]


async def test_tools_use_without_result_is_400(sim, http):
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    messages = [*PARIS, {"role": "assistant", "content": [tool_use]}, *PARIS]
    status, body = await post(http, sim, request(messages=messages))
    assert status == 400
    assert "without `tool_result` blocks" in body["error"]["message"]


# ---------------------------------------------------------------- validation and auth


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": []}, "messages"),
        ({"stop": ["x"]}, "stop: Extra inputs are not permitted"),
        ({"temperature": 1.5}, "temperature"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "non-empty"),
        ({"tool_choice": {"type": "tool", "name": "nope"}}, "Tool 'nope' not found"),
    ],
)
async def test_validation_refuses_what_the_api_refuses(sim, http, change, message):
    body = {k: v for k, v in {**request(), **change}.items() if v is not None}
    status, answer = await post(http, sim, body)
    assert status == 400
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert message in answer["error"]["message"]


async def test_validation_version_2026_10_21_refuses_sampling(sim, http):
    status, _ = await post(http, sim, request(temperature=0.5))
    assert status == 200
    new = {**HEADERS, "anthropic-version": "2026-10-21"}
    status, body = await post(http, sim, request(temperature=0.5), new)
    assert status == 400
    assert body["error"]["message"] == "temperature: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("headers", "status", "error_type"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": "k"}, 400, "invalid_request_error"),
        ({"x-api-key": "k", "anthropic-version": "1999-01-01"}, 400, "invalid_request_error"),
    ],
)
async def test_auth_and_version_headers_are_required(sim, http, headers, status, error_type):
    got, body = await post(http, sim, request(), headers)
    assert got == status
    assert body["error"]["type"] == error_type


async def test_auth_checks_the_configured_key_in_either_header(http):
    async with await start_simulator(SimConfig(api_key="sk-ant-right")) as strict:
        version = {"anthropic-version": "2023-06-01"}
        for headers, expected in [
            ({"x-api-key": "sk-ant-right"}, 200),
            ({"Authorization": "Bearer sk-ant-right"}, 200),
            ({"x-api-key": "sk-ant-wrong"}, 401),
            ({"x-api-key": "sk-ant-wrong", "Authorization": "Bearer sk-ant-right"}, 401),
        ]:
            status, _ = await post(http, strict, request(), {**headers, **version})
            assert status == expected, headers


async def test_dialect_serves_messages_under_any_prefix_and_leaves_openai_alone(sim, http):
    async with http.post(
        sim.url + "/anthropic/v1/messages", json=request(), headers=HEADERS
    ) as response:
        assert (await response.json())["type"] == "message"
    chat = {"model": "gpt-4o", "messages": PARIS}
    auth = {"Authorization": "Bearer x"}
    async with http.post(sim.url + "/v1/chat/completions", json=chat, headers=auth) as response:
        assert (await response.json())["object"] == "chat.completion"


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (413, "request_too_large", anthropic.APIStatusError),
    ],
)
async def test_fault_status_uses_anthropic_error_bodies(
    sim, client, http, status, error_type, kind
):
    await set_faults(http, sim, {"kind": "status", "status": status})
    with pytest.raises(kind) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=PARIS)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == error_type


async def test_fault_429_sends_retry_after(sim, client, http):
    await set_faults(http, sim, {"kind": "status", "status": 429, "retry_after_s": 3})
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=PARIS)
    assert caught.value.response.headers["retry-after"] == "3"


async def test_fault_cut_stream_stops_after_n_deltas_without_message_stop(sim, http):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 2})
    received = bytearray()

    async def read_stream() -> None:
        body = request(stream=True)
        async with http.post(sim.url + "/v1/messages", json=body, headers=HEADERS) as response:
            async for data in response.content.iter_any():
                received.extend(data)

    with pytest.raises(aiohttp.ClientPayloadError):
        await read_stream()
    lines = bytes(received).split(b"\n")
    names = [line.removeprefix(b"event: ") for line in lines if line.startswith(b"event: ")]
    assert names.count(b"content_block_delta") == 2
    assert b"message_delta" not in names
    assert b"message_stop" not in names


async def test_fault_cut_stream_raises_in_sdk(sim, client, http):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 1})
    seen: list[str] = []

    async def read_stream() -> None:
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=PARIS) as stream:
            async for event in stream:
                seen.append(event.type)  # noqa: PERF401 - keeps the events before the error

    # The SDK lets its HTTP library's error through when a stream breaks mid-body.
    with pytest.raises((anthropic.APIError, httpx2.HTTPError)):
        await read_stream()
    assert "content_block_delta" in seen
    assert "message_stop" not in seen
