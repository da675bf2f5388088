"""Limits end to end: SDKs → gateway (memory state) → simulator, plus the management API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from stellara.assembly.config import check_config
from stellara.events import QuotaExceeded
from stellara.server import create_app
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import (
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    set_faults,
    upstream_requests,
)
from tests.limits.fakes import DownBackend

OTHER_KEY = "sk-test-carol-key-0003"
HELLO: Any = [{"role": "user", "content": "hi"}]


def limited_config(sim_url: str, tier: dict[str, Any], **limits: Any) -> dict[str, Any]:
    config = gateway_config(sim_url)
    config["keys"].append({"key": OTHER_KEY, "user": "carol"})
    config["limits"] = {"tiers": {"capped": tier}, "default_tier": "capped", **limits}
    return config


@pytest.fixture
async def three_per_minute(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    tier = {"rate": {"window_s": 60, "requests": 3, "tokens": 100_000}}
    return await start_gateway(limited_config(sim.url, tier))


@pytest.fixture
async def client(three_per_minute: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=three_per_minute.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def test_limits_three_answers_then_429_with_openai_body(
    client: openai.AsyncOpenAI,
) -> None:
    for _ in range(3):
        await client.chat.completions.create(model="test-model", messages=HELLO, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="test-model", messages=HELLO, max_tokens=5)
    response = info.value.response
    assert response.status_code == 429
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 60
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "rate_limit_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-limit-requests"] == "3"


async def test_limits_headers_count_the_current_request(client: openai.AsyncOpenAI) -> None:
    remaining = []
    for _ in range(3):
        raw = await client.chat.completions.with_raw_response.create(
            model="test-model", messages=HELLO, max_tokens=5
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        tokens_left = int(raw.headers["x-ratelimit-remaining-tokens"])
        assert 0 < tokens_left < 100_000
    assert remaining == ["2", "1", "0"]


async def test_limits_headers_on_streams_and_upstream_errors(
    three_per_minute: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    body = {"model": "test-model", "messages": HELLO, "stream": True}
    async with http.post(
        f"{three_per_minute.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        await response.read()
        assert response.headers["x-ratelimit-remaining-requests"] == "2"
    await set_faults(sim, {"kind": "status", "status": 500})
    async with http.post(
        f"{three_per_minute.base_url}/chat/completions",
        json={"model": "test-model", "messages": HELLO},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 502
        assert response.headers["x-ratelimit-remaining-requests"] == "1"


async def test_limits_no_tier_configured_sends_no_ratelimit_headers(
    gateway: RunningGateway,
) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="test-model", messages=HELLO
        )
    assert "x-ratelimit-limit-requests" not in raw.headers


async def test_limits_token_budget_refuses_before_the_provider(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        limited_config(sim.url, {"rate": {"window_s": 60, "tokens": 200}})
    )
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        await sdk.chat.completions.create(model="test-model", messages=HELLO, max_tokens=20)
        before = len(await upstream_requests(sim))
        # The window could hold this request, but not beside the first one's use: wait.
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="test-model", messages=HELLO, max_tokens=190)
    assert info.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    assert len(await upstream_requests(sim)) == before


async def test_limits_stream_settles_to_the_usage_seen(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        limited_config(sim.url, {"rate": {"window_s": 60, "tokens": 100_000}})
    )
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        stream = await sdk.chat.completions.create(
            model="test-model",
            messages=HELLO,
            max_tokens=900,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = None
        async for chunk in stream:
            usage = chunk.usage or usage
    assert usage is not None
    status = await get_json(http, f"{gateway.url}/ai-orchestration/rate-limits/alice", USER_KEY)
    assert status["windows"]["rate"]["tokens"]["used"] == usage.total_tokens  # not the estimate


async def test_limits_failed_call_counts_the_request_not_tokens(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    tier = {"rate": {"window_s": 60, "requests": 10, "tokens": 100_000}}
    gateway = await start_gateway(limited_config(sim.url, tier))
    await set_faults(sim, {"kind": "status", "status": 500})
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "test-model", "messages": HELLO, "max_tokens": 50},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 502
    status = await get_json(http, f"{gateway.url}/ai-orchestration/rate-limits/alice", USER_KEY)
    assert status["windows"]["rate"]["requests"]["used"] == 1
    assert status["windows"]["rate"]["tokens"]["used"] == 0


# ---------------------------------------------------------------- quotas


async def test_limits_daily_quota_is_insufficient_quota_with_reset_time(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(limited_config(sim.url, {"quota": {"daily": {"requests": 1}}}))
    events: list[QuotaExceeded] = []
    gateway.app[RUNTIME].events.subscribe(QuotaExceeded, events.append)
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        await sdk.chat.completions.create(model="test-model", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="test-model", messages=HELLO)
    error = info.value.response.json()["error"]
    assert error["code"] == "insufficient_quota"
    assert "resets at" in error["message"]
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert [e.limit for e in events] == ["quota:daily:requests"]


async def test_limits_session_quota_per_session_id(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    tier = {"quota": {"session": {"requests": 2, "idle_s": 600}}}
    gateway = await start_gateway(limited_config(sim.url, tier))
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        for _ in range(2):
            await sdk.chat.completions.create(
                model="test-model", messages=HELLO, extra_headers={"X-Session-Id": "s1"}
            )
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(
                model="test-model", messages=HELLO, extra_headers={"X-Session-Id": "s1"}
            )
        assert info.value.response.json()["error"]["code"] == "insufficient_quota"
        await sdk.chat.completions.create(
            model="test-model", messages=HELLO, extra_headers={"X-Session-Id": "s2"}
        )
        await sdk.chat.completions.create(model="test-model", messages=HELLO)  # no session


async def test_limits_shadow_tier_answers_past_its_limit(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    tier = {"rate": {"window_s": 60, "requests": 1}, "shadow": True}
    gateway = await start_gateway(limited_config(sim.url, tier))
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        for _ in range(3):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="test-model", messages=HELLO
            )
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"


# ---------------------------------------------------------------- management API


async def get_json(http: aiohttp.ClientSession, url: str, key: str | None) -> dict[str, Any]:
    status, body = await request(http, "GET", url, key)
    assert status == 200, body
    return body


async def request(
    http: aiohttp.ClientSession, method: str, url: str, key: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.request(method, url, headers=headers) as response:
        return response.status, await response.json()


@pytest.fixture
async def quota_gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    tier = {
        "rate": {"window_s": 60, "requests": 10},
        "quota": {"daily": {"requests": 5, "tokens": 10_000}, "monthly": {"cost_usd": 5}},
    }
    return await start_gateway(limited_config(sim.url, tier))


async def test_quota_endpoint_reports_use_per_window_and_dimension(
    quota_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with openai.AsyncOpenAI(base_url=quota_gateway.base_url, api_key=USER_KEY) as sdk:
        await sdk.chat.completions.create(model="test-model", messages=HELLO)
    body = await get_json(http, f"{quota_gateway.url}/ai-orchestration/quotas/alice", USER_KEY)
    assert (body["user"], body["tier"], body["limited"]) == ("alice", "capped", True)
    daily = body["windows"]["daily"]["requests"]
    assert (daily["used"], daily["limit"], daily["remaining"]) == (1, 5, 4)
    assert daily["reset_at"].endswith("T00:00:00Z")
    moment = datetime.fromisoformat(daily["reset_at"].replace("Z", "+00:00"))
    assert daily["reset_at_epoch_s"] == moment.timestamp()
    assert 0 < body["windows"]["daily"]["tokens"]["used"] < 10_000
    assert set(body["windows"]) == {"daily", "monthly"}
    rate = await get_json(http, f"{quota_gateway.url}/ai-orchestration/rate-limits/alice", USER_KEY)
    assert rate["windows"]["rate"]["requests"]["used"] == 1
    assert rate["windows"]["rate"]["requests"]["window_s"] == 60


@pytest.mark.parametrize("path", ["quotas", "rate-limits"])
async def test_quota_endpoint_auth_own_user_other_user_master(
    quota_gateway: RunningGateway, http: aiohttp.ClientSession, path: str
) -> None:
    url = f"{quota_gateway.url}/ai-orchestration/{path}/alice"
    assert (await request(http, "GET", url, USER_KEY))[0] == 200
    status, body = await request(http, "GET", url, OTHER_KEY)
    assert status == 403
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (await request(http, "GET", url, MASTER_KEY))[0] == 200
    status, body = await request(http, "GET", url, None)
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert (await request(http, "POST", f"{url}/reset", USER_KEY))[0] == 403
    assert (await request(http, "POST", f"{url}/reset", None))[0] == 401


async def test_quota_reset_by_master_key(
    quota_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with openai.AsyncOpenAI(base_url=quota_gateway.base_url, api_key=USER_KEY) as sdk:
        for _ in range(2):
            await sdk.chat.completions.create(model="test-model", messages=HELLO)
    base = f"{quota_gateway.url}/ai-orchestration"
    status, body = await request(http, "POST", f"{base}/quotas/alice/reset", MASTER_KEY)
    assert (status, body) == (200, {"user": "alice", "reset": "quotas"})
    quotas = await get_json(http, f"{base}/quotas/alice", MASTER_KEY)
    assert quotas["windows"]["daily"]["requests"]["used"] == 0
    rate = await get_json(http, f"{base}/rate-limits/alice", MASTER_KEY)
    assert rate["windows"]["rate"]["requests"]["used"] == 2  # untouched by a quota reset
    await request(http, "POST", f"{base}/rate-limits/alice/reset", MASTER_KEY)
    rate = await get_json(http, f"{base}/rate-limits/alice", MASTER_KEY)
    assert rate["windows"]["rate"]["requests"]["used"] == 0


async def test_quota_endpoint_without_limits_reports_unlimited(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = await get_json(http, f"{gateway.url}/ai-orchestration/quotas/alice", USER_KEY)
    assert body["limited"] is False
    assert body["windows"] == {}


# ---------------------------------------------------------------- Anthropic route


async def test_limits_anthropic_route_gets_anthropic_shaped_429(
    three_per_minute: RunningGateway,
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=three_per_minute.url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        for _ in range(3):
            raw = await sdk.messages.with_raw_response.create(
                model="test-model", max_tokens=10, messages=HELLO
            )
            assert "x-ratelimit-remaining-requests" in raw.headers
        with pytest.raises(anthropic.RateLimitError) as info:
            await sdk.messages.create(model="test-model", max_tokens=10, messages=HELLO)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"


# ---------------------------------------------------------------- state backend down


async def start_with_down_state(sim_url: str, on_failure: str) -> tuple[Any, RunningGateway]:
    config = limited_config(sim_url, {"rate": {"window_s": 60, "requests": 3}})
    config["state"] = {"backend": "memory", "on_failure": on_failure}
    app = create_app(check_config(config), state_backend=DownBackend())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, RunningGateway(f"http://127.0.0.1:{port}", app, runner)


@pytest.mark.parametrize(
    ("on_failure", "chat_statuses", "ready_status", "readiness"),
    [
        # open: served, but the 3-request limit still holds, on this process's own count
        ("open", [200, 200, 200, 429, 429], 200, "degraded"),
        ("closed", [503] * 5, 503, "not_ready"),
    ],
)
async def test_limits_state_backend_down_follows_on_failure(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    on_failure: str,
    chat_statuses: list[int],
    ready_status: int,
    readiness: str,
) -> None:
    runner, gateway = await start_with_down_state(sim.url, on_failure)
    try:
        statuses = []
        for _ in chat_statuses:
            async with http.post(
                f"{gateway.base_url}/chat/completions",
                json={"model": "test-model", "messages": HELLO},
                headers={"Authorization": f"Bearer {USER_KEY}"},
            ) as response:
                statuses.append(response.status)
                if response.status == 503:
                    error = (await response.json())["error"]
                    assert error["code"] == "state_backend_unavailable"
        assert statuses == chat_statuses
        async with http.get(f"{gateway.url}/readyz") as response:
            assert response.status == ready_status
            body = await response.json()
        assert body["status"] == readiness
        assert body["checks"]["state_backend"] == {
            "name": "redis",
            "backend": "redis",
            "ok": False,
            "on_failure": on_failure,
            # three failures in a row: the backend counts as down
            "limits": "local" if on_failure == "open" else "refused",
        }
        limiter = gateway.app[RUNTIME].limiter
        assert limiter.fallback.admissions_of("alice") == (3 if on_failure == "open" else 0)
    finally:
        await runner.cleanup()
