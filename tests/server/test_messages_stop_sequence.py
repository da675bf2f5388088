"""Which stop sequence ended an answer, through `/v1/messages` (and `/v1/chat/completions`), for
an Anthropic-backed model (which says) and an OpenAI-backed one (which does not)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam

from stellara.sim import RunningSimulator
from tests.conftest import UPSTREAM_KEY, USER_KEY, RunningGateway, StartGateway

HELLO: list[MessageParam] = [{"role": "user", "content": "Hello there Claude"}]
STOP = ["nothing-like-this", "Claude"]


def two_backends(sim_url: str) -> dict[str, Any]:
    return {
        "providers": [
            {"id": "ant", "type": "anthropic", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {"id": "oai", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY},
        ],
        "models": [
            {"name": "claude", "targets": [{"provider": "ant", "model": "claude-sonnet-5-5"}]},
            {"name": "gpt", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
        ],
        "keys": [{"key": USER_KEY, "user": "alice"}],
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(two_backends(sim.url))


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        yield sdk


# The Anthropic simulator says which sequence matched; OpenAI's API (and so its simulator) only
# says "stop", which the gateway cannot tell from a natural end.
EXPECTED = {"claude": ("stop_sequence", "Claude"), "gpt": ("end_turn", None)}


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_messages_stop_sequence_is_reported_when_the_provider_says(
    client: anthropic.AsyncAnthropic, model: str
) -> None:
    message = await client.messages.create(
        model=model, max_tokens=100, messages=HELLO, stop_sequences=STOP
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello there "
    assert (message.stop_reason, message.stop_sequence) == EXPECTED[model]


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_messages_stream_stop_sequence_is_reported_when_the_provider_says(
    client: anthropic.AsyncAnthropic, model: str
) -> None:
    async with client.messages.stream(
        model=model, max_tokens=100, messages=HELLO, stop_sequences=STOP
    ) as stream:
        deltas = [event async for event in stream if event.type == "message_delta"]
        message = await stream.get_final_message()
    [delta] = deltas
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == EXPECTED[model]
    assert (message.stop_reason, message.stop_sequence) == EXPECTED[model]


async def test_messages_without_a_stop_hit_end_the_turn(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="claude", max_tokens=100, messages=HELLO, stop_sequences=["nothing-like-this"]
    )
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_completion_choice_names_anthropics_stop_sequence(
    gateway: RunningGateway, stream: bool
) -> None:
    body = {"model": "claude", "messages": HELLO, "stop": STOP, "stream": stream}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {USER_KEY}"},
        ) as answer,
    ):
        assert answer.status == 200
        text = await answer.text()
    if stream:
        lines = [line.removeprefix("data: ") for line in text.splitlines() if line]
        choices = [c for line in lines[:-1] for c in json.loads(line)["choices"]]
    else:
        choices = json.loads(text)["choices"]
    finish = [c for c in choices if c.get("finish_reason")]
    assert [(c["finish_reason"], c["stop_reason"]) for c in finish] == [("stop", "Claude")]
    assert all("stop_reason" not in c for c in choices if not c.get("finish_reason"))
