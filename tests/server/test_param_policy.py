"""The parameter policy through HTTP, with the official SDKs, against the simulators: a
parameter the provider cannot honour is a 400 in the route's dialect naming it and the
provider, or, where the config drops it, is not sent and is listed in
`x-stellara-dropped-params`, on every inbound route, streams included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from stellara.sim import RunningSimulator
from tests.conftest import (
    MASTER_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    upstream_requests,
)

# google-genai's async client subclasses aiohttp's ClientSession, which aiohttp warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)
DROPPED = "x-stellara-dropped-params"
HI: list[Any] = [{"role": "user", "content": "Hello there"}]


def policy_config(sim_url: str, **top: Any) -> dict[str, Any]:
    """`claude` and `gem` refuse what their providers lack, `claude-lenient` drops it, `mixed`
    has an Anthropic target then an OpenAI one (unless `top` changes the top-level setting)."""

    def model(name: str, *providers: str, **fields: Any) -> dict[str, Any]:
        targets = [{"provider": p, "model": MODELS[p]} for p in providers]
        return {"name": name, "targets": targets, **fields}

    return {
        "server": {"master_key": MASTER_KEY},
        "providers": [
            {"id": "claude", "type": "anthropic", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {"id": "gemini", "type": "google", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {"id": "gpt", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY},
        ],
        "models": [
            model("claude", "claude"),
            model("claude-lenient", "claude", drop_unsupported_params=True),
            model("gem", "gemini"),
            model("mixed", "claude", "gpt"),
            {
                "name": "gem-embed",
                "targets": [{"provider": "gemini", "model": "text-embedding-004"}],
            },
        ],
        "keys": [{"key": USER_KEY, "user": "alice"}],
        **top,
    }


MODELS = {"claude": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash", "gpt": "gpt-4o-mini"}


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(policy_config(sim.url))


@pytest.fixture
async def dropping(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    """The same models, with `drop_unsupported_params: true` at the top level."""
    return await start_gateway(policy_config(sim.url, drop_unsupported_params=True))


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def lenient_client(dropping: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=dropping.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


def claude_sdk(gateway: RunningGateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key=USER_KEY, max_retries=0)


async def sent_bodies(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [r["body"] for r in await upstream_requests(sim)]


# ---------------------------------------------------------------- refused


async def test_params_refused_on_chat_completions_in_openais_error_shape(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="claude", messages=HI, logprobs=True)
    error = caught.value
    assert error.status_code == 400
    body = error.body
    assert isinstance(body, dict)
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "logprobs"
    assert body["code"] == "unsupported_parameter"
    assert "'logprobs'" in body["message"]
    assert "'claude' (anthropic)" in body["message"]
    assert await sent_bodies(sim) == []


async def test_params_refused_on_a_stream_before_it_starts(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gem", messages=HI, stream=True, seed=1, user="u"
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("user", "unsupported_parameter")
    assert "'gemini' (google)" in body["message"]
    assert await sent_bodies(sim) == []


async def test_params_anthropic_temperature_above_one_is_refused_not_clamped(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="claude", messages=HI, temperature=1.5)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "temperature"
    assert "temperature 1.5 is above 1" in body["message"]


async def test_params_refused_on_messages_in_anthropics_error_shape_by_its_own_name(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    async with claude_sdk(gateway) as sdk:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await sdk.messages.create(
                model="gem", max_tokens=50, messages=HI, metadata={"user_id": "u-1"}
            )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "'metadata.user_id'" in body["error"]["message"]
    assert "'gemini' (google)" in body["error"]["message"]
    assert await sent_bodies(sim) == []


async def test_params_refused_on_responses_by_the_responses_name(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="claude", input="Hi", text={"verbosity": "low"})
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("text.verbosity", "unsupported_parameter")
    assert await sent_bodies(sim) == []


# ---------------------------------------------------------------- dropped and reported


async def test_params_dropped_by_the_models_own_setting_and_reported(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="claude-lenient", messages=HI, temperature=1.5, seed=7, top_p=0.5
    )
    assert raw.headers[DROPPED] == "temperature,seed"
    completion = raw.parse()
    assert completion.choices[0].message.content
    (sent,) = await sent_bodies(sim)
    assert "temperature" not in sent
    assert "seed" not in sent
    assert sent["top_p"] == 0.5


async def test_params_dropped_by_the_top_level_setting_on_a_stream(
    lenient_client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    async with lenient_client.chat.completions.with_streaming_response.create(
        model="gem", messages=HI, stream=True, logit_bias={"50256": -100}, user="u", seed=3
    ) as response:
        assert response.headers[DROPPED] == "logit_bias,user"
        chunks = [chunk async for chunk in await response.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (sent,) = await sent_bodies(sim)
    assert sent["generationConfig"]["seed"] == 3  # Gemini's own: sent
    assert sent["generationConfig"] == {"seed": 3}


async def test_params_nothing_dropped_says_nothing(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="claude", messages=HI, temperature=0.5, logprobs=False, n=1
    )
    assert DROPPED not in raw.headers


async def test_params_dropped_on_messages_by_its_own_names_json_and_stream(
    dropping: RunningGateway, sim: RunningSimulator
) -> None:
    tool: anthropic.types.ToolParam = {
        "name": "lookup",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    async with claude_sdk(dropping) as sdk:
        raw = await sdk.messages.with_raw_response.create(
            model="gem", max_tokens=50, messages=HI, metadata={"user_id": "u-1"}
        )
        assert raw.headers[DROPPED] == "metadata.user_id"
        assert (await raw.parse()).content
        async with sdk.messages.with_streaming_response.create(
            model="gem",
            max_tokens=50,
            messages=HI,
            stream=True,
            tools=[tool],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        ) as streamed:
            assert streamed.headers[DROPPED] == "tool_choice.disable_parallel_tool_use"
            events = [
                json.loads(line[6:]) async for line in streamed.iter_lines() if line[:6] == "data: "
            ]
    assert events[-1]["type"] == "message_stop"
    assert len(await sent_bodies(sim)) == 2


async def test_params_dropped_on_responses_json_and_stream(
    lenient_client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    raw = await lenient_client.responses.with_raw_response.create(
        model="claude", input="Hi", text={"verbosity": "low"}
    )
    assert raw.headers[DROPPED] == "text.verbosity"
    assert raw.parse().output_text
    async with lenient_client.responses.with_streaming_response.create(
        model="gem", input="Hi", text={"verbosity": "high"}, stream=True
    ) as streamed:
        assert streamed.headers[DROPPED] == "text.verbosity"
        kinds = [event.type async for event in await streamed.parse()]
    assert kinds[-1] == "response.completed"
    assert len(await sent_bodies(sim)) == 2


async def test_params_drops_are_counted_by_provider_and_parameter(
    dropping: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with openai.AsyncOpenAI(
        base_url=dropping.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        for _ in range(2):
            await sdk.chat.completions.create(model="claude", messages=HI, seed=1)
    async with http.get(f"{dropping.url}/metrics") as response:
        text = await response.text()
    assert 'stellara_dropped_params_total{param="seed",provider="claude"} 2.0' in text


# ---------------------------------------------------------------- routing


async def test_params_a_target_that_cannot_take_the_request_is_skipped_and_said_so(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="mixed", messages=HI, logprobs=True
    )
    assert raw.headers["x-stellara-provider"] == "gpt"
    assert (
        "skipped claude/claude-sonnet-4-5: logprobs unsupported" in raw.headers["x-stellara-route"]
    )
    assert DROPPED not in raw.headers
    (sent,) = await sent_bodies(sim)
    assert sent["logprobs"] is True


# ---------------------------------------------------------------- embeddings


async def test_params_embeddings_refused_and_dropped_like_chat(
    client: openai.AsyncOpenAI, lenient_client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="gem-embed", input=["a", "b"], user="u-1")
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("user", "unsupported_parameter")
    assert "'gemini' (google)" in body["message"]
    assert await sent_bodies(sim) == []

    raw = await lenient_client.embeddings.with_raw_response.create(
        model="gem-embed", input=["a", "b"], user="u-1", dimensions=4
    )
    assert raw.headers[DROPPED] == "user"
    assert len(raw.parse().data) == 2
    (sent,) = await sent_bodies(sim)
    assert [r["outputDimensionality"] for r in sent["requests"]] == [4, 4]


# ---------------------------------------------------------------- the other dialects


async def test_params_gemini_dialect_names_the_parameter_as_a_gemini_client_sent_it(
    gateway: RunningGateway, dropping: RunningGateway, http: aiohttp.ClientSession
) -> None:
    http_options = genai_types.HttpOptions(
        base_url=gateway.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
    )
    async with genai.Client(api_key=USER_KEY, http_options=http_options).aio as client:
        with pytest.raises(genai_errors.ClientError) as caught:
            await client.models.generate_content(
                model="claude", contents="Hi", config=genai_types.GenerateContentConfig(seed=3)
            )
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert "'generationConfig.seed'" in str(caught.value.message)
    assert "'claude' (anthropic)" in str(caught.value.message)

    body = {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"seed": 3, "presencePenalty": 0.5},
    }
    async with http.post(
        f"{dropping.url}/v1beta/models/claude:generateContent",
        json=body,
        headers={"x-goog-api-key": USER_KEY},
    ) as answer:
        assert answer.status == 200, await answer.text()
        assert answer.headers[DROPPED] == "generationConfig.presencePenalty,generationConfig.seed"


async def test_params_legacy_completions_name_logprobs_once(
    client: openai.AsyncOpenAI, lenient_client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model="claude", prompt="Hi", logprobs=2)
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("logprobs", "unsupported_parameter")
    assert "'logprobs' cannot be honoured" in body["message"]

    raw = await lenient_client.completions.with_raw_response.create(
        model="claude", prompt="Hi", logprobs=2
    )
    assert raw.headers[DROPPED] == "logprobs"
    assert raw.parse().choices[0].text
