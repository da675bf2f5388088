"""`POST /v1/embeddings` end to end: openai SDK → gateway → simulator (OpenAI and Azure)."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from stellara.events import RequestCompleted
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import (
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    set_faults,
    upstream_requests,
)


@pytest.fixture
async def embed_gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    config = gateway_config(sim.url)
    config["models"].append(
        {"name": "embedder", "targets": [{"provider": "sim", "model": "text-embedding-3-small"}]}
    )
    return await start_gateway(config)


async def test_embeddings_answer_through_sdk(
    embed_gateway: RunningGateway, sim: RunningSimulator
) -> None:
    async with openai.AsyncOpenAI(base_url=embed_gateway.base_url, api_key=USER_KEY) as sdk:
        result = await sdk.embeddings.create(
            model="embedder", input=["the cat sat", "a dog ran"], dimensions=64
        )
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 64 for item in result.data)
    assert result.usage.prompt_tokens > 0
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/v1/embeddings"
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["body"]["model"] == "text-embedding-3-small"
    assert sent["body"]["input"] == ["the cat sat", "a dog ran"]
    assert sent["body"]["dimensions"] == 64


async def test_embeddings_base64_is_relayed(embed_gateway: RunningGateway) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{embed_gateway.base_url}/embeddings",
            json={"model": "embedder", "input": "hello", "encoding_format": "base64"},
            headers={"Authorization": f"Bearer {USER_KEY}"},
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["x-stellara-provider"] == "sim"
        body = await response.json()
    assert isinstance(body["data"][0]["embedding"], str)


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"model": "embedder"}, 400),
        ({"model": "embedder", "input": ""}, 400),
        ({"model": "embedder", "input": []}, 400),
        ({"model": "embedder", "input": 5}, 400),
        ({"model": "nope", "input": "x"}, 404),
    ],
)
async def test_embeddings_bad_input_is_4xx(
    embed_gateway: RunningGateway, payload: dict[str, object], status: int
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{embed_gateway.base_url}/embeddings",
            json=payload,
            headers={"Authorization": f"Bearer {USER_KEY}"},
        ) as response,
    ):
        assert response.status == status
        assert set((await response.json())["error"]) == {"message", "type", "param", "code"}


async def test_embeddings_upstream_failure_is_502(
    embed_gateway: RunningGateway, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "status", "status": 503, "path": "/embeddings"})
    async with openai.AsyncOpenAI(
        base_url=embed_gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.embeddings.create(model="embedder", input="x")
    assert caught.value.status_code == 502


async def test_embeddings_publish_usage_event(embed_gateway: RunningGateway) -> None:
    seen: list[RequestCompleted] = []
    embed_gateway.app[RUNTIME].events.subscribe(RequestCompleted, seen.append)
    async with openai.AsyncOpenAI(base_url=embed_gateway.base_url, api_key=USER_KEY) as sdk:
        await sdk.embeddings.create(model="embedder", input="count these tokens")
    [event] = seen
    assert event.model == "embedder"
    assert event.prompt_tokens > 0
    assert event.completion_tokens == 0


async def test_embeddings_through_azure_use_deployment_url(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        {
            "providers": [
                {
                    "id": "az",
                    "type": "azure",
                    "base_url": sim.url,
                    "api_key": "azure-key-1234",
                    "api_version": "2024-10-21",
                    "deployments": {"text-embedding-3-small": "emb-prod"},
                }
            ],
            "models": [
                {"name": "emb", "targets": [{"provider": "az", "model": "text-embedding-3-small"}]}
            ],
            "keys": [{"key": USER_KEY, "user": "alice"}],
        }
    )
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        result = await sdk.embeddings.create(model="emb", input="hello")
    assert result.data[0].embedding
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/openai/deployments/emb-prod/embeddings"
    assert sent["headers"]["api-key"] == "azure-key-1234"


async def test_embeddings_through_gemini_batch_embed(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        {
            "providers": [
                {"id": "gem", "type": "google", "base_url": sim.url, "api_key": "g-key-1234"}
            ],
            "models": [
                {"name": "emb", "targets": [{"provider": "gem", "model": "text-embedding-004"}]}
            ],
            "keys": [{"key": USER_KEY, "user": "alice"}],
        }
    )
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        result = await sdk.embeddings.create(
            model="emb", input=["first text", "second text"], dimensions=32
        )
    assert [len(item.embedding) for item in result.data] == [32, 32]
    assert result.usage.prompt_tokens == 4  # estimated by the tokenizer: Gemini reports none
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent["headers"]["x-goog-api-key"] == "g-key-1234"
    assert sent["body"] == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "first text"}]},
                "outputDimensionality": 32,
            },
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "second text"}]},
                "outputDimensionality": 32,
            },
        ]
    }


async def test_embeddings_on_chat_only_provider_is_400(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        {
            "providers": [
                {"id": "claude", "type": "anthropic", "base_url": sim.url, "api_key": "a-key-1234"}
            ],
            "models": [
                {"name": "c", "targets": [{"provider": "claude", "model": "claude-3-5-haiku"}]}
            ],
            "keys": [{"key": USER_KEY, "user": "alice"}],
        }
    )
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.embeddings.create(model="c", input="x")
    assert "embeddings" in caught.value.message
    assert await upstream_requests(sim) == []
