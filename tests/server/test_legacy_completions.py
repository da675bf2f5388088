"""Legacy `POST /v1/completions` with the official `openai` SDK (`client.completions`),
answered through chat models: the prompt goes upstream as a user message, the answer comes
back as a `text_completion`, whole or streamed; what chat models cannot do is a 400 naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import LIMITED_KEY, USER_KEY, RunningGateway, upstream_requests


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


async def sent_body(sim: RunningSimulator) -> dict[str, Any]:
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/v1/chat/completions"
    body: dict[str, Any] = sent["body"]
    return body


async def test_a_prompt_is_answered_as_a_text_completion(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    raw = await client.completions.with_raw_response.create(
        model="test-model", prompt="Say this is a test", temperature=0.5, stop=["\n\n"], seed=7
    )
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == "gpt-4o-mini"  # the provider model, as the chat route says
    [choice] = completion.choices
    assert choice.text.startswith("Say this is a test")  # the simulator echoes the user turn
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-stellara-provider"] == "sim"
    body = await sent_body(sim)
    assert body["messages"] == [{"role": "user", "content": "Say this is a test"}]
    assert (body["temperature"], body["stop"], body["seed"]) == (0.5, ["\n\n"], 7)
    assert "prompt" not in body
    assert "max_tokens" not in body  # no 16-token default: the model answers at its length


async def test_a_list_of_one_prompt_and_several_choices(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await client.completions.create(
        model="test-model", prompt=["Name two colours"], n=2, best_of=2, max_tokens=3
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.finish_reason == "length" for c in completion.choices)
    body = await sent_body(sim)
    assert (body["n"], body["max_tokens"]) == (2, 3)
    assert "best_of" not in body


async def test_echo_puts_the_prompt_first(client: openai.AsyncOpenAI) -> None:
    prompt = "Once upon a time"
    plain = await client.completions.create(model="test-model", prompt=prompt)
    echoed = await client.completions.create(model="test-model", prompt=prompt, echo=True)
    assert echoed.choices[0].text == prompt + plain.choices[0].text
    stream = await client.completions.create(
        model="test-model", prompt=prompt, echo=True, stream=True
    )
    streamed = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
    assert streamed == echoed.choices[0].text


async def test_stream_matches_the_whole_answer(client: openai.AsyncOpenAI) -> None:
    whole = await client.completions.create(model="test-model", prompt="Stream me a story")
    stream = await client.completions.create(
        model="test-model",
        prompt="Stream me a story",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.object == "text_completion" for chunk in chunks)
    assert all(chunk.id.startswith("cmpl-") for chunk in chunks)
    *text_chunks, usage_chunk = chunks
    assert "".join(c.choices[0].text for c in text_chunks) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in text_chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in text_chunks[:-1])
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


async def test_logprobs_ask_the_chat_model_for_them(
    client: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    completion = await client.completions.create(model="test-model", prompt="Hi", logprobs=3)
    body = await sent_body(sim)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    # The simulator, like many OpenAI-compatible servers, gives none: null, as OpenAI's shape.
    assert completion.choices[0].logprobs is None


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"prompt": "x", "suffix": "the end."}, "suffix"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "best_of": 3, "n": 2}, "best_of"),
        ({"prompt": ["first", "second"]}, "prompt"),
        ({"prompt": [1212, 318]}, "prompt"),
        ({"prompt": [[1212, 318]]}, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "echo": True, "logprobs": 1}, "logprobs"),
        ({"prompt": "x", "logprobs": 6}, "logprobs"),
    ],
)
async def test_what_chat_models_cannot_do_is_refused_by_name(
    client: openai.AsyncOpenAI, sim: RunningSimulator, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model="test-model", **params)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert await upstream_requests(sim) == []


async def test_the_key_must_be_allowed_the_model(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=LIMITED_KEY, max_retries=0
    ) as bob:
        with pytest.raises(openai.PermissionDeniedError):
            await bob.completions.create(model="test-model", prompt="x")
        assert (await bob.completions.create(model="other-model", prompt="x")).choices
