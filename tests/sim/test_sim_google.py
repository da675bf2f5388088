"""The simulator's Gemini dialect, driven by Google's own SDK (`google-genai`) and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from stellara.sim import RunningSimulator, SimConfig, start_simulator

# google-genai subclasses aiohttp's ClientSession, which aiohttp warns about; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)

KEY = "AIza-sim-test-key"
MODEL = "gemini-2.0-flash"
GENERATE = f"/v1beta/models/{MODEL}:generateContent"
STREAM = f"/v1beta/models/{MODEL}:streamGenerateContent"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)
NO_AUTO_CALLS = types.AutomaticFunctionCallingConfig(disable=True)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(SimConfig(api_key=KEY)) as simulator:
        yield simulator


def sdk(sim: RunningSimulator, key: str = KEY) -> genai.Client:
    options = types.HttpOptions(base_url=sim.url, api_version="v1beta")
    return genai.Client(api_key=key, http_options=options)


async def post(
    sim: RunningSimulator, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim.url}{path}",
            json=body,
            headers={"x-goog-api-key": KEY} if headers is None else headers,
        ) as response,
    ):
        return response.status, await response.text()


HELLO: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "Hello there, Gemini"}]}]}


async def test_sim_google_generate_content_answers_sdk(sim: RunningSimulator) -> None:
    response = await sdk(sim).aio.models.generate_content(
        model=MODEL,
        contents="Hello there, Gemini",
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert response.text is not None
    assert response.text.startswith("Hello there, Gemini")
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert usage.candidates_token_count == 24
    assert usage.total_token_count == (usage.prompt_token_count or 0) + 24
    assert response.model_version == MODEL
    assert response.response_id


async def test_sim_google_max_output_tokens_is_max_tokens(sim: RunningSimulator) -> None:
    response = await sdk(sim).aio.models.generate_content(
        model=MODEL, contents="Hello", config=types.GenerateContentConfig(max_output_tokens=5)
    )
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 5


async def test_sim_google_stop_sequence_cuts_answer(sim: RunningSimulator) -> None:
    full = await sdk(sim).aio.models.generate_content(model=MODEL, contents="alpha beta gamma")
    cut = await sdk(sim).aio.models.generate_content(
        model=MODEL,
        contents="alpha beta gamma",
        config=types.GenerateContentConfig(stop_sequences=[" gamma"]),
    )
    assert cut.text == "alpha beta"
    assert full.text is not None
    assert full.text.startswith("alpha beta gamma")


async def test_sim_google_candidate_count_gives_candidates(sim: RunningSimulator) -> None:
    response = await sdk(sim).aio.models.generate_content(
        model=MODEL, contents="Hi", config=types.GenerateContentConfig(candidate_count=2)
    )
    assert response.candidates is not None
    assert [c.index for c in response.candidates] == [0, 1]


async def test_sim_google_stream_matches_whole_answer(sim: RunningSimulator) -> None:
    client = sdk(sim)
    whole = await client.aio.models.generate_content(model=MODEL, contents="Hello stream")
    chunks = [
        c
        async for c in await client.aio.models.generate_content_stream(
            model=MODEL, contents="Hello stream"
        )
    ]
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert len(chunks) == 24
    finishes = [c.candidates[0].finish_reason for c in chunks if c.candidates]
    assert finishes[-1] == types.FinishReason.STOP
    assert all(f is None for f in finishes[:-1])
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.candidates_token_count == 24


async def test_sim_google_function_call_round_trip(sim: RunningSimulator) -> None:
    client = sdk(sim)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=NO_AUTO_CALLS,
    )
    asked = types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
    response = await client.aio.models.generate_content(
        model=MODEL, contents=[asked], config=config
    )
    assert response.function_calls is not None
    [call] = response.function_calls
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
    answered = types.Part.from_function_response(name="get_weather", response={"temp": 21})
    follow_up = await client.aio.models.generate_content(
        model=MODEL,
        contents=[
            asked,
            types.Content(role="model", parts=[types.Part(function_call=call)]),
            types.Content(role="user", parts=[answered]),
        ],
        config=config,
    )
    assert follow_up.text is not None
    assert follow_up.text.startswith('Tool result: {"temp":21}')


async def test_sim_google_function_calling_none_answers_text(sim: RunningSimulator) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.NONE
            )
        ),
        automatic_function_calling=NO_AUTO_CALLS,
    )
    response = await sdk(sim).aio.models.generate_content(
        model=MODEL, contents="Paris?", config=config
    )
    assert response.function_calls is None
    assert response.text


async def test_sim_google_json_mode_with_schema(sim: RunningSimulator) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=types.Schema(
            type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
        ),
    )
    response = await sdk(sim).aio.models.generate_content(
        model=MODEL, contents="Capital of France: Paris", config=config
    )
    assert response.text is not None
    assert json.loads(response.text) == {"city": "Paris"}


async def test_sim_google_wrong_key_is_400_api_key_invalid(sim: RunningSimulator) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        await sdk(sim, key="wrong").aio.models.generate_content(model=MODEL, contents="Hi")
    assert caught.value.code == 400
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


async def test_sim_google_missing_key_is_403(sim: RunningSimulator) -> None:
    status, text = await post(sim, GENERATE, HELLO, headers={})
    assert status == 403
    assert json.loads(text)["error"]["status"] == "PERMISSION_DENIED"


async def test_sim_google_key_query_parameter_is_accepted(sim: RunningSimulator) -> None:
    status, _ = await post(sim, f"{GENERATE}?key={KEY}", HELLO, headers={})
    assert status == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**HELLO, "temperatur": 1}, 'Unknown name "temperatur"'),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        (
            {
                **HELLO,
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"a": {"type": "string"}},
                                    "additionalProperties": False,
                                },
                            }
                        ]
                    }
                ],
            },
            'Unknown name "additionalProperties"',
        ),
        (
            {
                **HELLO,
                "tools": [
                    {"functionDeclarations": [{"name": "f", "parameters": {"type": "object"}}]}
                ],
            },
            "should be non-empty for OBJECT type",
        ),
    ],
)
async def test_sim_google_refuses_what_gemini_refuses(
    sim: RunningSimulator, body: dict[str, Any], fragment: str
) -> None:
    status, text = await post(sim, GENERATE, body)
    assert status == 400
    error = json.loads(text)["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert fragment in error["message"]


async def test_sim_google_sse_framing_is_crlf(sim: RunningSimulator) -> None:
    status, text = await post(sim, f"{STREAM}?alt=sse", HELLO)
    assert status == 200
    events = [e for e in text.split("\r\n\r\n") if e]
    assert all(e.startswith("data: ") for e in events)
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["candidatesTokenCount"] == 24


async def test_sim_google_stream_without_alt_sse_is_json_array(sim: RunningSimulator) -> None:
    status, text = await post(sim, STREAM, HELLO)
    assert status == 200
    fragments = json.loads(text)
    assert len(fragments) == 24
    assert fragments[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_sim_google_cut_stream_has_no_finish_reason(sim: RunningSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        fault = {"kind": "cut_stream", "after_chunks": 3}
        async with session.post(f"{sim.url}/_sim/faults", json={"faults": [fault]}) as r:
            assert r.status == 200
        async with session.post(
            f"{sim.url}{STREAM}?alt=sse", json=HELLO, headers={"x-goog-api-key": KEY}
        ) as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
            raw = response.content._buffer  # what arrived before the cut
    events = [json.loads(b[6:]) for chunk in raw for b in chunk.split(b"\r\n\r\n") if b]
    assert len(events) <= 3
    assert all("finishReason" not in e["candidates"][0] for e in events)


async def test_sim_google_fault_error_body_is_google_format(sim: RunningSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        fault = {"kind": "status", "status": 429, "path": ":generateContent"}
        async with session.post(f"{sim.url}/_sim/faults", json={"faults": [fault]}) as r:
            assert r.status == 200
    status, text = await post(sim, GENERATE, HELLO)
    assert status == 429
    error = json.loads(text)["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
    ]


async def test_sim_google_openai_paths_still_served_by_openai_dialect(
    sim: RunningSimulator,
) -> None:
    status, text = await post(
        sim,
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert status == 200
    assert json.loads(text)["object"] == "chat.completion"
