"""A small token window through the HTTP API: answers that fit it, 400s for what never can.

A tier of 500 tokens a minute against the simulator (answers of 24 tokens): requests without
`max_tokens` are answered until the window is really full, then refused with an honest 429;
a ceiling or a prompt larger than the whole window is a 400 in the route's dialect, before
any provider is called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, upstream_requests
from tests.server.test_limits_routes import get_json, limited_config

HELLO: Any = [{"role": "user", "content": "hi"}]
LONG: Any = [{"role": "user", "content": "word " * 600}]  # more than 500 tokens alone


@pytest.fixture
async def window_500(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(limited_config(sim.url, {"rate": {"tokens": 500}}))


@pytest.fixture
async def openai_sdk(window_500: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=window_500.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def anthropic_sdk(window_500: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=window_500.url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def test_token_window_answers_requests_without_max_tokens_until_really_full(
    window_500: RunningGateway, openai_sdk: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    answered, refusal = 0, None
    while refusal is None and answered < 30:
        try:
            await openai_sdk.chat.completions.create(model="test-model", messages=HELLO)
        except openai.RateLimitError as exc:
            refusal = exc
        else:
            answered += 1
    # Each answer uses about 31 tokens: the window holds 16 of them, the first one included
    # (its guess of 1,024 tokens capped at the window), and refuses only when it is full.
    assert answered >= 12
    assert refusal is not None
    response = refusal.response
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(response.headers["retry-after"]) <= 60  # the first answer leaves by then
    status = await get_json(http, f"{window_500.url}/ai-orchestration/rate-limits/alice", USER_KEY)
    used = status["windows"]["rate"]["tokens"]["used"]
    assert 500 - used < 500 / answered  # full: no room left for one more answer


async def test_token_window_max_tokens_it_can_never_hold_is_a_400(
    openai_sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    before = len(await upstream_requests(sim))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_sdk.chat.completions.create(
            model="test-model", messages=HELLO, max_tokens=10_000
        )
    error = info.value.response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_exceeds_limit"
    assert error["param"] == "max_tokens"
    assert "rate:tokens (500 tokens per 60 s)" in error["message"]
    assert "set max_tokens to at most" in error["message"]
    assert "retry-after" not in info.value.response.headers
    assert len(await upstream_requests(sim)) == before  # refused before any provider
    answer = await openai_sdk.chat.completions.create(
        model="test-model", messages=HELLO, max_tokens=400
    )
    assert answer.choices[0].message.content  # a ceiling the window holds is answered


async def test_token_window_prompt_it_can_never_hold_is_a_400(
    openai_sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await openai_sdk.chat.completions.create(model="test-model", messages=LONG)
    error = info.value.response.json()["error"]
    assert error["code"] == "request_exceeds_limit"
    assert "shorten the prompt" in error["message"]


async def test_token_window_responses_route_names_max_output_tokens(
    window_500: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = {"model": "test-model", "input": "hi", "max_output_tokens": 10_000}
    async with http.post(
        f"{window_500.base_url}/responses",
        json=body,
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == "max_output_tokens"
    assert "set max_output_tokens to at most" in error["message"]


async def test_token_window_messages_route_refuses_in_anthropics_dialect(
    anthropic_sdk: anthropic.AsyncAnthropic,
) -> None:
    message = await anthropic_sdk.messages.create(
        model="test-model", max_tokens=400, messages=HELLO
    )
    assert message.content
    with pytest.raises(anthropic.BadRequestError) as info:
        await anthropic_sdk.messages.create(model="test-model", max_tokens=10_000, messages=HELLO)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "set max_tokens to at most" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        await anthropic_sdk.messages.create(model="test-model", max_tokens=10, messages=LONG)
    assert "shorten the prompt" in str(info.value)
