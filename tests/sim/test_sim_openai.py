import asyncio
import base64
import json
import math
import socket
import struct
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import stellara.sim
from stellara.sim import SimConfig, create_sim_app, start_simulator

USER: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in Paris?"}
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
AUTH = {"Authorization": "Bearer sk-test"}


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
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] = AUTH
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(url, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def sse_events(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[str]:
    async with http.post(url, json=body, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = (await response.read()).decode()
    assert raw.endswith("\n\n")
    events = raw[:-2].split("\n\n")
    assert all(event.startswith("data: ") for event in events)
    return [event.removeprefix("data: ") for event in events]


def test_package_all_is_sorted_and_complete():
    assert stellara.sim.__all__ == sorted(stellara.sim.__all__)
    for name in ("SimConfig", "FaultRule", "create_sim_app", "start_simulator", "RunningSimulator"):
        assert name in stellara.sim.__all__


async def test_start_simulator_picks_free_port(sim):
    assert sim.port > 0
    assert sim.url == f"http://127.0.0.1:{sim.port}"


async def test_chat_sdk_parses_completion(client):
    completion = await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o"
    assert completion.system_fingerprint
    (choice,) = completion.choices
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    assert choice.message.content.startswith("What is the weather in Paris?")
    usage = completion.usage
    assert usage.completion_tokens == 24
    # 3 priming + 3 per message + ceil(29 / 4) content tokens.
    assert usage.prompt_tokens == 3 + 3 + 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_chat_wire_fields_match_openai(sim, http):
    status, body = await post(
        http, sim.url + "/v1/chat/completions", {"model": "m", "messages": USER}
    )
    assert status == 200
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage"}
    assert body["system_fingerprint"].startswith("fp_")
    assert isinstance(body["created"], int)
    assert body["choices"][0]["logprobs"] is None
    assert set(body["choices"][0]["message"]) >= {"role", "content", "refusal"}


async def test_chat_ids_are_unique(client):
    first = await client.chat.completions.create(model="gpt-4o", messages=USER)
    second = await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert first.id != second.id


async def test_chat_same_prompt_same_answer_other_prompt_other_answer(client):
    first = await client.chat.completions.create(model="gpt-4o", messages=USER)
    again = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    other = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "What is the weather in Rome?"}]
    )
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content


async def test_chat_same_prompt_same_answer_across_simulators(client):
    other = await start_simulator(SimConfig())
    try:
        async with openai.AsyncOpenAI(base_url=other.url + "/v1", api_key="k") as other_client:
            theirs = await other_client.chat.completions.create(model="m", messages=USER)
    finally:
        await other.close()
    ours = await client.chat.completions.create(model="m", messages=USER)
    assert ours.choices[0].message.content == theirs.choices[0].message.content


async def test_chat_default_answer_tokens_sets_length():
    simulator = await start_simulator(SimConfig(default_answer_tokens=5))
    try:
        async with openai.AsyncOpenAI(base_url=simulator.url + "/v1", api_key="k") as client:
            completion = await client.chat.completions.create(model="m", messages=USER)
    finally:
        await simulator.close()
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].message.content == "What is the weather in."


async def test_chat_max_tokens_cuts_with_length(client):
    completion = await client.chat.completions.create(model="m", messages=USER, max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "What is the"
    assert completion.usage.completion_tokens == 3


async def test_chat_max_completion_tokens_cuts_with_length(client):
    completion = await client.chat.completions.create(
        model="m", messages=USER, max_completion_tokens=2
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2


async def test_chat_max_tokens_above_answer_stops(client):
    completion = await client.chat.completions.create(model="m", messages=USER, max_tokens=500)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 24


async def test_chat_stop_cuts_before_stop_string(client):
    completion = await client.chat.completions.create(model="m", messages=USER, stop=[" weather"])
    assert completion.choices[0].message.content == "What is the"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 3


async def test_chat_stop_as_string(client):
    completion = await client.chat.completions.create(model="m", messages=USER, stop="is")
    assert completion.choices[0].message.content == "What "


async def test_chat_n_returns_distinct_choices(client):
    completion = await client.chat.completions.create(model="m", messages=USER, n=3)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    contents = {choice.message.content for choice in completion.choices}
    assert len(contents) == 3
    single = await client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == single.choices[0].message.content
    assert completion.usage.completion_tokens == 3 * 24


async def test_chat_stream_sdk_matches_non_stream(client):
    full = await client.chat.completions.create(model="m", messages=USER)
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == full.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


async def test_chat_stream_wire_one_chunk_per_token_then_done(sim, http):
    body = {"model": "m", "messages": USER, "stream": True, "max_tokens": 4}
    events = await sse_events(http, sim.url + "/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    # Role chunk, four content chunks, finish chunk; no usage chunk unless asked.
    assert len(chunks) == 6
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:5]] == [
        "What",
        " is",
        " the",
        " weather",
    ]
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert all("usage" not in chunk for chunk in chunks)
    assert all(chunk["model"] == "m" and chunk["system_fingerprint"] for chunk in chunks)


async def test_chat_stream_include_usage_adds_usage_chunk(sim, http):
    body = {
        "model": "m",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = await sse_events(http, sim.url + "/v1/chat/completions", body)
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 24


async def test_chat_stream_n_streams_every_choice(sim, http):
    body = {"model": "m", "messages": USER, "stream": True, "n": 2, "max_tokens": 2}
    events = await sse_events(http, sim.url + "/v1/chat/completions", body)
    chunks = [json.loads(event) for event in events[:-1]]
    finishes = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert finishes == [0, 1]


async def test_chat_tools_answers_tool_call(client):
    completion = await client.chat.completions.create(
        model="m", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 1, "metric": True}


async def test_chat_tools_call_is_deterministic(client):
    first = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])
    again = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])
    assert first.choices[0].message.tool_calls == again.choices[0].message.tool_calls


async def test_chat_tool_choice_names_function(client):
    completion = await client.chat.completions.create(
        model="m",
        messages=USER,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time"
    assert call.function.arguments == "{}"


async def test_chat_tool_choice_none_answers_text(client):
    completion = await client.chat.completions.create(
        model="m", messages=USER, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].message.content


async def test_chat_tool_choice_unknown_function_is_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="m",
            messages=USER,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert caught.value.body == {
        "message": "Invalid value for 'tool_choice': no function named 'nope' in 'tools'.",
        "type": "invalid_request_error",
        "param": "tool_choice",
        "code": None,
    }


async def test_chat_tool_result_round_trip_quotes_result(client):
    first = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    result = '{"temperature_c": 21, "sky": "clear"}'
    messages = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]
    second = await client.chat.completions.create(
        model="m", messages=messages, tools=[WEATHER_TOOL]
    )
    assert second.choices[0].finish_reason == "stop"
    assert result in second.choices[0].message.content


async def test_chat_tool_call_stream_assembles_arguments(client):
    full = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])
    stream = await client.chat.completions.create(
        model="m", messages=USER, tools=[WEATHER_TOOL], stream=True
    )
    chunks = [chunk async for chunk in stream]
    head = chunks[0].choices[0].delta.tool_calls[0]
    assert head.index == 0
    assert head.id == full.choices[0].message.tool_calls[0].id
    assert head.function.name == "get_weather"
    assert head.function.arguments == ""
    arguments = "".join(
        call.function.arguments
        for chunk in chunks[1:]
        for call in chunk.choices[0].delta.tool_calls or []
    )
    assert arguments == full.choices[0].message.tool_calls[0].function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_chat_tools_ignored_after_assistant_message(client):
    messages = [*USER, {"role": "assistant", "content": "Sunny."}]
    completion = await client.chat.completions.create(
        model="m", messages=messages, tools=[WEATHER_TOOL]
    )
    assert completion.choices[0].finish_reason == "stop"


async def test_chat_json_object_answer_is_json(client):
    completion = await client.chat.completions.create(
        model="m", messages=USER, response_format={"type": "json_object"}
    )
    answer = json.loads(completion.choices[0].message.content)
    assert answer["answer"].startswith("What is the weather in Paris?")


async def test_chat_json_schema_answer_follows_schema(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}},
        "required": ["city", "temperature"],
    }
    completion = await client.chat.completions.create(
        model="m",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content) == {"city": "Paris", "temperature": 1}


async def test_chat_prompt_tokens_count_parts_names_and_images(client):
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "name": "ana",
            "content": [
                {"type": "text", "text": "Describe this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    completion = await client.chat.completions.create(model="m", messages=messages)
    # priming 3 + system (3 + 3) + user (3 + name 1 + text 4 + image 85)
    assert completion.usage.prompt_tokens == 3 + 6 + 3 + 1 + 4 + 85
    assert completion.choices[0].message.content.startswith("Describe this")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        ({"messages": USER}, "model"),
        ({"model": 5, "messages": USER}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": USER, "n": 0}, "n"),
        ({"model": "m", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
async def test_chat_invalid_request_is_400_with_param(sim, http, body, param):
    status, error = await post(http, sim.url + "/v1/chat/completions", body)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param
    assert error["error"]["message"]
    assert "code" in error["error"]


async def test_chat_any_path_prefix_is_served(sim, http):
    url = sim.url + "/proxy/llm/v1/chat/completions"
    status, body = await post(http, url, {"model": "m", "messages": USER})
    assert status == 200
    assert body["object"] == "chat.completion"


async def test_auth_missing_header_is_401(sim, http):
    status, body = await post(http, sim.url + "/v1/chat/completions", {}, headers={})
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["param"] is None


async def test_auth_wrong_key_is_401_with_masked_key():
    simulator = await start_simulator(SimConfig(api_key="sk-right-key"))
    try:
        async with openai.AsyncOpenAI(
            base_url=simulator.url + "/v1", api_key="sk-wrong-key-12345", max_retries=0
        ) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.chat.completions.create(model="m", messages=USER)
        async with openai.AsyncOpenAI(
            base_url=simulator.url + "/v1", api_key="sk-right-key", max_retries=0
        ) as client:
            completion = await client.chat.completions.create(model="m", messages=USER)
    finally:
        await simulator.close()
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "message": "Incorrect API key provided: sk-***********2345.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert completion.choices[0].message.content


async def test_models_list_sdk(client):
    page = await client.models.list()
    ids = [model.id for model in page.data]
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"} <= set(ids)
    assert all(model.owned_by == "stellara-sim" and model.object == "model" for model in page.data)


async def test_models_retrieve_known_and_unknown(client):
    assert (await client.models.retrieve("gpt-4o")).id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "model_not_found"


async def test_embeddings_sdk_decodes_unit_vectors(client):
    result = await client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "goodbye"]
    )
    assert result.model == "text-embedding-3-small"
    assert [item.index for item in result.data] == [0, 1]
    for item in result.data:
        assert len(item.embedding) == 256
        assert math.isclose(sum(v * v for v in item.embedding), 1.0, rel_tol=1e-5)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 3 + 2
    assert result.usage.total_tokens == result.usage.prompt_tokens


async def test_embeddings_base64_matches_float(sim, http):
    url = sim.url + "/v1/embeddings"
    body = {"model": "e", "input": "same text", "dimensions": 16}
    _, floats = await post(http, url, {**body, "encoding_format": "float"})
    _, packed = await post(http, url, {**body, "encoding_format": "base64"})
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 16
    assert floats["object"] == "list"
    assert floats["data"][0]["object"] == "embedding"
    decoded = struct.unpack("<16f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(vector, rel=1e-6)


async def test_embeddings_token_arrays_are_accepted(sim, http):
    url = sim.url + "/v1/embeddings"
    status, one = await post(http, url, {"model": "e", "input": [1, 2, 3]})
    assert status == 200
    assert len(one["data"]) == 1
    status, many = await post(http, url, {"model": "e", "input": [[1, 2], [3]]})
    assert status == 200
    assert len(many["data"]) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"model": "e", "input": ""},
        {"model": "e", "input": []},
        {"model": "e"},
        {"model": "e", "input": "x", "encoding_format": "hex"},
        {"model": "e", "input": "x", "dimensions": 0},
    ],
)
async def test_embeddings_invalid_request_is_400(sim, http, body):
    status, error = await post(http, sim.url + "/v1/embeddings", body)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"


async def test_unknown_path_is_404_openai_error(sim, http):
    status, body = await post(http, sim.url + "/v1/completions/legacy", {"model": "m"})
    assert status == 404
    assert body["error"]["message"] == "Invalid URL (POST /v1/completions/legacy)"
    assert body["error"]["type"] == "invalid_request_error"


async def test_requests_log_records_what_was_sent(sim, client, http):
    await client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=7)
    async with http.get(sim.url + "/_sim/requests") as response:
        (entry,) = (await response.json())["requests"]
    assert entry["method"] == "POST"
    assert entry["path"] == "/v1/chat/completions"
    assert entry["query"] == {}
    assert entry["headers"]["authorization"] == "Bearer sk-test"
    assert entry["body"] == {"model": "gpt-4o", "messages": USER, "max_tokens": 7}


async def test_requests_log_keeps_query_and_non_json_body(sim, http):
    async with http.post(sim.url + "/v1/chat/completions?x=1", data=b"\xff", headers=AUTH):
        pass
    async with http.get(sim.url + "/_sim/requests") as response:
        (entry,) = (await response.json())["requests"]
    assert entry["query"] == {"x": "1"}
    assert entry["body"] is None


async def test_requests_log_keeps_last_200(sim, http):
    for index in range(205):
        async with http.get(sim.url + f"/v1/models?i={index}", headers=AUTH) as response:
            assert response.status == 200
    async with http.get(sim.url + "/_sim/requests") as response:
        entries = (await response.json())["requests"]
    assert len(entries) == 200
    assert entries[0]["query"] == {"i": "5"}
    assert entries[-1]["query"] == {"i": "204"}


async def test_reset_clears_requests_and_faults(sim, http):
    await post(http, sim.url + "/v1/chat/completions", {"model": "m", "messages": USER})
    async with http.post(sim.url + "/_sim/faults", json={"faults": [{"kind": "status"}]}):
        pass
    async with http.post(sim.url + "/_sim/reset") as response:
        assert response.status == 200
    async with http.get(sim.url + "/_sim/requests") as response:
        assert (await response.json())["requests"] == []
    status, _ = await post(http, sim.url + "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 200


async def test_create_sim_app_apps_do_not_share_state(http):
    first = await start_simulator(SimConfig())
    second = await start_simulator(SimConfig())
    try:
        body = {"model": "m", "messages": USER}
        async with http.post(first.url + "/_sim/faults", json={"faults": [{"kind": "status"}]}):
            pass
        assert (await post(http, first.url + "/v1/chat/completions", body))[0] == 500
        assert (await post(http, second.url + "/v1/chat/completions", body))[0] == 200
        async with http.get(second.url + "/_sim/requests") as response:
            assert len((await response.json())["requests"]) == 1
    finally:
        await first.close()
        await second.close()
    assert create_sim_app(SimConfig()) is not create_sim_app(SimConfig())


async def test_latency_ms_delays_each_answer(http):
    simulator = await start_simulator(SimConfig(latency_ms=80))
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        status, _ = await post(http, simulator.url + "/v1/models", {})
        elapsed = loop.time() - started
    finally:
        await simulator.close()
    assert status == 404  # POST /v1/models is not a route, but latency applies first
    assert elapsed >= 0.08


async def test_per_token_ms_paces_stream_chunks(http):
    simulator = await start_simulator(SimConfig(per_token_ms=20))
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    body = {"model": "m", "messages": USER, "stream": True, "max_tokens": 5}
    try:
        async with http.post(
            simulator.url + "/v1/chat/completions", json=body, headers=AUTH
        ) as response:
            arrivals.extend([loop.time() async for _line in response.content])
    finally:
        await simulator.close()
    # Five tokens at 20 ms each: chunks arrive spread over at least ~100 ms, not all at once.
    assert arrivals[-1] - arrivals[0] >= 0.08


async def test_running_simulator_is_async_context_manager(http):
    async with await start_simulator() as simulator:
        status, _ = await post(
            http, simulator.url + "/v1/chat/completions", {"model": "m", "messages": USER}
        )
        assert status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, simulator.url + "/v1/chat/completions", {"model": "m", "messages": USER})


async def test_chat_stream_client_reset_is_not_logged_as_error(caplog):
    simulator = await start_simulator(SimConfig(default_answer_tokens=2000))
    body = json.dumps({"model": "m", "messages": USER, "stream": True}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        for attempt in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", simulator.port)
            writer.write(head.encode() + body)
            if attempt % 2:
                await reader.read(100)  # give up mid-stream, else before the answer starts
            sock = writer.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST, as a client that gives up does
        async with aiohttp.ClientSession() as http:
            status, _ = await post(http, simulator.url + "/v1/models", {})
        assert status == 404
    finally:
        await simulator.close()
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []
