"""Fields a route does not declare, through HTTP with the official SDKs against the simulators:
`/v1/messages` refuses them in Anthropic's words and translates those that map
(`output_config.format`, `service_tier`, tool `strict`); nothing is dropped in silence."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import (
    MASTER_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    upstream_requests,
)

HI: list[Any] = [{"role": "user", "content": "Hello there"}]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(
        {
            "server": {"master_key": MASTER_KEY},
            "providers": [
                {"id": "claude", "type": "anthropic", "base_url": sim.url, "api_key": UPSTREAM_KEY},
                {
                    "id": "gpt",
                    "type": "openai",
                    "base_url": f"{sim.url}/v1",
                    "api_key": UPSTREAM_KEY,
                },
            ],
            "models": [
                {
                    "name": "claude",
                    "targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}],
                },
                {"name": "gpt", "targets": [{"provider": "gpt", "model": "gpt-4o-mini"}]},
                {
                    "name": "claude-lenient",
                    "targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}],
                    "drop_unsupported_params": True,
                },
            ],
            "keys": [{"key": USER_KEY, "user": "alice"}],
        }
    )


@pytest.fixture
async def claude_sdk(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def sent_bodies(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [r["body"] for r in await upstream_requests(sim)]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"container": {"id": "c1"}}, "container"),
        ({"speed": "fast"}, "speed"),
        ({"output_config": {"effort": "low"}}, "output_config.effort"),
        (
            {"tools": [{"name": "f", "input_schema": {"type": "object"}, "defer_loading": True}]},
            "tools.0.defer_loading",
        ),
    ],
)
async def test_messages_undeclared_field_refused_by_name_in_anthropics_words(
    claude_sdk: anthropic.AsyncAnthropic,
    sim: RunningSimulator,
    extra: dict[str, Any],
    named: str,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude_sdk.messages.create(model="gpt", max_tokens=64, messages=HI, extra_body=extra)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == f"{named}: Extra inputs are not permitted"
    assert await sent_bodies(sim) == []


async def test_messages_output_format_and_strict_tools_reach_an_openai_target(
    claude_sdk: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    tool = {"name": "weather", "input_schema": SCHEMA, "strict": True}
    message = await claude_sdk.messages.create(
        model="gpt",
        max_tokens=64,
        messages=HI,
        tools=[tool],  # type: ignore[list-item]
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
    )
    assert message.type == "message"
    [body] = await sent_bodies(sim)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }
    [function] = [t["function"] for t in body["tools"]]
    assert function["strict"] is True


async def test_messages_output_format_is_json_from_a_claude_target(
    claude_sdk: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    message = await claude_sdk.messages.create(
        model="claude",
        max_tokens=256,
        messages=HI,
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
    )
    [block] = message.content
    assert block.type == "text"
    assert set(json.loads(block.text)) == {"city"}
    [body] = await sent_bodies(sim)
    [answer_tool] = body["tools"]
    assert answer_tool["input_schema"] == SCHEMA
    assert body["tool_choice"]["type"] == "tool"


async def test_messages_service_tier_goes_to_the_policy(
    claude_sdk: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    """OpenAI's tiers are not Anthropic's, so the canonical `service_tier` is sent to an
    OpenAI target as asked and refused for an Anthropic one unless dropping is on."""
    await claude_sdk.messages.create(model="gpt", max_tokens=64, messages=HI, service_tier="auto")
    [body] = await sent_bodies(sim)
    assert body["service_tier"] == "auto"
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude_sdk.messages.create(
            model="claude", max_tokens=64, messages=HI, service_tier="auto"
        )
    assert "service_tier" in caught.value.message


# ---------------------------------------------------------------- legacy functions


@pytest.fixture
async def openai_sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


WEATHER: Any = {"name": "weather", "description": "The weather in a city", "parameters": SCHEMA}


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_functions_become_tools_and_the_call_comes_back_as_function_call(
    openai_sdk: openai.AsyncOpenAI, sim: RunningSimulator, model: str
) -> None:
    completion = await openai_sdk.chat.completions.create(
        model=model, messages=HI, functions=[WEATHER], function_call={"name": "weather"}
    )
    [choice] = completion.choices
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    call = choice.message.function_call
    assert call is not None
    assert call.name == "weather"
    assert set(json.loads(call.arguments)) == {"city"}
    [body] = await sent_bodies(sim)
    assert "functions" not in body
    assert "function_call" not in body
    if model == "gpt":
        assert body["tools"] == [{"type": "function", "function": WEATHER}]
        assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    else:
        [tool] = body["tools"]
        assert tool["name"] == "weather"
        assert body["tool_choice"]["name"] == "weather"


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_functions_streamed_as_function_call_deltas(
    openai_sdk: openai.AsyncOpenAI, model: str
) -> None:
    stream = await openai_sdk.chat.completions.create(
        model=model,
        messages=HI,
        functions=[WEATHER],
        function_call={"name": "weather"},
        stream=True,
    )
    name, arguments, finish = "", "", []
    async for chunk in stream:
        for choice in chunk.choices:
            assert not choice.delta.tool_calls
            call = choice.delta.function_call
            if call is not None:
                name += call.name or ""
                arguments += call.arguments or ""
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert name == "weather"
    assert set(json.loads(arguments)) == {"city"}
    assert finish == ["function_call"]


async def test_functions_history_pairs_call_and_answer_for_claude(
    openai_sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    messages: Any = [
        *HI,
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        },
        {"role": "function", "name": "weather", "content": "1 degree"},
    ]
    completion = await openai_sdk.chat.completions.create(
        model="claude", messages=messages, functions=[WEATHER]
    )
    assert completion.choices[0].message.content
    [body] = await sent_bodies(sim)
    _, assistant, answer = body["messages"]
    [use] = assistant["content"]
    [result] = answer["content"]
    assert use["type"] == "tool_use"
    assert use["input"] == {"city": "Oslo"}
    assert result["type"] == "tool_result"
    assert result["tool_use_id"] == use["id"]


# ---------------------------------------------------------------- undeclared chat fields

VLLM = {"min_p": 0.1, "repetition_penalty": 1.1, "chat_template_kwargs": {"enable_thinking": False}}


async def test_chat_undeclared_fields_relayed_to_an_openai_type_target(
    openai_sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    """The simulator takes them as an OpenAI-compatible server does (OpenAI itself would
    answer its own 400 naming the field)."""
    completion = await openai_sdk.chat.completions.create(model="gpt", messages=HI, extra_body=VLLM)
    assert completion.choices[0].message.content
    [body] = await sent_bodies(sim)
    assert {name: body[name] for name in VLLM} == VLLM
    assert "unknown_params" not in body


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_undeclared_field_refused_for_claude_naming_it(
    openai_sdk: openai.AsyncOpenAI, sim: RunningSimulator, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.chat.completions.create(
            model="claude", messages=HI, stream=stream, extra_body={"min_p": 0.1}
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "min_p"
    assert body["code"] == "unsupported_parameter"
    assert "'min_p'" in body["message"]
    assert "'claude' (anthropic)" in body["message"]
    assert await sent_bodies(sim) == []


async def test_chat_undeclared_fields_dropped_and_listed_when_dropping(
    openai_sdk: openai.AsyncOpenAI, sim: RunningSimulator, gateway: RunningGateway
) -> None:
    raw = await openai_sdk.chat.completions.with_raw_response.create(
        model="claude-lenient", messages=HI, extra_body={"min_p": 0.1, "moderation": True}
    )
    assert raw.headers["x-stellara-dropped-params"] == "min_p,moderation"
    assert raw.parse().choices[0].message.content
    [body] = await sent_bodies(sim)
    assert "min_p" not in body
    assert "moderation" not in body
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as response:
        text = await response.text()
    # Counted under one label, whatever the client named them.
    assert 'stellara_dropped_params_total{param="unknown_params",provider="claude"} 2.0' in text
    assert "min_p" not in text


async def test_generate_undeclared_fields_follow_the_chat_routes_policy(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    """`/ai-orchestration/generate` takes a chat body plus its own `routing` and `cache`: an
    undeclared field is relayed to an OpenAI-type target and refused by name for Claude, as
    on `/v1/chat/completions`; the gateway's own fields never go upstream."""
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    extra = {"min_p": 0.1, "routing": {"strategy": "priority"}, "cache": {"no_store": True}}
    async with aiohttp.ClientSession() as http:
        for model, status in (("gpt", 200), ("claude", 400)):
            async with http.post(
                f"{gateway.url}/ai-orchestration/generate",
                json={"model": model, "messages": HI, **extra},
                headers=headers,
            ) as response:
                answer = await response.json()
                assert response.status == status, answer
        assert answer["error"]["param"] == "min_p"
    [body] = await sent_bodies(sim)
    assert body["min_p"] == 0.1
    assert "routing" not in body
    assert "cache" not in body
