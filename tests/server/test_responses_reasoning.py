"""openai SDK → Stellara `/v1/responses` → Anthropic (simulated) with `reasoning.effort`: Claude's
thinking comes back as `reasoning` items (summary, and `encrypted_content` when included),
streamed with the reasoning summary events, and handed back as input items it keeps a tool loop
with thinking working. Every answer and event is checked against OpenAI's published schemas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, upstream_requests
from tests.server.test_responses_api import WEATHER, four_providers, raw_stream
from tests.specs.openai_schema import validate

ENCRYPTED: Any = ["reasoning.encrypted_content"]
QUESTION = "What is the weather in Paris?"


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(four_providers(sim.url))


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as client:
        yield client


async def test_reasoning_item_carries_the_thinking_and_its_signature_when_included(
    sdk: openai.AsyncOpenAI,
) -> None:
    response = await sdk.responses.create(
        model="claude", input=QUESTION, reasoning={"effort": "low"}, include=ENCRYPTED
    )
    validate("Response", response.model_dump(mode="json", exclude_unset=True))
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    [summary] = reasoning.summary
    assert summary.text.startswith("The user asks about")
    assert reasoning.encrypted_content
    assert reasoning.encrypted_content.startswith("thinking.")
    assert message.type == "message"
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    plain = await sdk.responses.create(model="claude", input=QUESTION, reasoning={"effort": "low"})
    assert plain.output[0].type == "reasoning"
    assert plain.output[0].encrypted_content is None


async def test_stream_sends_the_reasoning_summary_events_in_order(
    gateway: RunningGateway,
) -> None:
    body = {
        "model": "claude",
        "input": QUESTION,
        "reasoning": {"effort": "low"},
        "include": ENCRYPTED,
    }
    events = await raw_stream(gateway, body)
    kinds = [event["type"] for event in events]
    reasoning_kinds = [kind for kind in kinds if "reasoning" in kind]
    assert reasoning_kinds[0] == "response.reasoning_summary_part.added"
    assert reasoning_kinds[-2:] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    assert "response.reasoning_summary_text.delta" in reasoning_kinds
    deltas = "".join(e["delta"] for e in events if e["type"].endswith("summary_text.delta"))
    [done_text] = [e["text"] for e in events if e["type"].endswith("summary_text.done")]
    assert deltas == done_text
    first_done = next(e for e in events if e["type"] == "response.output_item.done")
    assert first_done["item"]["type"] == "reasoning"
    assert first_done["item"]["encrypted_content"].startswith("thinking.")
    assert kinds.index("response.reasoning_summary_part.done") < kinds.index(
        "response.output_text.delta"
    )
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": done_text}]


async def test_tool_loop_hands_the_reasoning_item_back(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    first = await sdk.responses.create(
        model="claude",
        input=QUESTION,
        tools=[WEATHER],
        reasoning={"effort": "low"},
        include=ENCRYPTED,
        store=False,
    )
    assert [item.type for item in first.output] == ["reasoning", "message", "function_call"]
    call = first.output[-1]
    assert call.type == "function_call"
    items: Any = [
        {"role": "user", "content": QUESTION},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
    ]
    second = await sdk.responses.create(
        model="claude",
        input=items,
        tools=[WEATHER],
        reasoning={"effort": "low"},
        include=ENCRYPTED,
        store=False,
    )
    assert second.status == "completed"
    sent = [request["body"] for request in await upstream_requests(sim)]
    assistant = sent[1]["messages"][1]["content"]
    assert [block["type"] for block in assistant] == ["thinking", "text", "tool_use"]
    reasoning = first.output[0]
    assert reasoning.type == "reasoning"
    assert assistant[0]["thinking"] == reasoning.summary[0].text


async def test_previous_response_id_carries_the_thinking_over(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    first = await sdk.responses.create(
        model="claude",
        input=QUESTION,
        tools=[WEATHER],
        reasoning={"effort": "low"},
        include=ENCRYPTED,
    )
    call = first.output[-1]
    assert call.type == "function_call"
    second = await sdk.responses.create(
        model="claude",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}],
        tools=[WEATHER],
        reasoning={"effort": "low"},
        include=ENCRYPTED,
    )
    assert second.status == "completed"
