"""The Gemini API routes end to end: the official `google-genai` SDK → gateway → the OpenAI,
Anthropic and Gemini simulators. Raw answers are checked with the SDK's own types, strictly."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pydantic
import pytest
from google import genai
from google.genai import errors, types

from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    MASTER_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
    upstream_requests,
)

# google-genai's async client subclasses aiohttp's ClientSession, which aiohttp warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)
CHAT_MODELS = ("gpt", "claude", "gem")
EMBED_MODELS = ("embed-gpt", "embed-gem")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Current weather for a city",
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={"city": types.Schema(type=types.Type.STRING)},
                required=["city"],
            ),
        )
    ]
)
NO_AUTOMATIC_CALLS = types.AutomaticFunctionCallingConfig(disable=True)
HELLO = {"contents": [{"role": "user", "parts": [{"text": "Hello there, gateway"}]}]}


class City(pydantic.BaseModel):
    name: str
    population: int


def three_providers(sim_url: str) -> dict[str, Any]:
    """A chat model on each provider type, and two embedding models, on one simulator."""
    return {
        "server": {"master_key": MASTER_KEY},
        "providers": [
            {"id": "oai", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY},
            {"id": "ant", "type": "anthropic", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {"id": "goo", "type": "google", "base_url": sim_url, "api_key": UPSTREAM_KEY},
        ],
        "models": [
            {"name": "gpt", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
            {"name": "claude", "targets": [{"provider": "ant", "model": "claude-sonnet-4-5"}]},
            {"name": "gem", "targets": [{"provider": "goo", "model": "gemini-2.0-flash"}]},
            {
                "name": "embed-gpt",
                "targets": [{"provider": "oai", "model": "text-embedding-3-small"}],
            },
            {"name": "embed-gem", "targets": [{"provider": "goo", "model": "text-embedding-004"}]},
        ],
        "keys": [
            {"key": USER_KEY, "user": "alice"},
            {"key": LIMITED_KEY, "user": "bob", "models": ["gpt"]},
        ],
        "usage_store": {"url": "sqlite:///usage.db", "flush_interval_s": 0.05},
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(three_providers(sim.url))


def sdk(gateway: RunningGateway, key: str = USER_KEY, **options: Any) -> genai.Client:
    """google-genai as a user points it at the gateway (no retries: each status as sent)."""
    http_options = types.HttpOptions(
        base_url=gateway.url, retry_options=types.HttpRetryOptions(attempts=1), **options
    )
    return genai.Client(api_key=key, http_options=http_options)


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[genai.client.AsyncClient]:
    async with sdk(gateway).aio as aio:
        yield aio


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"x-goog-api-key": USER_KEY} if headers is None else headers
    async with http.post(url, data=data, headers=sent) as answer:
        return answer.status, await answer.text()


def gemini_error(text: str, code: int, status: str) -> str:
    """The message of a Gemini error body, after checking its shape."""
    body = json.loads(text)
    assert set(body) == {"error"}
    error = body["error"]
    assert (error["code"], error["status"]) == (code, status)
    assert isinstance(error["message"], str)
    assert error["message"]
    message: str = error["message"]
    return message


def sent_upstream(requests: list[dict[str, Any]]) -> str:
    """The last upstream call's body, as text."""
    return json.dumps(requests[-1]["body"])


# ---------------------------------------------------------------- generateContent


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_gemini_generate_text_through_every_provider(
    client: genai.client.AsyncClient, model: str
) -> None:
    answer = await client.models.generate_content(model=model, contents="Hello there, gateway")
    assert answer.text is not None
    assert answer.text.startswith("Hello there, gateway")
    assert answer.model_version == model
    assert answer.response_id
    [candidate] = answer.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP
    meta = answer.usage_metadata
    assert meta is not None
    assert meta.prompt_token_count
    assert meta.candidates_token_count
    assert meta.total_token_count == meta.prompt_token_count + meta.candidates_token_count


@pytest.mark.parametrize("version", ["v1beta", "v1"])
async def test_gemini_raw_answer_is_valid_for_the_sdk_strictly(
    gateway: RunningGateway, http: aiohttp.ClientSession, version: str
) -> None:
    async with http.post(
        f"{gateway.url}/{version}/models/gem:generateContent",
        json=HELLO,
        headers={"x-goog-api-key": USER_KEY},
    ) as raw:
        assert raw.status == 200
        assert raw.headers["x-stellara-provider"] == "goo"
        assert raw.headers["x-stellara-request-id"].startswith("req_")
        body = await raw.read()
    answer = types.GenerateContentResponse.model_validate_json(body, strict=True)
    assert answer.text


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_gemini_image_reaches_every_provider(
    client: genai.client.AsyncClient, sim: RunningSimulator, model: str
) -> None:
    image = types.Part.from_bytes(data=PNG, mime_type="image/png")
    answer = await client.models.generate_content(model=model, contents=[image, "What is it?"])
    assert answer.text
    assert base64.b64encode(PNG).decode() in sent_upstream(await upstream_requests(sim))


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_gemini_function_call_and_response_round(
    client: genai.client.AsyncClient, sim: RunningSimulator, model: str
) -> None:
    config = types.GenerateContentConfig(
        tools=[WEATHER],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY
            )
        ),
        automatic_function_calling=NO_AUTOMATIC_CALLS,
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    first = await client.models.generate_content(model=model, contents=[question], config=config)
    [call] = first.function_calls or []
    assert call.name == "get_weather"
    assert call.args is not None
    assert set(call.args) == {"city"}
    assert call.id
    assert (first.candidates or [])[0].finish_reason == types.FinishReason.STOP
    model_turn = (first.candidates or [])[0].content
    assert model_turn is not None
    result = types.Part.from_function_response(
        name="get_weather", response={"result": "sunny, 21C"}
    )
    second = await client.models.generate_content(
        model=model,
        contents=[question, model_turn, types.Content(role="user", parts=[result])],
        config=types.GenerateContentConfig(
            tools=[WEATHER], automatic_function_calling=NO_AUTOMATIC_CALLS
        ),
    )
    assert second.text is not None
    assert "sunny, 21C" in second.text  # every simulator reads the tool result back
    assert "sunny, 21C" in sent_upstream(await upstream_requests(sim))


@pytest.mark.parametrize("model", ["gpt", "claude", "gem"])
async def test_gemini_response_schema_answers_json(
    client: genai.client.AsyncClient, model: str
) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=City
    )
    answer = await client.models.generate_content(model=model, contents="A big city", config=config)
    assert isinstance(answer.parsed, City)


async def test_gemini_response_schema_reaches_openai_as_json_schema(
    client: genai.client.AsyncClient, sim: RunningSimulator
) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=City
    )
    await client.models.generate_content(model="gpt", contents="A big city", config=config)
    sent = (await upstream_requests(sim))[-1]["body"]
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["population"] == {"title": "Population", "type": "integer"}
    assert schema["required"] == ["name", "population"]


# ---------------------------------------------------------------- streamGenerateContent


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_gemini_stream_through_every_provider(
    client: genai.client.AsyncClient, model: str
) -> None:
    pieces = [
        piece
        async for piece in await client.models.generate_content_stream(
            model=model, contents="Hello there, gateway"
        )
    ]
    assert len(pieces) > 2
    text = "".join(piece.text or "" for piece in pieces)
    assert text.startswith("Hello there, gateway")
    last = pieces[-1]
    assert (last.candidates or [])[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.total_token_count
    assert all(piece.usage_metadata is None for piece in pieces[:-1])
    assert len({piece.response_id for piece in pieces}) == 1


async def test_gemini_stream_frames_are_valid_sse_of_responses(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{gateway.url}/v1beta/models/claude:streamGenerateContent?alt=sse",
        json=HELLO,
        headers={"x-goog-api-key": USER_KEY},
    ) as raw:
        assert raw.status == 200
        assert raw.headers["Content-Type"].startswith("text/event-stream")
        text = await raw.text()
    frames = [frame for frame in text.split("\r\n\r\n") if frame]
    assert all(frame.startswith("data: ") for frame in frames)
    for frame in frames:
        types.GenerateContentResponse.model_validate_json(frame.removeprefix("data: "), strict=True)


async def test_gemini_stream_without_alt_sse_is_refused(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    status, text = await post(http, f"{gateway.url}/v1beta/models/gem:streamGenerateContent", HELLO)
    assert status == 400
    assert "alt=sse" in gemini_error(text, 400, "INVALID_ARGUMENT")


async def test_gemini_stream_cut_upstream_raises_in_sdk(
    client: genai.client.AsyncClient, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2})

    async def read_all() -> None:
        async for _ in await client.models.generate_content_stream(model="gpt", contents="hi"):
            pass

    with pytest.raises(errors.ServerError) as caught:
        await read_all()
    assert caught.value.code == 502
    assert caught.value.status == "UNAVAILABLE"


# ---------------------------------------------------------------- countTokens, embeddings, models


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_gemini_count_tokens_grows_with_the_prompt(
    client: genai.client.AsyncClient, sim: RunningSimulator, model: str
) -> None:
    short = await client.models.count_tokens(model=model, contents="Hello")
    long = await client.models.count_tokens(model=model, contents="Hello " * 50)
    assert short.total_tokens is not None
    assert long.total_tokens is not None
    assert 0 < short.total_tokens < long.total_tokens
    assert await upstream_requests(sim) == []  # the gateway's tokenizer, no upstream call


async def test_gemini_count_tokens_takes_a_generate_request(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/v1beta/models/gem:countTokens"
    status, text = await post(
        http, url, {"generateContentRequest": {"model": "models/gem", **HELLO}}
    )
    assert status == 200
    counted = types.CountTokensResponse.model_validate_json(text, strict=True)
    assert counted.total_tokens
    status, text = await post(http, url, {})
    gemini_error(text, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("model", EMBED_MODELS)
async def test_gemini_embed_batch_through_sdk(client: genai.client.AsyncClient, model: str) -> None:
    answer = await client.models.embed_content(
        model=model,
        contents=["the cat sat", "a dog ran"],
        config=types.EmbedContentConfig(output_dimensionality=64),
    )
    vectors = [embedding.values or [] for embedding in answer.embeddings or []]
    assert [len(vector) for vector in vectors] == [64, 64]
    assert vectors[0] != vectors[1]


@pytest.mark.parametrize("model", EMBED_MODELS)
async def test_gemini_embed_content_single(
    gateway: RunningGateway, http: aiohttp.ClientSession, model: str
) -> None:
    body = {"content": {"parts": [{"text": "the cat sat"}]}, "outputDimensionality": 32}
    status, text = await post(http, f"{gateway.url}/v1beta/models/{model}:embedContent", body)
    assert status == 200, text
    values = json.loads(text)["embedding"]["values"]
    assert len(values) == 32
    types.ContentEmbedding.model_validate_json(json.dumps({"values": values}), strict=True)


async def test_gemini_embed_on_a_chat_only_model_is_refused(
    client: genai.client.AsyncClient,
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.models.embed_content(model="claude", contents=["x"])
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("version", ["v1beta", "v1"])  # v1: google-genai's default
async def test_gemini_models_list_and_get(gateway: RunningGateway, version: str) -> None:
    """On v1 the paths are the OpenAI and Anthropic clients' too (`/v1/models`): the gateway
    knows a Gemini client by how it sends its key."""
    async with sdk(gateway, api_version=version).aio as client:
        listed = [model async for model in await client.models.list(config={"page_size": 2})]
        assert [model.name for model in listed] == [
            "models/gpt",
            "models/claude",
            "models/gem",
            "models/embed-gpt",
            "models/embed-gem",
        ]
        gem = await client.models.get(model="gem")
        assert gem.display_name == "gem"
        assert "generateContent" in (gem.supported_actions or [])
        assert "embedContent" in (gem.supported_actions or [])
        assert gem.input_token_limit
        claude = await client.models.get(model="models/claude")
        assert "embedContent" not in (claude.supported_actions or [])
        with pytest.raises(errors.ClientError) as caught:
            await client.models.get(model="nope")
        assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    async with sdk(gateway, key=LIMITED_KEY, api_version=version).aio as limited:
        assert [m.name async for m in await limited.models.list()] == ["models/gpt"]


async def test_gemini_models_page_token(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    headers = {"x-goog-api-key": USER_KEY}
    url = f"{gateway.url}/v1beta/models"
    async with http.get(url, params={"pageSize": "3"}, headers=headers) as first:
        page = await first.json()
    assert len(page["models"]) == 3
    assert page["models"][0]["supportedGenerationMethods"]
    async with http.get(
        url, params={"pageSize": "3", "pageToken": page["nextPageToken"]}, headers=headers
    ) as second:
        rest = await second.json()
    assert [m["name"] for m in rest["models"]] == ["models/embed-gpt", "models/embed-gem"]
    assert "nextPageToken" not in rest
    async with http.get(url, params={"pageToken": "nope"}, headers=headers) as bad:
        gemini_error(await bad.text(), 400, "INVALID_ARGUMENT")


# ---------------------------------------------------------------- keys and errors


async def test_gemini_key_by_query_parameter(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/v1beta/models/gpt:generateContent?key={USER_KEY}"
    status, text = await post(http, url, HELLO, headers={})
    assert status == 200, text
    assert types.GenerateContentResponse.model_validate_json(text, strict=True).text


async def test_gemini_bearer_key_works_too(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/v1beta/models/gpt:generateContent"
    status, _ = await post(http, url, HELLO, headers={"Authorization": f"Bearer {USER_KEY}"})
    assert status == 200


async def test_gemini_bad_or_missing_key_is_unauthenticated(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with sdk(gateway, key="sk-wrong").aio as client:
        with pytest.raises(errors.ClientError) as caught:
            await client.models.generate_content(model="gpt", contents="hi")
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")
    status, text = await post(http, f"{gateway.url}/v1beta/models/gpt:countTokens", HELLO, {})
    assert status == 401
    gemini_error(text, 401, "UNAUTHENTICATED")
    async with http.get(f"{gateway.url}/v1beta/models?key=sk-wrong") as listed:
        gemini_error(await listed.text(), 401, "UNAUTHENTICATED")


async def test_gemini_unknown_and_forbidden_models(gateway: RunningGateway) -> None:
    async with sdk(gateway).aio as client:
        with pytest.raises(errors.ClientError) as caught:
            await client.models.generate_content(model="nope", contents="hi")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    assert "nope" in (caught.value.message or "")
    async with sdk(gateway, key=LIMITED_KEY).aio as limited:
        with pytest.raises(errors.ClientError) as caught:
            await limited.models.generate_content(model="gem", contents="hi")
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")


async def test_gemini_malformed_body_is_invalid_argument(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/v1beta/models/gpt:generateContent"
    for body in (b"{not json", b'{"contents": "hi"}', b'{"contents": []}'):
        status, text = await post(http, url, body)
        assert status == 400
        gemini_error(text, 400, "INVALID_ARGUMENT")


async def test_gemini_field_it_cannot_carry_is_named(client: genai.client.AsyncClient) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.models.generate_content(
            model="gem", contents="hi", config=types.GenerateContentConfig(top_k=5)
        )
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert (caught.value.message or "").startswith("generationConfig.topK: not supported")


async def test_gemini_unknown_paths_answer_in_gemini_shape(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    for url in ("/v1beta/nothing", "/v1beta/models/gpt:explain"):
        status, text = await post(http, gateway.url + url, HELLO)
        assert status == 404
        gemini_error(text, 404, "NOT_FOUND")
    # Under /v1/ the path is also a model's (GET /v1/models/{id}, which names may hold ':' in):
    # POST there is a method the resource lacks, still answered in Gemini's shape.
    status, text = await post(http, gateway.url + "/v1/models/gpt:explain", HELLO)
    assert status == 405
    gemini_error(text, 405, "UNIMPLEMENTED")
    async with http.delete(f"{gateway.url}/v1beta/models/gpt:generateContent") as wrong:
        assert wrong.headers["Allow"] == "POST"
        gemini_error(await wrong.text(), 405, "UNIMPLEMENTED")


async def test_gemini_calls_are_recorded_by_endpoint(
    client: genai.client.AsyncClient, gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    await client.models.generate_content(model="gem", contents="hi")
    await client.models.embed_content(model="embed-gem", contents=["hi"])
    expected = {"/v1/models/{model}:generateContent", "/v1/models/{model}:batchEmbedContents"}
    deadline = asyncio.get_running_loop().time() + 5.0
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    while True:
        async with http.get(f"{gateway.url}/admin/usage?user=alice", headers=headers) as answer:
            records = (await answer.json())["data"]
        if len(records) == len(expected):
            break
        assert asyncio.get_running_loop().time() < deadline, records
        await asyncio.sleep(0.05)
    assert {record["endpoint"] for record in records} == expected
    assert {record["model"] for record in records} == {"gem", "embed-gem"}


async def test_gemini_rate_limit_is_resource_exhausted_with_retry_info(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    config = three_providers(sim.url)
    config["limits"] = {"tiers": {"default": {"rate": {"window_s": 60, "requests": 1}}}}
    gateway = await start_gateway(config)
    async with sdk(gateway).aio as client:
        await client.models.generate_content(model="gpt", contents="hi")
        with pytest.raises(errors.ClientError) as caught:
            await client.models.generate_content(model="gpt", contents="hi")
    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert error.response is not None
    retry_after = int(error.response.headers["Retry-After"])
    assert retry_after >= 1
    [detail] = error.details["error"]["details"]
    assert detail == {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": f"{retry_after}s",
    }


async def test_gemini_generation_config_reaches_openai_and_gemini_upstreams(
    client: genai.client.AsyncClient, sim: RunningSimulator
) -> None:
    config = types.GenerateContentConfig(
        temperature=0.3,
        top_p=0.8,
        max_output_tokens=5,
        stop_sequences=["zzz"],
        seed=3,
        presence_penalty=0.5,
        system_instruction="Be brief.",
    )
    await client.models.generate_content(model="gpt", contents="hi", config=config)
    await client.models.generate_content(model="gem", contents="hi", config=config)
    openai_body, gemini_body = [request["body"] for request in await upstream_requests(sim)]
    assert {key: openai_body[key] for key in ("temperature", "top_p", "stop", "seed")} == {
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["zzz"],
        "seed": 3,
    }
    assert openai_body["presence_penalty"] == 0.5
    assert openai_body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert gemini_body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "maxOutputTokens": 5,
        "stopSequences": ["zzz"],
        "seed": 3,
        "presencePenalty": 0.5,
    }
    assert gemini_body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
