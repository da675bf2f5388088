"""`GET /v1/models` and `GET /v1/models/{id}` through the official SDKs: OpenAI's shapes for
OpenAI clients, Anthropic's paged ones for a client sending `anthropic-version`, each checked
by that SDK in strict mode (and OpenAI's against its published spec)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from anthropic.types import ModelInfo

from stellara.sim import RunningSimulator
from tests.conftest import LIMITED_KEY, USER_KEY, RunningGateway, StartGateway
from tests.specs.openai_schema import validate

NAMES = [f"model-{n:02d}" for n in range(25)] + ["org/with-slash"]


def config(sim_url: str) -> dict[str, Any]:
    """26 public models; bob's key may use two of them."""
    target = [{"provider": "sim", "model": "gpt-4o-mini"}]
    return {
        "providers": [{"id": "sim", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": "k"}],
        "models": [{"name": name, "targets": target} for name in NAMES],
        "keys": [
            {"key": USER_KEY, "user": "alice"},
            {"key": LIMITED_KEY, "user": "bob", "models": ["model-03", "org/with-slash"]},
        ],
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(config(sim.url))


@pytest.fixture
async def claude(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


@pytest.fixture
async def oai(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


async def get(
    http: aiohttp.ClientSession, url: str, key: str = USER_KEY, **headers: str
) -> tuple[int, Any]:
    async with http.get(url, headers={"Authorization": f"Bearer {key}", **headers}) as response:
        return response.status, await response.json()


# ---------------------------------------------------------------- OpenAI clients


async def test_openai_list_and_retrieve(
    oai: openai.AsyncOpenAI, gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    listed = [model.id async for model in oai.models.list()]
    assert listed == NAMES
    model = await oai.models.retrieve("model-07")
    assert (model.id, model.object, model.owned_by) == ("model-07", "model", "stellara")
    assert (await oai.models.retrieve("org/with-slash")).id == "org/with-slash"
    status, body = await get(http, f"{gateway.base_url}/models")
    assert status == 200
    validate("ListModelsResponse", body)
    status, body = await get(http, f"{gateway.base_url}/models/model-07")
    assert status == 200
    validate("Model", body)


async def test_openai_unknown_model_is_a_404_in_openais_body(
    oai: openai.AsyncOpenAI, gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(openai.NotFoundError):
        await oai.models.retrieve("no-such-model")
    status, body = await get(http, f"{gateway.base_url}/models/no-such-model")
    assert status == 404
    validate("ErrorResponse", body)
    assert body["error"]["code"] == "model_not_found"
    assert "no-such-model" in body["error"]["message"]


async def test_a_restricted_key_sees_only_its_models(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=LIMITED_KEY, max_retries=0
    ) as bob:
        assert [m.id async for m in bob.models.list()] == ["model-03", "org/with-slash"]
        assert (await bob.models.retrieve("model-03")).id == "model-03"
        with pytest.raises(openai.NotFoundError) as hidden:
            await bob.models.retrieve("model-04")  # exists, but not for this key
    assert "model-04" in hidden.value.message
    anthropic_headers = {"anthropic-version": "2023-06-01"}
    status, body = await get(http, f"{gateway.url}/v1/models", LIMITED_KEY, **anthropic_headers)
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["model-03", "org/with-slash"]
    url = f"{gateway.url}/v1/models/model-04"
    status, body = await get(http, url, LIMITED_KEY, **anthropic_headers)
    assert status == 404
    assert body["error"]["type"] == "not_found_error"


# ---------------------------------------------------------------- Anthropic clients


async def test_anthropic_list_pages_through_every_model(claude: anthropic.AsyncAnthropic) -> None:
    first = await claude.models.list()
    assert [m.id for m in first.data] == NAMES[:20]  # Anthropic's default page: 20
    assert (first.has_more, first.first_id, first.last_id) == (True, "model-00", "model-19")
    model = first.data[0]
    assert (model.type, model.display_name, model.lifecycle) == ("model", "model-00", "active")
    assert model.created_at.tzinfo is not None
    every = [m.id async for m in await claude.models.list(limit=7)]  # the SDK follows last_id
    assert every == NAMES


async def test_anthropic_after_and_before_cursors(claude: anthropic.AsyncAnthropic) -> None:
    after = await claude.models.list(limit=3, after_id="model-20")
    assert [m.id for m in after.data] == ["model-21", "model-22", "model-23"]
    assert after.has_more is True
    tail = await claude.models.list(limit=3, after_id="model-23")
    assert [m.id for m in tail.data] == ["model-24", "org/with-slash"]
    assert tail.has_more is False
    before = await claude.models.list(limit=3, before_id="model-03")
    assert [m.id for m in before.data] == ["model-00", "model-01", "model-02"]
    assert before.has_more is False
    middle = await claude.models.list(limit=2, before_id="model-10")
    assert [m.id for m in middle.data] == ["model-08", "model-09"]
    assert (middle.has_more, middle.first_id) == (True, "model-08")


async def test_anthropic_lifecycle_filter(claude: anthropic.AsyncAnthropic) -> None:
    assert len((await claude.models.list(lifecycle=["active"], limit=100)).data) == len(NAMES)
    retired = await claude.models.list(lifecycle=["retired"])
    assert (retired.data, retired.has_more, retired.first_id) == ([], False, None)


async def test_anthropic_retrieve(claude: anthropic.AsyncAnthropic) -> None:
    model = await claude.models.retrieve("org/with-slash")
    assert isinstance(model, ModelInfo)
    assert (model.id, model.type) == ("org/with-slash", "model")
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.models.retrieve("no-such-model")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after_id=no-such-model", "after_id"),
        ("after_id=model-01&before_id=model-05", "before_id"),
        ("lifecycle[]=forever", "lifecycle"),
    ],
)
async def test_anthropic_bad_paging_is_a_400_in_anthropics_body(
    gateway: RunningGateway, http: aiohttp.ClientSession, query: str, param: str
) -> None:
    status, body = await get(
        http, f"{gateway.url}/v1/models?{query}", **{"anthropic-version": "2023-06-01"}
    )
    assert status == 400
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert param in body["error"]["message"]


async def test_anthropic_bad_key_is_refused_in_anthropics_body(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key="sk-wrong", max_retries=0
    ) as stranger:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await stranger.models.list()
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "authentication_error"
    # The same path to an OpenAI client answers OpenAI's body.
    status, body = await get(http, f"{gateway.base_url}/models", "sk-wrong")
    assert status == 401
    validate("ErrorResponse", body)
