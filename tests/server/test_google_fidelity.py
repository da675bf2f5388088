"""What used to be lost on the way to Gemini, end to end: OpenAI SDK → gateway → Gemini simulator.

Thought signatures across a tool-call loop on a model that requires them (Gemini 3), whole and
streamed, from the `openai` SDK and from `google-genai`; `reasoning_effort` as `thinkingConfig`;
logprobs; `chat.completions.parse`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pydantic
import pytest
from google import genai
from google.genai import types
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionMessageToolCallParam

from stellara.sim import RunningSimulator
from tests.conftest import UPSTREAM_KEY, USER_KEY, RunningGateway, StartGateway, upstream_requests
from tests.server.test_google_provider import WEATHER_TOOL
from tests.specs.openai_schema import validate

MODELS = {
    "gem3": "gemini-3-pro-preview",
    "gem25": "gemini-2.5-flash",
    "gem20": "gemini-2.0-flash",
}
SEPARATOR = "__thoughtsig__"
WEATHER_DECLARATION = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)
QUESTION: ChatCompletionMessageParam = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(
        {
            "providers": [
                {"id": "gemini", "type": "google", "base_url": sim.url, "api_key": UPSTREAM_KEY}
            ],
            "models": [
                {"name": name, "targets": [{"provider": "gemini", "model": model}]}
                for name, model in MODELS.items()
            ],
            "keys": [{"key": USER_KEY, "user": "alice"}],
        }
    )


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def last_body(sim: RunningSimulator) -> dict[str, Any]:
    body: dict[str, Any] = (await upstream_requests(sim))[-1]["body"]
    return body


def history(call: ChatCompletionMessageToolCallParam) -> list[ChatCompletionMessageParam]:
    return [
        QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'},
    ]


# ---------------------------------------------------------------- thought signatures


async def test_google_signed_tool_call_loop_round_trips_the_signature(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    first = await client.chat.completions.create(
        model="gem3", messages=[QUESTION], tools=[WEATHER_TOOL], tool_choice="required"
    )
    [call] = first.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert SEPARATOR in call.id
    assert all(c.isalnum() or c in "_-" for c in call.id)
    turn = history(call.model_dump())  # type: ignore[arg-type]
    second = await client.chat.completions.create(model="gem3", messages=turn, tools=[WEATHER_TOOL])
    assert (second.choices[0].message.content or "").startswith("Tool result:")
    [sent_call] = (await last_body(sim))["contents"][1]["parts"]
    assert sent_call["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    # The sim accepted it (it checks the bytes); the gateway restored Google's own encoding too.
    assert sent_call["thoughtSignature"].endswith("=")
    assert "-" not in sent_call["thoughtSignature"]


async def test_google_streamed_tool_call_loop_round_trips_the_signature(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model="gem3", messages=[QUESTION], tools=[WEATHER_TOOL], stream=True
    )
    deltas = [
        d for chunk in [c async for c in stream] for d in chunk.choices[0].delta.tool_calls or []
    ]
    [delta] = deltas
    assert delta.id is not None
    assert SEPARATOR in delta.id
    assert delta.function is not None
    call: ChatCompletionMessageToolCallParam = {
        "id": delta.id,
        "type": "function",
        "function": {
            "name": delta.function.name or "",
            "arguments": delta.function.arguments or "",
        },
    }
    stream = await client.chat.completions.create(
        model="gem3", messages=history(call), tools=[WEATHER_TOOL], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("Tool result:")


@pytest.mark.parametrize("tamper", ["strip", "swap"])
async def test_google_call_without_its_signature_is_refused_by_gemini_3(
    client: openai.AsyncOpenAI, tamper: str
) -> None:
    first = await client.chat.completions.create(
        model="gem3", messages=[QUESTION], tools=[WEATHER_TOOL], tool_choice="required"
    )
    [call] = first.choices[0].message.tool_calls or []
    plain, _, signature = call.id.partition(SEPARATOR)
    forged = plain if tamper == "strip" else f"{plain}{SEPARATOR}{signature[::-1]}"
    turn = history({**call.model_dump(), "id": forged})  # type: ignore[typeddict-item]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gem3", messages=turn, tools=[WEATHER_TOOL])
    assert caught.value.status_code == 400
    assert "thought" in str(caught.value.message).lower()


# ---------------------------------------------------------------- reasoning_effort


@pytest.mark.parametrize(
    ("model", "effort", "thinking", "reasoning_tokens"),
    [
        ("gem25", "high", {"thinkingBudget": 24576}, 192),
        ("gem25", "none", {"thinkingBudget": 0}, None),
        ("gem3", "low", {"thinkingLevel": "LOW"}, 16),
    ],
)
async def test_google_reasoning_effort_reaches_gemini_as_thinking_config(
    client: openai.AsyncOpenAI,
    sim: RunningSimulator,
    model: str,
    effort: Any,
    thinking: dict[str, Any],
    reasoning_tokens: int | None,
) -> None:
    completion = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Think"}], reasoning_effort=effort
    )
    assert (await last_body(sim))["generationConfig"] == {"thinkingConfig": thinking}
    assert completion.usage is not None
    details = completion.usage.completion_tokens_details
    assert (details.reasoning_tokens if details else None) == reasoning_tokens


async def test_google_reasoning_effort_for_a_model_that_does_not_think_is_400(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gem20", messages=[{"role": "user", "content": "Think"}], reasoning_effort="high"
        )
    assert "reasoning_effort" in str(caught.value.message)
    assert await upstream_requests(sim) == []


# ---------------------------------------------------------------- logprobs


async def test_google_logprobs_come_back_in_openai_shape(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="gem25",
        messages=[{"role": "user", "content": "Hello"}],
        logprobs=True,
        top_logprobs=2,
    )
    assert (await last_body(sim))["generationConfig"] == {"responseLogprobs": True, "logprobs": 2}
    body = json.loads(raw.text)
    validate("CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    assert choice["logprobs"]["refusal"] is None
    content = choice["logprobs"]["content"]
    assert "".join(entry["token"] for entry in content) == choice["message"]["content"]
    for entry in content:
        validate("ChatCompletionTokenLogprob", entry)
        assert len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0]["token"] == entry["token"]
    parsed = raw.parse()
    assert parsed.choices[0].logprobs is not None


async def test_google_streamed_logprobs_follow_each_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gem25",
        messages=[{"role": "user", "content": "Hello"}],
        logprobs=True,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert sum(1 for chunk in chunks if chunk.choices[0].delta.content) > 1
    for chunk in chunks:
        [choice] = chunk.choices
        if choice.delta.content:
            assert choice.logprobs is not None
            tokens = [entry.token for entry in choice.logprobs.content or []]
            assert "".join(tokens) == choice.delta.content
            validate("ChatCompletionTokenLogprob", choice.logprobs.model_dump()["content"][0])


async def test_google_top_logprobs_without_logprobs_is_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gem25", messages=[{"role": "user", "content": "Hello"}], top_logprobs=2
        )
    assert "top_logprobs" in str(caught.value.message)


# ---------------------------------------------------------------- structured output


class Weather(pydantic.BaseModel):
    city: str
    temp_c: int


async def test_google_parse_with_a_pydantic_model(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await client.chat.completions.parse(
        model="gem25",
        messages=[{"role": "user", "content": "Weather in Rome"}],
        response_format=Weather,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    assert parsed.city == "Rome"
    config = (await last_body(sim))["generationConfig"]
    assert config["responseJsonSchema"]["additionalProperties"] is False
    assert "responseSchema" not in config


class Tags(pydantic.BaseModel):
    labels: dict[str, str]


async def test_google_schema_an_older_model_cannot_express_is_400(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.parse(
            model="gem20", messages=[{"role": "user", "content": "Tag it"}], response_format=Tags
        )
    assert "'additionalProperties'" in str(caught.value.message)
    assert "#/properties/labels" in str(caught.value.message)
    assert await upstream_requests(sim) == []


# ---------------------------------------------------------------- Gemini-native clients


@pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)
async def test_google_genai_tool_loop_on_gemini_3_through_the_gateway(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    """The Gemini dialect hands the call id back as `functionCall.id`, which google-genai
    echoes, so the signature inside it reaches Gemini 3 on the next turn."""
    options = types.HttpOptions(
        base_url=gateway.url, retry_options=types.HttpRetryOptions(attempts=1)
    )
    tools = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER_DECLARATION])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    async with genai.Client(api_key=USER_KEY, http_options=options).aio as client:
        first = await client.models.generate_content(
            model="gem3", contents=[question], config=tools
        )
        model_turn = (first.candidates or [])[0].content
        assert model_turn is not None
        result = types.Part.from_function_response(name="get_weather", response={"t": "sunny"})
        second = await client.models.generate_content(
            model="gem3",
            contents=[question, model_turn, types.Content(role="user", parts=[result])],
            config=tools,
        )
    assert "sunny" in (second.text or "")
    [sent_call] = (await last_body(sim))["contents"][1]["parts"]
    assert sent_call["thoughtSignature"]
