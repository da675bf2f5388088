"""Provider failures reach the client as the documented statuses, never as a 500 or a hang."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import openai
import pytest

from stellara.events import RequestCompleted, RequestEnded, RequestFailed
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator, SimConfig, start_simulator
from tests.conftest import (
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    set_faults,
)

AUTH = {"Authorization": f"Bearer {USER_KEY}"}
HELLO: dict[str, Any] = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}


async def call(
    http: aiohttp.ClientSession, gateway: RunningGateway, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with http.post(
        f"{gateway.base_url}/chat/completions", json=body or HELLO, headers=AUTH
    ) as response:
        return response.status, dict(response.headers), await response.json()


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"kind": "status", "status": 500}, 502, "upstream_unavailable"),
        ({"kind": "status", "status": 503}, 502, "upstream_unavailable"),
        ({"kind": "reset"}, 502, "upstream_unavailable"),
        ({"kind": "malformed"}, 502, "upstream_protocol_error"),
        ({"kind": "status", "status": 401}, 502, "upstream_auth_failed"),
        ({"kind": "status", "status": 404}, 502, "upstream_not_found"),
        ({"kind": "status", "status": 400}, 400, "upstream_bad_request"),
    ],
)
async def test_upstream_failure_maps_to_documented_status(
    gateway: RunningGateway,
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
    status: int,
    code: str,
) -> None:
    await set_faults(sim, fault)
    got, headers, body = await call(http, gateway)
    assert got == status
    assert body["error"]["code"] == code
    assert headers["x-stellara-provider"] == "sim"


async def test_upstream_429_is_relayed_with_retry_after(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "status", "status": 429, "retry_after_s": 7})
    status, headers, body = await call(http, gateway)
    assert status == 429
    assert headers["Retry-After"] == "7"
    assert body["error"]["type"] == "rate_limit_error"


async def test_upstream_timeout_is_504(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(gateway_config(sim.url, resilience={"timeout_s": 0.3}))
    await set_faults(sim, {"kind": "timeout"})
    status, _, body = await call(http, gateway)
    assert status == 504
    assert body["error"]["type"] == "timeout_error"


async def test_stream_timeout_before_first_chunk_is_504(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(gateway_config(sim.url, resilience={"timeout_s": 0.3}))
    await set_faults(sim, {"kind": "timeout"})
    status, _, _ = await call(http, gateway, {**HELLO, "stream": True})
    assert status == 504


async def test_unreachable_provider_is_502(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(gateway_config("http://127.0.0.1:9"))  # discard port: refused
    status, _, body = await call(http, gateway)
    assert status == 502
    assert body["error"]["code"] == "upstream_unavailable"


async def test_stream_failure_before_first_chunk_is_http_error(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "status", "status": 500})
    status, headers, body = await call(http, gateway, {**HELLO, "stream": True})
    assert status == 502
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"]["code"] == "upstream_unavailable"


async def test_stream_cut_midway_ends_with_error_event_not_done(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 3})
    async with http.post(
        f"{gateway.base_url}/chat/completions", json={**HELLO, "stream": True}, headers=AUTH
    ) as response:
        assert response.status == 200
        text = await response.text()
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["code"] in {"upstream_unavailable", "upstream_protocol_error"}
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks if c["choices"])


async def test_stream_cut_midway_raises_in_sdk(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2})
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        stream = await sdk.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass


async def test_upstream_error_never_reveals_provider_key(
    start_gateway: StartGateway, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with await start_simulator(SimConfig(api_key="sk-the-right-upstream-key")) as strict:
        gateway = await start_gateway(gateway_config(strict.url))  # sends UPSTREAM_KEY: refused
        status, headers, body = await call(http, gateway)
    assert status == 502
    everything = json.dumps(body) + json.dumps(headers) + caplog.text
    assert UPSTREAM_KEY not in everything
    assert UPSTREAM_KEY[-12:] not in everything


async def test_upstream_bad_request_message_is_scrubbed_keeping_its_sense(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    leaky = (
        f"Invalid 'temperature' for key {UPSTREAM_KEY.upper()[:24]} (account "
        "sk-proj-AbCdEfGhIjKlMnOpQrStUv12) at http://10.0.3.7:8080/v1 via "
        "vllm-0.vllm.svc.cluster.local:8000: must be at most 2 for gpt-4o-mini-2024-07-18."
    )
    error = {"message": leaky, "type": "invalid_request_error", "param": "temperature"}
    await set_faults(sim, {"kind": "status", "status": 400, "body": {"error": error}})
    status, _, body = await call(http, gateway)
    assert status == 400
    assert body["error"]["message"] == (
        "Invalid 'temperature' for key [redacted] (account [redacted]) at [internal address] "
        "via [internal address]: must be at most 2 for gpt-4o-mini-2024-07-18."
    )
    assert body["error"]["param"] == "temperature"


async def test_failed_request_publishes_event(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    seen: list[RequestEnded] = []
    gateway.app[RUNTIME].events.subscribe(RequestFailed, seen.append)
    gateway.app[RUNTIME].events.subscribe(RequestCompleted, seen.append)
    await set_faults(sim, {"kind": "status", "status": 500})
    await call(http, gateway)
    await set_faults(sim)
    await call(http, gateway)
    assert [e.name for e in seen] == ["request.failed", "request.completed"]
    assert seen[0].status == 502
    assert seen[0].provider == "sim"
    assert seen[0].attempts == 3  # retry.max_attempts on the only target
    assert seen[1].user == "alice"
    assert seen[1].model == "test-model"
    assert seen[1].completion_tokens > 0


async def test_retry_answers_after_a_transient_failure(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "status", "status": 503, "times": 2})
    status, headers, _ = await call(http, gateway)
    assert status == 200
    assert headers["x-stellara-attempts"] == "3"


async def test_stream_publishes_usage_on_completion(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    seen: list[RequestCompleted] = []
    gateway.app[RUNTIME].events.subscribe(RequestCompleted, seen.append)
    async with http.post(
        f"{gateway.base_url}/chat/completions", json={**HELLO, "stream": True}, headers=AUTH
    ) as response:
        await response.read()
    [event] = seen
    assert event.stream is True
    assert event.prompt_tokens > 0
    assert event.completion_tokens > 0
