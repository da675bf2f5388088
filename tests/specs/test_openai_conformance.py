"""The gateway's OpenAI-dialect answers against OpenAI's published OpenAPI description, for a
model backed by each provider type (the simulators stand in for the providers).

One quirk of the vendored spec is worked around where it bites: the legacy completion's
`finish_reason` has no null, though OpenAI's streamed `text_completion` chunks carry `null`
until the last; that value is checked by hand.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from stellara.providers import provider_types
from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway
from tests.specs.openai_schema import validate

KINDS = sorted(provider_types())
# What the simulator embeds with, for the provider types that serve embeddings.
EMBEDDING_MODELS = {
    "openai": "text-embedding-3-small",
    "azure": "text-embedding-3-small",
    "google": "text-embedding-004",
}
HEADERS = {"Authorization": f"Bearer {USER_KEY}"}
MESSAGES = [{"role": "user", "content": "Hello spec"}]
TYPED_MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello spec"}]


@pytest.fixture(params=KINDS)
async def gateway(
    request: pytest.FixtureRequest, sim: RunningSimulator, start_gateway: StartGateway
) -> RunningGateway:
    return await gateway_for(request.param, sim, start_gateway)


@pytest.fixture(params=sorted(EMBEDDING_MODELS))
async def embedding_gateway(
    request: pytest.FixtureRequest, sim: RunningSimulator, start_gateway: StartGateway
) -> RunningGateway:
    """A gateway on each provider type that serves embeddings (Anthropic has none)."""
    return await gateway_for(request.param, sim, start_gateway)


async def gateway_for(
    kind: str, sim: RunningSimulator, start_gateway: StartGateway
) -> RunningGateway:
    """Model `m` on a provider of type `kind`, and `e` for embeddings where it has them."""
    provider_type = provider_types()[kind]
    entry: dict[str, Any] = {"id": f"p-{kind}", **provider_type.sim_entry(sim.url)}
    target = {"provider": entry["id"], "model": provider_type.sim_model}
    models: list[dict[str, Any]] = [{"name": "m", "targets": [target]}]
    if provider_type.embedding_params is not None:
        embedder = {"provider": entry["id"], "model": EMBEDDING_MODELS[kind]}
        models.append({"name": "e", "targets": [embedder]})
    return await start_gateway(
        {"providers": [entry], "models": models, "keys": [{"key": USER_KEY, "user": "alice"}]}
    )


async def post(
    http: aiohttp.ClientSession, gateway: RunningGateway, path: str, body: dict[str, Any]
) -> tuple[int, Any]:
    async with http.post(f"{gateway.base_url}{path}", json=body, headers=HEADERS) as response:
        return response.status, await response.json()


async def events(
    http: aiohttp.ClientSession, gateway: RunningGateway, path: str, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """The `data:` events of a streamed answer, `[DONE]` excluded (and required)."""
    async with http.post(f"{gateway.base_url}{path}", json=body, headers=HEADERS) as response:
        assert response.status == 200, await response.text()
        frames = (await response.text()).split("\n\n")
    data = [frame.removeprefix("data: ") for frame in frames if frame]
    assert data[-1] == "[DONE]"
    for item in data[:-1]:
        yield json.loads(item)


def validate_chunk(chunk: dict[str, Any], *, with_usage: bool) -> None:
    validate("CreateChatCompletionStreamResponse", chunk)
    assert ("usage" in chunk) is with_usage, "usage is there exactly when it was asked for"


async def test_chat_completion_is_valid(
    http: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    status, body = await post(
        http, gateway, "/chat/completions", {"model": "m", "messages": MESSAGES}
    )
    assert status == 200
    validate("CreateChatCompletionResponse", body)
    [choice] = body["choices"]
    # Required by the spec, nullable: present as null when the provider has none.
    assert choice["message"]["refusal"] is None
    assert choice["logprobs"] is None


async def test_chat_tool_call_is_valid(
    http: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    request = {"model": "m", "messages": MESSAGES, "tools": [tool], "tool_choice": "required"}
    status, body = await post(http, gateway, "/chat/completions", request)
    assert status == 200
    validate("CreateChatCompletionResponse", body)
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"


async def test_chat_stream_with_usage_is_valid(
    http: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    request = {
        "model": "m",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = [chunk async for chunk in events(http, gateway, "/chat/completions", request)]
    for chunk in chunks:
        validate_chunk(chunk, with_usage=True)
    *before, last = chunks
    # As OpenAI streams it: usage null on every chunk but the last, which has no choices.
    assert all("usage" in chunk and chunk["usage"] is None for chunk in before)
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] > 0


async def test_chat_stream_without_usage_has_no_usage_field(
    http: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    request = {"model": "m", "messages": MESSAGES, "stream": True}
    chunks = [chunk async for chunk in events(http, gateway, "/chat/completions", request)]
    for chunk in chunks:
        validate_chunk(chunk, with_usage=False)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings_are_valid(
    http: aiohttp.ClientSession, embedding_gateway: RunningGateway, encoding: str
) -> None:
    body = {"model": "e", "input": ["Hello spec", "again"], "encoding_format": encoding}
    status, answer = await post(http, embedding_gateway, "/embeddings", body)
    assert status == 200, answer
    assert [item["index"] for item in answer["data"]] == [0, 1]
    if encoding == "base64":
        # The spec types `embedding` as floats only, base64 included (its own gap, which the
        # openai SDK's strict test trips on too): checked with each string decoded, as the
        # SDK decodes it (little-endian float32).
        for item in answer["data"]:
            raw = base64.b64decode(item["embedding"])
            item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    validate("CreateEmbeddingResponse", answer)


async def test_error_body_is_valid(http: aiohttp.ClientSession, gateway: RunningGateway) -> None:
    status, body = await post(http, gateway, "/chat/completions", {"model": "m", "messages": []})
    assert status == 400
    validate("ErrorResponse", body)


async def test_text_completion_is_valid(
    http: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    request = {"model": "m", "prompt": "Hello spec", "echo": True}
    status, body = await post(http, gateway, "/completions", request)
    assert status == 200
    validate("CreateCompletionResponse", body)
    assert body["choices"][0]["text"].startswith("Hello spec")
    status, body = await post(http, gateway, "/completions", {"model": "m", "prompt": "Hi"})
    assert status == 200
    validate("CreateCompletionResponse", body)


async def test_text_completion_stream_is_valid(
    http: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    request = {
        "model": "m",
        "prompt": "Hello spec",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = [chunk async for chunk in events(http, gateway, "/completions", request)]
    *texts, usage = chunks
    reasons = [chunk["choices"][0]["finish_reason"] for chunk in texts]
    # null until the last, as OpenAI streams it though its spec has no null (module docstring)
    assert reasons[-1] == "stop"
    assert set(reasons[:-1]) <= {None}
    for chunk in texts:
        choice = {**chunk["choices"][0], "finish_reason": "stop"}
        validate("CreateCompletionResponse", {**chunk, "choices": [choice]})
    validate("CreateCompletionResponse", usage)
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] > 0


async def test_the_openai_sdk_reads_every_answer_strictly(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url,
        api_key=USER_KEY,
        max_retries=0,
        _strict_response_validation=True,
    ) as sdk:
        chat = await sdk.chat.completions.create(model="m", messages=TYPED_MESSAGES)
        assert chat.choices[0].message.refusal is None
        assert chat.choices[0].logprobs is None
        stream = await sdk.chat.completions.create(
            model="m",
            messages=TYPED_MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        usages = [chunk.usage async for chunk in stream]
        assert all(usage is None for usage in usages[:-1])
        assert usages[-1] is not None
        legacy = await sdk.completions.create(model="m", prompt="Hello spec")
        assert legacy.choices[0].text
        models = await sdk.models.list()
        assert models.data[0].id == "m"  # then "e", where it embeds
        assert (await sdk.models.retrieve("m")).id == "m"
