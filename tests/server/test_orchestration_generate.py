"""`/ai-orchestration/generate` and `…/generate-with-fallback` through real sockets: the
prompt body beside the chat request, who a prompt body's `userId` may be, and `stream: true`
answered as OpenAI's chunk stream with an `orchestration` event before `data: [DONE]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import (
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
    upstream_requests,
)
from tests.fuzz.sse_schema import stream_schema_errors
from tests.server.test_param_policy import policy_config
from tests.server.test_routing import (
    AUTH,
    DOWN_A,
    DOWN_B,
    FALLBACK_MESSAGE,
    MESSAGES,
    routing_config,
    sse_events,
)
from tests.server.test_stream_billing import eventually, get

BOB_KEY = "sk-test-bob-key-0003"
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
TIER = {"rate": {"window_s": 60, "requests": 100, "tokens": 1_000_000}}
PRICED_MODEL = "gpt-4o-mini"
PROMPT_BODY: dict[str, Any] = {"prompt": "Name a river.", "userId": "alice", "model": "chat"}

Json = dict[str, Any]


@pytest.fixture
async def gateway(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Path
) -> RunningGateway:
    config = routing_config(
        sim.url,
        keys=[{"key": USER_KEY, "user": "alice"}, {"key": BOB_KEY, "user": "bob"}],
        limits={"tiers": {"default": TIER}},
        usage_store={"url": f"sqlite:///{tmp_path / 'usage.db'}", "flush_interval_s": 0.05},
    )
    config["server"]["master_key_model_calls"] = True
    # Priced in the shipped catalog (model-a and model-b are not): a cost to report.
    priced = {"provider": "backup", "model": PRICED_MODEL}
    config["models"].append({"name": "priced", "targets": [priced]})
    return await start_gateway(config)


async def generate(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    body: Json,
    route: str = "generate",
    headers: dict[str, str] = AUTH,
) -> tuple[int, str, str]:
    """The status, content type and text of the answer."""
    url = f"{gateway.url}/ai-orchestration/{route}"
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, response.content_type, await response.text()


async def stream(
    http: aiohttp.ClientSession, gateway: RunningGateway, body: Json, route: str = "generate"
) -> list[str]:
    """The `data:` of each event of a streamed answer (200, `text/event-stream`)."""
    status, content_type, text = await generate(http, gateway, body, route)
    assert (status, content_type) == (200, "text/event-stream"), text
    return sse_events(text)


def content_of(chunks: list[Json]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


async def chat_bodies(sim: RunningSimulator) -> list[Json]:
    requests = await upstream_requests(sim)
    return [r["body"] for r in requests if r["path"].endswith("/chat/completions")]


async def records_of(gateway: RunningGateway, user: str, count: int) -> list[Json]:
    async def read() -> list[Json]:
        return list((await get(gateway, f"/admin/usage?user={user}"))["data"])

    return await eventually(read, lambda found: len(found) >= count)


# --- the prompt body ------------------------------------------------------------------------


async def test_prompt_body_is_sent_as_a_chat_request_on_its_provider(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    options = {"systemPrompt": "Be brief.", "maxTokens": 7, "temperature": 0.2, "topP": 0.9}
    body = {**PROMPT_BODY, "provider": "backup", "options": options}
    status, _, text = await generate(http, gateway, body)
    assert status == 200, text
    answer = json.loads(text)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"]
    assert answer["orchestration"]["provider"] == "backup"
    assert answer["orchestration"]["model"] == "model-b"
    (sent,) = await chat_bodies(sim)
    assert sent["model"] == "model-b"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a river."},
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (7, 0.2, 0.9)
    assert not {"prompt", "userId", "options", "provider"} & set(sent)


async def test_prompt_body_streams_with_the_orchestration_event(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    events = await stream(http, gateway, {**PROMPT_BODY, "options": {"stream": True}})
    assert events[-1] == "[DONE]"
    *chunks, last = [json.loads(e) for e in events[:-1]]
    assert content_of(chunks)
    assert all("orchestration" not in chunk for chunk in chunks)
    assert last["object"] == "chat.completion.chunk"
    assert last["choices"] == []
    assert last["id"] == chunks[0]["id"]
    assert last["orchestration"]["provider"] == "primary"
    (sent,) = await chat_bodies(sim)
    assert sent["stream"] is True


async def test_key_may_not_make_a_prompt_body_for_another_user(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    status, _, text = await generate(http, gateway, {**PROMPT_BODY, "userId": "bob"})
    assert status == 403
    error = json.loads(text)["error"]
    assert (error["param"], error["code"]) == ("userId", "user_not_allowed")
    assert await chat_bodies(sim) == []
    assert (await get(gateway, "/admin/usage?user=bob"))["data"] == []


async def test_master_key_makes_a_prompt_body_for_the_named_user(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = {**PROMPT_BODY, "userId": "carol"}
    status, _, text = await generate(http, gateway, body, headers=MASTER)
    assert status == 200, text
    (record,) = await records_of(gateway, "carol", 1)
    assert (record["status"], record["endpoint"]) == (200, "/ai-orchestration/generate")
    rates = await get(gateway, "/ai-orchestration/rate-limits/carol")
    assert rates["windows"]["rate"]["requests"]["used"] == 1
    assert (await get(gateway, "/admin/usage?user=admin"))["data"] == []


@pytest.mark.parametrize(
    ("body", "param", "named"),
    [
        ({**PROMPT_BODY, "messages": MESSAGES}, "prompt", "messages and prompt"),
        ({"model": "chat", "userId": "alice", "messages": MESSAGES}, "userId", "userId"),
        ({"prompt": "hi", "userId": "alice"}, "model", "model is required"),
        ({**PROMPT_BODY, "options": {"max_tokens": 5}}, "options.max_tokens", "'maxTokens'"),
        ({**PROMPT_BODY, "options": {"topK": 5}}, "options.topK", "options.topK"),
        ({**PROMPT_BODY, "temperature": 0.5}, None, "temperature"),
        ({**PROMPT_BODY, "options": {"maxTokens": 0}}, "options.maxTokens", "options.maxTokens"),
        ({**PROMPT_BODY, "prompt": ""}, "prompt", "prompt"),
        ({**PROMPT_BODY, "userId": ""}, "userId", "userId"),
    ],
)
async def test_bad_prompt_body_is_a_400_naming_the_field(
    gateway: RunningGateway,
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    body: Json,
    param: str | None,
    named: str,
) -> None:
    for route in ("generate", "generate-with-fallback"):
        status, content_type, text = await generate(http, gateway, body, route)
        assert (status, content_type) == (400, "application/json")
        error = json.loads(text)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
        assert named in error["message"]
    assert await chat_bodies(sim) == []


async def test_parameter_refused_by_a_provider_is_named_as_the_option(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(policy_config(sim.url))  # Anthropic's API takes no seed
    body = {**PROMPT_BODY, "model": "claude", "options": {"seed": 7}}
    status, _, text = await generate(http, gateway, body)
    assert status == 400, text
    error = json.loads(text)["error"]
    assert error["param"] == "options.seed"
    assert "options.seed" in error["message"]


# --- streams --------------------------------------------------------------------------------


async def test_chat_stream_ends_with_orchestration_and_is_accounted_once(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    body = {
        "model": "priced",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache": {"no_store": True},
    }
    events = await stream(http, gateway, body)
    assert events[-1] == "[DONE]"
    *chunks, usage_chunk, last = [json.loads(e) for e in events[:-1]]
    assert content_of(chunks)
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] > 0
    orchestration = last["orchestration"]
    assert (orchestration["provider"], orchestration["model"]) == ("backup", PRICED_MODEL)
    assert (orchestration["attempts"], orchestration["cached"]) == (1, False)
    assert orchestration["cost_usd"] > 0
    assert sum(1 for chunk in (*chunks, usage_chunk, last) if chunk.get("usage")) == 1

    (record,) = await records_of(gateway, "alice", 1)
    assert (record["status"], record["stream"]) == (200, True)
    assert record["prompt_tokens"] == usage["prompt_tokens"]
    assert record["completion_tokens"] == usage["completion_tokens"]
    assert record["cost_usd"] == pytest.approx(orchestration["cost_usd"])
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    rates = await eventually(
        lambda: get(gateway, "/ai-orchestration/rate-limits/alice", USER_KEY),
        lambda status: status["windows"]["rate"]["tokens"]["used"] == tokens,
    )
    assert rates["windows"]["rate"]["requests"]["used"] == 1
    (sent,) = await chat_bodies(sim)
    assert sent["stream"] is True
    assert "cache" not in sent


async def test_stream_without_usage_asked_carries_none(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    events = await stream(http, gateway, {"model": "chat", "messages": MESSAGES, "stream": True})
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["orchestration"]["provider"] == "primary"


async def test_stream_failing_before_its_first_chunk_is_an_error_status(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A, DOWN_B)
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    status, content_type, text = await generate(http, gateway, body)
    assert (status, content_type) == (502, "application/json")
    assert json.loads(text)["error"]["code"] == "upstream_unavailable"


async def test_fallback_stream_with_every_route_down_is_a_degraded_stream(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A, DOWN_B)
    body = {**PROMPT_BODY, "options": {"stream": True}}
    events = await stream(http, gateway, body, "generate-with-fallback")
    assert events[-1] == "[DONE]"
    *chunks, last = [json.loads(e) for e in events[:-1]]
    assert content_of(chunks) == FALLBACK_MESSAGE
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert last["degraded"] is True
    assert last["choices"] == []
    orchestration = last["orchestration"]
    assert orchestration["degraded_source"] == "fallback_message"
    assert len(orchestration["failures"]) == 4


async def test_fallback_stream_cut_after_its_first_chunk_ends_with_an_error_event(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2, "model": "model-a"})
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    events = await stream(http, gateway, body, "generate-with-fallback")
    assert "[DONE]" not in events
    *chunks, error = [json.loads(e) for e in events]
    assert content_of(chunks)
    assert all("orchestration" not in chunk and "degraded" not in chunk for chunk in chunks)
    assert error["error"]["code"] in {"upstream_unavailable", "upstream_protocol_error"}
    (record,) = await records_of(gateway, "alice", 1)
    assert record["status"] == 502


async def test_route_description_shows_both_bodies_and_the_stream(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/openapi.json") as response:
        document = await response.json()
    for path in ("/ai-orchestration/generate", "/ai-orchestration/generate-with-fallback"):
        operation = document["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert [shape["$ref"].rsplit("/", 1)[-1] for shape in body["anyOf"]] == [
            "GenerateRequest",
            "PromptRequest",
        ]
        assert "text/event-stream" in operation["responses"]["200"]["content"]
    prompt = document["components"]["schemas"]["PromptRequest"]
    assert set(prompt["required"]) == {"prompt", "userId", "model"}
    assert "maxTokens" in document["components"]["schemas"]["PromptOptions"]["properties"]


async def test_streams_match_the_documented_events(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    body = {**PROMPT_BODY, "options": {"stream": True}}
    whole = await generate(http, gateway, body)
    await set_faults(sim, DOWN_A, DOWN_B)
    route = "generate-with-fallback"
    degraded = await generate(http, gateway, body, route)
    for path, (status, _, text) in (("generate", whole), (route, degraded)):
        assert status == 200
        assert stream_schema_errors(f"/ai-orchestration/{path}", text) == []
