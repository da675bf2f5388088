"""Routes the gateway does not serve answer 404 (or 405) in the dialect of the client that
called them: an Anthropic SDK's call to `/v1/messages/batches` or `/v1/files` gets Anthropic's
error body, which that SDK reads, not OpenAI's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import USER_KEY, RunningGateway
from tests.specs.openai_schema import validate


@pytest.fixture
async def claude(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


def assert_anthropic_not_found(error: anthropic.APIStatusError) -> None:
    assert error.status_code == 404
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "not_found_error"
    assert error.request.url.path in error.body["error"]["message"]


async def test_message_batches_are_an_anthropic_404(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.messages.batches.create(
            requests=[
                {
                    "custom_id": "one",
                    "params": {
                        "model": "test-model",
                        "max_tokens": 5,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                }
            ]
        )
    assert_anthropic_not_found(caught.value)
    with pytest.raises(anthropic.NotFoundError) as listed:
        await claude.messages.batches.list()
    assert_anthropic_not_found(listed.value)


async def test_other_anthropic_routes_are_an_anthropic_404(
    claude: anthropic.AsyncAnthropic,
) -> None:
    """Not under /v1/messages, but the client sends `anthropic-version`: its dialect."""
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.beta.files.list()
    assert_anthropic_not_found(caught.value)


async def test_the_path_alone_picks_anthropics_body(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{gateway.url}/v1/messages/batches", headers={"x-api-key": USER_KEY}, json={}
    ) as response:
        assert response.status == 404
        body = await response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"


async def test_an_openai_client_still_gets_openais_body(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.batches.list()
    body = caught.value.response.json()
    validate("ErrorResponse", body)
    assert "/v1/batches" in body["error"]["message"]
