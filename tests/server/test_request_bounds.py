"""The bounds on a request's shape through every model route: the largest request a bound
allows is answered, one more item is a 400 in the route's dialect naming what is too big,
and a body over `server.max_body_bytes` is a 413 in the route's dialect."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
import pytest

from stellara.inbound.bounds import ERROR_CODE, MAX_CONTENT_PARTS, MAX_MESSAGES, MAX_TOOLS
from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, gateway_config

MIB = 1024 * 1024
USER = {"role": "user", "content": "x"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
AUTH = {"Authorization": f"Bearer {USER_KEY}"}


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    raw = gateway_config(sim.url)
    raw["server"] = {**raw["server"], "max_body_bytes": 4 * MIB}
    return await start_gateway(raw)


async def post(
    http: aiohttp.ClientSession, gateway: RunningGateway, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    data = io.BytesIO(json.dumps(body).encode())  # aiohttp warns of large bytes bodies
    headers = {**AUTH, "Content-Type": "application/json"}
    async with http.post(f"{gateway.url}{path}", data=data, headers=headers) as response:
        return response.status, await response.json()


def openai_error(payload: dict[str, Any], param: str) -> str:
    error = payload["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == ERROR_CODE
    return str(error["message"])


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": messages, **fields}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/ai-orchestration/generate"])
async def test_openai_shaped_routes_answer_the_most_messages_and_refuse_one_more(
    gateway: RunningGateway, http: aiohttp.ClientSession, path: str
) -> None:
    status, _ = await post(http, gateway, path, chat([USER] * MAX_MESSAGES))
    assert status == 200
    status, payload = await post(http, gateway, path, chat([USER] * (MAX_MESSAGES + 1)))
    assert status == 400
    message = openai_error(payload, "messages")
    assert message == f"messages: {MAX_MESSAGES + 1} messages; at most {MAX_MESSAGES} are accepted."


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/ai-orchestration/generate"])
async def test_openai_shaped_routes_refuse_too_many_tools(
    gateway: RunningGateway, http: aiohttp.ClientSession, path: str
) -> None:
    status, payload = await post(http, gateway, path, chat([USER], tools=[TOOL] * (MAX_TOOLS + 1)))
    assert status == 400
    assert "at most 512 are accepted" in openai_error(payload, "tools")


async def test_messages_route_answers_the_most_messages_and_refuses_one_more(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    def body(count: int) -> dict[str, Any]:
        return {"model": "test-model", "max_tokens": 8, "messages": [USER] * count}

    status, _ = await post(http, gateway, "/v1/messages", body(MAX_MESSAGES))
    assert status == 200
    status, payload = await post(http, gateway, "/v1/messages", body(MAX_MESSAGES + 1))
    assert status == 400
    assert payload == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": f"messages: {MAX_MESSAGES + 1} messages; "
            f"at most {MAX_MESSAGES} are accepted.",
        },
    }


async def test_messages_route_refuses_too_many_content_blocks(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    blocks = [{"type": "text", "text": "x"}] * (MAX_CONTENT_PARTS + 1)
    body = {
        "model": "test-model",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": blocks}],
    }
    status, payload = await post(http, gateway, "/v1/messages", body)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"] == (
        f"messages: {MAX_CONTENT_PARTS + 1} content blocks in all; "
        f"at most {MAX_CONTENT_PARTS} are accepted."
    )


async def test_embeddings_route_refuses_too_many_inputs(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = {"model": "test-model", "input": ["x"] * 2049}
    status, payload = await post(http, gateway, "/v1/embeddings", body)
    assert status == 400
    assert payload["error"]["param"] == "input"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/ai-orchestration/generate", chat([{"role": "user", "content": "x" * (5 * MIB)}])),
        ("/v1/embeddings", {"model": "test-model", "input": "x" * (5 * MIB)}),
        (
            "/v1/messages",
            {
                "model": "m",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x" * 5 * MIB}],
            },
        ),
    ],
)
async def test_body_over_the_size_limit_is_413_in_the_routes_dialect(
    gateway: RunningGateway, http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> None:
    status, payload = await post(http, gateway, path, body)
    assert status == 413
    if path == "/v1/messages":
        assert payload["error"]["type"] == "request_too_large"
    else:
        assert payload["error"]["code"] == "payload_too_large"
