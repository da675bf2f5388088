"""`POST /v1/messages/count_tokens` through the gateway with the official `anthropic` SDK:
counted by an Anthropic upstream, estimated by the gateway's tokenizer for the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from anthropic.types import MessageParam, ToolParam

from stellara.inbound.anthropic_count import to_count_request
from stellara.sim import RunningSimulator
from stellara.tokens import TokenCounter
from stellara.wire.anthropic_count import count_request_decoder
from tests.conftest import (
    LIMITED_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
    upstream_requests,
)

PROMPT: list[MessageParam] = [{"role": "user", "content": "How long is this prompt, in tokens?"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def config(sim_url: str, **overrides: Any) -> dict[str, Any]:
    """`claude` on the Anthropic simulator, `gpt` on the OpenAI one; bob may use only `gpt`."""
    return {
        "providers": [
            {"id": "ant", "type": "anthropic", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {"id": "oai", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY},
        ],
        "models": [
            {"name": "claude", "targets": [{"provider": "ant", "model": "claude-haiku-4-5"}]},
            {"name": "gpt", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
        ],
        "keys": [
            {"key": USER_KEY, "user": "alice"},
            {"key": LIMITED_KEY, "user": "bob", "models": ["gpt"]},
        ],
        **overrides,
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(config(sim.url))


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


async def test_anthropic_model_is_counted_by_its_provider(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    raw = await client.messages.with_raw_response.count_tokens(
        model="claude", system="Be brief.", messages=PROMPT, tools=[WEATHER]
    )
    counted = await raw.parse()
    assert raw.headers["x-stellara-token-count"] == "provider"
    assert raw.headers["x-stellara-request-id"].startswith("req_")
    # The same prompt's message reports the same input tokens (the simulator counts alike).
    message = await client.messages.create(
        model="claude", max_tokens=20, system="Be brief.", messages=PROMPT, tools=[WEATHER]
    )
    assert counted.input_tokens == message.usage.input_tokens
    sent = (await upstream_requests(sim))[0]
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    # The prompt only: the provider model, translated as a message's would be; no max_tokens.
    assert set(sent["body"]) == {"model", "messages", "system", "tools"}
    assert sent["body"]["model"] == "claude-haiku-4-5"
    assert sent["body"]["system"] == "Be brief."


async def test_the_beta_count_claude_code_calls(
    client: anthropic.AsyncAnthropic,
    gateway: RunningGateway,
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
) -> None:
    """Claude Code counts through the beta resource: an `anthropic-beta` header, and (from
    the TypeScript SDK) `?beta=true`."""
    raw = await client.beta.messages.with_raw_response.count_tokens(
        model="claude",
        messages=[{"role": "user", "content": "How long is this prompt, in tokens?"}],
        betas=["token-counting-2024-11-01"],
    )
    assert "token-counting-2024-11-01" in raw.http_request.headers["anthropic-beta"]
    assert raw.headers["x-stellara-token-count"] == "provider"
    counted = (await raw.parse()).input_tokens
    headers = {"x-api-key": USER_KEY, "anthropic-version": "2023-06-01"}
    async with http.post(
        f"{gateway.url}/v1/messages/count_tokens?beta=true",
        json={"model": "claude", "messages": PROMPT},
        headers=headers,
    ) as response:
        assert response.status == 200
        assert await response.json() == {"input_tokens": counted}
    assert [sent["path"] for sent in await upstream_requests(sim)] == [
        "/v1/messages/count_tokens"
    ] * 2


async def test_other_models_get_the_gateways_estimate(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    raw = await client.messages.with_raw_response.count_tokens(model="gpt", messages=PROMPT)
    counted = await raw.parse()
    assert raw.headers["x-stellara-token-count"] == "estimate"
    # Exactly the Anthropic body shape, nothing else in it.
    assert await raw.http_response.aread() == b'{"input_tokens":%d}' % counted.input_tokens
    request = to_count_request(
        count_request_decoder.decode(b'{"model":"gpt","messages":%s}' % orjson.dumps(PROMPT))
    )
    assert counted.input_tokens == TokenCounter().count_prompt(request, "gpt-4o-mini")
    assert await upstream_requests(sim) == []  # no provider was asked


async def test_an_unavailable_provider_yields_an_estimate(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 529, "path": "/count_tokens"})
    raw = await client.messages.with_raw_response.count_tokens(model="claude", messages=PROMPT)
    assert raw.headers["x-stellara-token-count"] == "estimate"
    assert (await raw.parse()).input_tokens > 0


async def test_a_prompt_the_provider_refuses_is_a_400(
    client: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 400, "path": "/count_tokens"})
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.count_tokens(model="claude", messages=PROMPT)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_generation_settings_are_refused_by_name(
    client: anthropic.AsyncAnthropic, model: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.count_tokens(
            model=model, messages=PROMPT, extra_body={"max_tokens": 10}
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in caught.value.body["error"]["message"]


async def test_the_key_must_be_allowed_the_model(gateway: RunningGateway) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=LIMITED_KEY, max_retries=0
    ) as bob:
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await bob.messages.count_tokens(model="claude", messages=PROMPT)
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["error"]["type"] == "permission_error"
        assert (await bob.messages.count_tokens(model="gpt", messages=PROMPT)).input_tokens > 0
        with pytest.raises(anthropic.NotFoundError):
            await bob.messages.count_tokens(model="no-such-model", messages=PROMPT)
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key="sk-wrong", max_retries=0
    ) as stranger:
        with pytest.raises(anthropic.AuthenticationError):
            await stranger.messages.count_tokens(model="gpt", messages=PROMPT)


async def test_counts_pass_no_limit(sim: RunningSimulator, start_gateway: StartGateway) -> None:
    """Not a model call: a tier allowing one request a minute still counts as often as asked."""
    tier = {"rate": {"window_s": 60, "requests": 1}}
    limits = {"tiers": {"one": tier}, "users": {"alice": {"tier": "one"}}}
    gateway = await start_gateway(config(sim.url, limits=limits))
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        for model in ("claude", "gpt", "claude"):
            assert (await sdk.messages.count_tokens(model=model, messages=PROMPT)).input_tokens
        await sdk.messages.create(model="gpt", max_tokens=5, messages=PROMPT)
        with pytest.raises(anthropic.RateLimitError):
            await sdk.messages.create(model="gpt", max_tokens=5, messages=PROMPT)
        assert (await sdk.messages.count_tokens(model="gpt", messages=PROMPT)).input_tokens


async def test_get_on_the_count_route_is_a_405_in_anthropics_shape(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    headers = {"x-api-key": USER_KEY, "anthropic-version": "2023-06-01"}
    async with http.get(f"{gateway.url}/v1/messages/count_tokens", headers=headers) as response:
        assert response.status == 405
        body = await response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
