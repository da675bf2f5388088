import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import openai
import pytest
from openai import AsyncStream
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from stellara.sim import FaultRule, RunningSimulator, SimConfig, load_faults, start_simulator
from stellara.sim.faults import FaultBook

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something long"}]
CHAT: dict[str, Any] = {"model": "gpt-4o", "messages": USER}
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


async def set_faults(
    http: aiohttp.ClientSession, sim: RunningSimulator, *rules: dict[str, Any]
) -> None:
    async with http.post(sim.url + "/_sim/faults", json={"faults": list(rules)}) as response:
        assert response.status == 200, await response.text()


async def chat(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    body: dict[str, Any] = CHAT,
    **kwargs: Any,
) -> tuple[int, bytes]:
    url = sim.url + "/v1/chat/completions"
    async with http.post(url, json=body, headers=AUTH, **kwargs) as response:
        return response.status, await response.read()


async def collect(
    stream: AsyncStream[ChatCompletionChunk], into: list[ChatCompletionChunk]
) -> None:
    async for chunk in stream:
        into.append(chunk)  # noqa: PERF401 - keeps the chunks received before an error


async def wait_until_recorded(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    for _ in range(200):
        async with http.get(sim.url + "/_sim/requests") as response:
            if (await response.json())["requests"]:
                return
    raise AssertionError("the request never reached the simulator")


async def test_fault_status_429_sends_retry_after_and_rate_limit_body(sim, http):
    await set_faults(http, sim, {"kind": "status", "status": 429, "retry_after_s": 7})
    async with http.post(sim.url + "/v1/chat/completions", json=CHAT, headers=AUTH) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
        error = (await response.json())["error"]
    assert error["type"] == "rate_limit_exceeded"
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None


async def test_fault_status_fractional_retry_after_is_kept(sim, http):
    await set_faults(http, sim, {"kind": "status", "status": 503, "retry_after_s": 0.25})
    async with http.post(sim.url + "/v1/chat/completions", json=CHAT, headers=AUTH) as response:
        assert response.headers["Retry-After"] == "0.25"


async def test_fault_status_sdk_raises_typed_error(sim, http, client):
    await set_faults(http, sim, {"kind": "status", "status": 429, "retry_after_s": 1})
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (404, "invalid_request_error", "model_not_found"),
        (418, "invalid_request_error", None),
        (500, "server_error", None),
        (503, "server_error", "overloaded"),
        (529, "server_error", None),
    ],
)
async def test_fault_status_default_body_matches_status(sim, http, status, error_type, code):
    await set_faults(http, sim, {"kind": "status", "status": status})
    got, raw = await chat(http, sim)
    error = json.loads(raw)["error"]
    assert got == status
    assert (error["type"], error["code"]) == (error_type, code)
    assert error["message"]


async def test_fault_status_custom_body_is_sent_verbatim(sim, http):
    body = {"error": {"message": "context too long", "code": "context_length_exceeded"}}
    await set_faults(http, sim, {"kind": "status", "status": 400, "body": body})
    status, raw = await chat(http, sim)
    assert status == 400
    assert json.loads(raw) == body


async def test_fault_timeout_never_answers(sim, http):
    await set_faults(http, sim, {"kind": "timeout"})
    with pytest.raises(asyncio.TimeoutError):
        await chat(http, sim, timeout=aiohttp.ClientTimeout(total=0.2))
    # The held request does not block others once the rule is gone.
    await set_faults(http, sim)
    assert (await chat(http, sim))[0] == 200


async def test_fault_timeout_sdk_raises_timeout(sim, http, client):
    await set_faults(http, sim, {"kind": "timeout"})
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.2).chat.completions.create(model="m", messages=USER)


async def test_fault_timeout_with_delay_drops_connection_after_delay(sim, http):
    await set_faults(http, sim, {"kind": "timeout", "delay_ms": 50})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await chat(http, sim)
    assert loop.time() - started >= 0.05


async def test_fault_timeout_held_request_released_on_close(http):
    simulator = await start_simulator(SimConfig(faults=[FaultRule(kind="timeout")]))
    pending = asyncio.create_task(chat(http, simulator))
    await wait_until_recorded(http, simulator)
    await asyncio.wait_for(simulator.close(), timeout=5)
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending


async def test_fault_reset_closes_connection_without_response(sim, http, client):
    await set_faults(http, sim, {"kind": "reset"})
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(http, sim)
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=USER)


async def test_fault_malformed_non_stream_is_200_with_invalid_json(sim, http):
    await set_faults(http, sim, {"kind": "malformed"})
    status, raw = await chat(http, sim)
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


async def test_fault_malformed_stream_sends_non_json_event(sim, http, client):
    await set_faults(http, sim, {"kind": "malformed"})
    status, raw = await chat(http, sim, body={**CHAT, "stream": True})
    assert status == 200
    first_event = raw.decode().split("\n\n")[0]
    assert first_event.startswith("data: ")
    with pytest.raises(json.JSONDecodeError):
        json.loads(first_event.removeprefix("data: "))
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises(json.JSONDecodeError):
        async for _chunk in stream:
            pass


async def test_fault_cut_stream_stops_after_chunks_without_done(sim, http):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 3})
    received = bytearray()

    async def read_stream() -> None:
        url = sim.url + "/v1/chat/completions"
        async with http.post(url, json={**CHAT, "stream": True}, headers=AUTH) as response:
            assert response.status == 200
            async for data in response.content.iter_any():
                received.extend(data)

    with pytest.raises(aiohttp.ClientPayloadError):
        await read_stream()
    events = [json.loads(e.removeprefix("data: ")) for e in received.decode().split("\n\n") if e]
    deltas = [event["choices"][0]["delta"] for event in events]
    assert deltas[0]["role"] == "assistant"
    assert len(deltas) == 1 + 3
    assert all(event["choices"][0]["finish_reason"] is None for event in events)


async def test_fault_cut_stream_sdk_sees_incomplete_stream(sim, http, client):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 2})
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        await collect(stream, chunks)
    assert len(chunks) == 1 + 2
    assert all(chunk.choices[0].finish_reason is None for chunk in chunks)


async def test_fault_cut_stream_longer_than_answer_still_withholds_finish(sim, http):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 100})
    with pytest.raises(aiohttp.ClientPayloadError):
        await chat(http, sim, body={**CHAT, "stream": True, "max_tokens": 2})


async def test_fault_cut_stream_cuts_tool_call_arguments(sim, http, client):
    tool: ChatCompletionToolParam = {
        "type": "function",
        "function": {"name": "f", "parameters": {"properties": {"q": {"type": "string"}}}},
    }
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 1})
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, tools=[tool]
    )
    chunks: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        await collect(stream, chunks)
    head, fragment = (chunk.choices[0].delta.tool_calls for chunk in chunks)
    assert head is not None
    assert head[0].function is not None
    assert head[0].function.name == "f"
    assert fragment is not None
    assert fragment[0].function is not None
    assert fragment[0].function.arguments == '{"q"'


async def test_fault_cut_stream_zero_chunks_sends_only_role(sim, http, client):
    await set_faults(http, sim, {"kind": "cut_stream", "after_chunks": 0})
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        await collect(stream, chunks)
    (only,) = chunks
    assert only.choices[0].delta.role == "assistant"


async def test_fault_cut_stream_on_non_stream_resets(sim, http):
    await set_faults(http, sim, {"kind": "cut_stream"})
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(http, sim)


async def test_fault_slow_answers_normally_after_delay(sim, http):
    await set_faults(http, sim, {"kind": "slow", "delay_ms": 60})
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, raw = await chat(http, sim)
    assert loop.time() - started >= 0.06
    assert status == 200
    assert json.loads(raw)["object"] == "chat.completion"


async def test_fault_times_one_is_spent_after_one_request(sim, http):
    await set_faults(http, sim, {"kind": "status", "status": 500, "times": 1})
    assert (await chat(http, sim))[0] == 500
    assert (await chat(http, sim))[0] == 200
    async with http.get(sim.url + "/_sim/faults") as response:
        (rule,) = (await response.json())["faults"]
    assert rule["remaining"] == 0


async def test_fault_sdk_retry_recovers_after_spent_rule(sim, http):
    await set_faults(
        http, sim, {"kind": "status", "status": 503, "times": 2, "retry_after_s": 0.01}
    )
    async with openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="k", max_retries=2) as client:
        completion = await client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].finish_reason == "stop"
    async with http.get(sim.url + "/_sim/requests") as response:
        assert len((await response.json())["requests"]) == 3


async def test_fault_model_filter_only_hits_that_model(sim, http):
    await set_faults(http, sim, {"kind": "status", "status": 502, "model": "gpt-4o"})
    assert (await chat(http, sim, body={**CHAT, "model": "gpt-4o"}))[0] == 502
    assert (await chat(http, sim, body={**CHAT, "model": "gpt-4o-mini"}))[0] == 200


async def test_fault_path_filter_only_hits_that_path(sim, http):
    await set_faults(http, sim, {"kind": "status", "path": "/embeddings"})
    assert (await chat(http, sim))[0] == 200
    url = sim.url + "/v1/embeddings"
    async with http.post(url, json={"model": "e", "input": "x"}, headers=AUTH) as response:
        assert response.status == 500


async def test_fault_rules_apply_in_order_first_live_wins(sim, http):
    await set_faults(
        http,
        sim,
        {"kind": "status", "status": 429, "times": 1},
        {"kind": "status", "status": 503, "times": 1},
    )
    assert [(await chat(http, sim))[0] for _ in range(3)] == [429, 503, 200]


async def test_fault_applies_before_auth(sim, http):
    await set_faults(http, sim, {"kind": "status", "status": 503})
    async with http.post(sim.url + "/v1/chat/completions", json=CHAT) as response:
        assert response.status == 503


async def test_fault_config_rules_active_at_start_and_not_shared(http):
    config = SimConfig(faults=[FaultRule(kind="status", status=500, times=1)])
    for _ in range(2):
        simulator = await start_simulator(config)
        try:
            assert (await chat(http, simulator))[0] == 500
            assert (await chat(http, simulator))[0] == 200
        finally:
            await simulator.close()
    assert config.faults[0].times == 1


async def test_fault_delete_removes_rules(sim, http):
    await set_faults(http, sim, {"kind": "status"})
    async with http.delete(sim.url + "/_sim/faults") as response:
        assert await response.json() == {"faults": []}
    assert (await chat(http, sim))[0] == 200


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"kind": "status", "status": 42},
        {"kind": "status", "times": 0},
        {"kind": "status", "colour": "red"},
        {"kind": "slow", "delay_ms": -1},
        {"status": 500},
    ],
)
async def test_fault_invalid_rule_is_rejected_with_400(sim, http, rule):
    async with http.post(sim.url + "/_sim/faults", json={"faults": [rule]}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["message"].startswith("invalid fault rules")


async def test_fault_invalid_json_is_rejected_with_400(sim, http):
    async with http.post(sim.url + "/_sim/faults", data=b"{") as response:
        assert response.status == 400


def test_fault_book_matches_path_suffix_and_model():
    book = FaultBook([FaultRule(kind="reset", path="/chat/completions", model="a")])
    assert book.match("/v1/embeddings", "a") is None
    assert book.match("/v1/chat/completions", "b") is None
    assert book.match("/v1/chat/completions", None) is None
    assert book.match("/v1/chat/completions", "a") is not None


def test_fault_book_counts_down_times_and_reports_remaining():
    book = FaultBook([FaultRule(kind="reset", times=2)])
    assert book.match("/", None) is not None
    assert book.describe()[0]["remaining"] == 1
    assert book.match("/", None) is not None
    assert book.match("/", None) is None
    assert bool(book)
    book.clear()
    assert not book


def test_load_faults_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "faults:\n"
        "  - kind: status\n"
        "    status: 429\n"
        "    retry_after_s: 2\n"
        "    model: gpt-4o\n"
        "  - kind: cut_stream\n"
        "    after_chunks: 3\n"
        "    times: 1\n"
    )
    assert load_faults(path) == [
        FaultRule(kind="status", status=429, retry_after_s=2, model="gpt-4o"),
        FaultRule(kind="cut_stream", after_chunks=3, times=1),
    ]


def test_load_faults_reads_json(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"faults": [{"kind": "timeout", "delay_ms": 500}]}))
    assert load_faults(path) == [FaultRule(kind="timeout", delay_ms=500)]


def test_load_faults_bad_rule_names_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.yml"
    path.write_text("faults:\n  - kind: status\n    status: nope\n")
    with pytest.raises(ValueError, match=r"faults\.yml: invalid fault rules"):
        load_faults(path)


def test_fault_rule_decodes_from_builtins():
    rule = msgspec.convert({"kind": "status", "body": {"error": {}}}, FaultRule)
    assert rule.body == {"error": {}}
    assert rule.status == 500


async def read_into(
    response: aiohttp.ClientResponse, received: bytearray, *, timeout_s: float
) -> None:
    async with asyncio.timeout(timeout_s):
        async for data in response.content.iter_any():
            received.extend(data)


async def test_fault_stall_holds_stream_open_after_chunks_then_closes(sim, http):
    await set_faults(http, sim, {"kind": "stall", "after_chunks": 2, "delay_ms": 600})
    received = bytearray()
    url = sim.url + "/v1/chat/completions"
    started = asyncio.get_running_loop().time()
    async with http.post(url, json={**CHAT, "stream": True}, headers=AUTH) as response:
        assert response.status == 200
        # The role chunk and two content chunks arrive, then nothing while the stream stays open.
        with pytest.raises(TimeoutError):
            await read_into(response, received, timeout_s=0.3)
        events = [e for e in received.decode().split("\n\n") if e]
        assert len(events) == 1 + 2
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_into(response, received, timeout_s=5)
    assert asyncio.get_running_loop().time() - started >= 0.6
    assert b"[DONE]" not in received


async def test_fault_stall_sends_part_of_a_json_answer_then_nothing(sim, http):
    await set_faults(http, sim, {"kind": "stall", "delay_ms": 5_000})
    url = sim.url + "/v1/chat/completions"
    async with http.post(url, json=CHAT, headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert (response.content_length or 0) > 100
        start = await response.content.readany()
        assert start.startswith(b'{"id"')
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await response.read()


async def test_fault_stall_is_released_when_the_simulator_stops(http):
    simulator = await start_simulator(SimConfig())
    await set_faults(http, simulator, {"kind": "stall", "after_chunks": 1})
    url = simulator.url + "/v1/chat/completions"
    async with http.post(url, json={**CHAT, "stream": True}, headers=AUTH) as response:
        await response.content.readany()
        closing = asyncio.create_task(simulator.close())
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(10):
                await response.read()
    async with asyncio.timeout(10):
        await closing


@pytest.mark.parametrize("stream", [False, True])
async def test_fault_wrong_content_type_answers_an_html_page(sim, http, stream):
    await set_faults(http, sim, {"kind": "wrong_content_type"})
    url = sim.url + "/v1/chat/completions"
    async with http.post(url, json={**CHAT, "stream": stream}, headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert (await response.read()).startswith(b"<html>")
