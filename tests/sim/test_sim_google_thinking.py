"""The Gemini simulator's thinking models, thought signatures, logprobs and JSON Schema, driven
by `google-genai` (whose history handling returns signatures as Google requires) and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google import genai
from google.genai import types

from stellara.sim import RunningSimulator, SimConfig, start_simulator
from tests.sim.test_sim_google import KEY, NO_AUTO_CALLS, WEATHER, post

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)

GEMINI_3 = "gemini-3-pro-preview"
ASKED = types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
TOOLS = types.GenerateContentConfig(
    tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AUTO_CALLS
)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(SimConfig(api_key=KEY)) as simulator:
        yield simulator


def sdk(sim: RunningSimulator) -> genai.Client:
    return genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=sim.url, api_version="v1beta")
    )


async def call_turn(sim: RunningSimulator) -> types.Content:
    response = await sdk(sim).aio.models.generate_content(
        model=GEMINI_3, contents=[ASKED], config=TOOLS
    )
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None
    return content


def follow_up_body(model_turn: dict[str, Any]) -> dict[str, Any]:
    answered = {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
            model_turn,
            {"role": "user", "parts": [answered]},
        ]
    }


async def test_sim_gemini_3_signs_calls_and_accepts_them_back(sim: RunningSimulator) -> None:
    content = await call_turn(sim)
    [part] = content.parts or []
    assert part.function_call is not None
    assert part.thought_signature  # bytes to the SDK: standard base64 on the wire
    follow_up = await sdk(sim).aio.models.generate_content(
        model=GEMINI_3,
        contents=[
            ASKED,
            content,
            types.Content(
                role="user",
                parts=[types.Part.from_function_response(name="get_weather", response={"t": 1})],
            ),
        ],
        config=TOOLS,
    )
    assert follow_up.text is not None
    assert follow_up.text.startswith('Tool result: {"t":1}')


@pytest.mark.parametrize(
    ("signature", "fragment"),
    [
        (None, "Function call is missing a thought_signature in functionCall parts"),
        ("QUJDRA==", "Corrupted thought signature."),
    ],
)
async def test_sim_gemini_3_refuses_a_call_turn_without_its_signature(
    sim: RunningSimulator, signature: str | None, fragment: str
) -> None:
    call: dict[str, Any] = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    if signature is not None:
        call["thoughtSignature"] = signature
    path = f"/v1beta/models/{GEMINI_3}:generateContent"
    status, text = await post(sim, path, follow_up_body({"role": "model", "parts": [call]}))
    assert status == 400
    error = json.loads(text)["error"]
    assert (error["status"], error["code"]) == ("INVALID_ARGUMENT", 400)
    assert fragment in error["message"]


async def test_sim_signatures_are_only_checked_in_the_current_turn(sim: RunningSimulator) -> None:
    old_call = {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
    body = follow_up_body({"role": "model", "parts": [old_call]})
    body["contents"] += [
        {"role": "model", "parts": [{"text": "It is warm."}]},
        {"role": "user", "parts": [{"text": "Thanks"}]},
    ]
    status, _ = await post(sim, f"/v1beta/models/{GEMINI_3}:generateContent", body)
    assert status == 200


async def test_sim_older_models_do_not_sign_or_check(sim: RunningSimulator) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    path = "/v1beta/models/gemini-2.0-flash:generateContent"
    status, _ = await post(sim, path, follow_up_body({"role": "model", "parts": [call]}))
    assert status == 200


@pytest.mark.parametrize(
    ("model", "thinking", "thoughts"),
    [
        ("gemini-2.5-flash", {"thinkingBudget": 1024}, 8),
        ("gemini-2.5-flash", {"thinkingBudget": 0}, None),
        ("gemini-2.5-flash", None, 32),
        ("gemini-3-flash", {"thinkingLevel": "HIGH"}, 64),
        ("gemini-2.0-flash", None, None),
    ],
)
async def test_sim_thinking_models_report_thought_tokens(
    sim: RunningSimulator, model: str, thinking: dict[str, Any] | None, thoughts: int | None
) -> None:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    if thinking is not None:
        body["generationConfig"] = {"thinkingConfig": thinking}
    status, text = await post(sim, f"/v1beta/models/{model}:generateContent", body)
    assert status == 200, text
    usage = json.loads(text)["usageMetadata"]
    assert usage.get("thoughtsTokenCount") == thoughts
    total = usage["promptTokenCount"] + usage["candidatesTokenCount"] + (thoughts or 0)
    assert usage["totalTokenCount"] == total


@pytest.mark.parametrize(
    ("model", "thinking", "fragment"),
    [
        ("gemini-2.0-flash", {"thinkingBudget": 1024}, "Thinking is not supported"),
        ("gemini-2.5-flash", {"thinkingLevel": "LOW"}, "Thinking level is not supported"),
        ("gemini-3-pro", {"thinkingLevel": "LOW", "thinkingBudget": 5}, "either thinking budget"),
        ("gemini-2.5-pro", {"thinkingBudget": 0}, "only works in thinking mode"),
        ("gemini-3-pro", {"thinkingLevel": "VERY"}, "Invalid value"),
    ],
)
async def test_sim_refuses_thinking_config_the_model_cannot_take(
    sim: RunningSimulator, model: str, thinking: dict[str, Any], fragment: str
) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"thinkingConfig": thinking},
    }
    status, text = await post(sim, f"/v1beta/models/{model}:generateContent", body)
    assert status == 400
    assert fragment in json.loads(text)["error"]["message"]


async def test_sim_logprobs_result_follows_the_answer(sim: RunningSimulator) -> None:
    response = await sdk(sim).aio.models.generate_content(
        model="gemini-2.5-flash",
        contents="Hello there",
        config=types.GenerateContentConfig(response_logprobs=True, logprobs=3),
    )
    [candidate] = response.candidates or []
    result = candidate.logprobs_result
    assert result is not None
    chosen = result.chosen_candidates or []
    assert "".join(c.token or "" for c in chosen) == response.text
    for step, top in zip(chosen, result.top_candidates or [], strict=True):
        ranked = top.candidates or []
        assert len(ranked) == 3
        assert ranked[0].token == step.token
        logprobs = [c.log_probability or 0.0 for c in ranked]
        assert logprobs == sorted(logprobs, reverse=True)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"responseLogprobs": True, "logprobs": 21}, "must be in the range [0, 20]"),
        ({"logprobs": 2}, "only be set when response_logprobs is true"),
    ],
)
async def test_sim_refuses_logprobs_as_gemini_does(
    sim: RunningSimulator, config: dict[str, Any], fragment: str
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": config}
    status, text = await post(sim, "/v1beta/models/gemini-2.5-flash:generateContent", body)
    assert status == 400
    assert fragment in json.loads(text)["error"]["message"]


SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}


@pytest.mark.parametrize(
    ("model", "config", "fragment"),
    [
        (
            "gemini-2.0-flash",
            {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA},
            "JSON schema is not supported for this model",
        ),
        (
            "gemini-2.5-flash",
            {
                "responseMimeType": "application/json",
                "responseJsonSchema": SCHEMA,
                "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
            "cannot both be set",
        ),
    ],
)
async def test_sim_json_schema_rules(
    sim: RunningSimulator, model: str, config: dict[str, Any], fragment: str
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": config}
    status, text = await post(sim, f"/v1beta/models/{model}:generateContent", body)
    assert status == 400
    assert fragment in json.loads(text)["error"]["message"]


async def test_sim_json_schema_answer_follows_the_schema(sim: RunningSimulator) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA},
    }
    status, text = await post(sim, "/v1beta/models/gemini-2.5-flash:generateContent", body)
    assert status == 200
    answer = json.loads(text)["candidates"][0]["content"]["parts"][0]["text"]
    assert set(json.loads(answer)) == {"a"}
