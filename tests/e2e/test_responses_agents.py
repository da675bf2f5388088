"""The agent frameworks users bring, pointed at Stellara's `/v1/responses` (issue 17): the OpenAI
Agents SDK in its default setup (a Responses model) and pydantic-ai's `OpenAIResponsesModel`,
each running a tool loop through the gateway to OpenAI-, Anthropic- and Google-type providers;
and both asking for structured output (the Agents SDK's `output_type`, pydantic-ai's
`NativeOutput` over chat completions and Responses), which every provider must enforce.

The simulator answers deterministically: with tools and the user's message last it calls a tool
(the first one), after a tool result it answers text: one tool call per user message. So the
Agents SDK test is a two-turn conversation, continued the SDK's way (`to_input_list()` and
`last_agent`): the triage agent's one tool is its handoff, which the model calls on the first
message, and the forecaster it hands to answers; the follow-up question goes to the forecaster,
which calls its function tool and answers with the result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import agents
import openai
import pytest
from agents.models import _openai_shared
from openai.types.responses import EasyInputMessageParam, ResponseFunctionToolCall
from pydantic import BaseModel
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, USER_KEY, RunningGateway, StartGateway
from tests.conftest import upstream_requests as sim_requests

QUESTION = "What is the weather in Paris"
# The start of each model's upstream path: the gateway answers /v1/responses by translating to
# the provider's own chat API, whatever the provider.
UPSTREAM_PATHS = {
    "gpt": "/v1/chat/completions",
    "claude": "/v1/messages",
    "gem": "/v1beta/models/gemini-2.0-flash:",  # generateContent or streamGenerateContent
}


def two_providers(sim_url: str) -> dict[str, Any]:
    """`gpt`, `claude` and `gem` on an OpenAI-, Anthropic- and Google-type provider, all
    answered by the one simulator."""
    return {
        "server": {"master_key": MASTER_KEY},
        "providers": [
            {"id": "oai", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY},
            {"id": "ant", "type": "anthropic", "base_url": sim_url, "api_key": UPSTREAM_KEY},
            {"id": "goo", "type": "google", "base_url": sim_url, "api_key": UPSTREAM_KEY},
        ],
        "models": [
            {"name": "gpt", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
            {"name": "claude", "targets": [{"provider": "ant", "model": "claude-sonnet-5-5"}]},
            {"name": "gem", "targets": [{"provider": "goo", "model": "gemini-2.0-flash"}]},
        ],
        "keys": [{"key": USER_KEY, "user": "alice"}],
    }


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(two_providers(sim.url))


class Requests:
    """The paths the client asked the gateway for, in order (an httpx request hook)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def record(self, request: Any) -> None:
        self.paths.append(f"{request.method} {request.url.path}")


@pytest.fixture
def client_requests() -> Requests:
    return Requests()


@pytest.fixture
async def http_client(client_requests: Requests) -> AsyncIterator[openai.DefaultAsyncHttpxClient]:
    """The HTTP client under the OpenAI SDK, recording what it asks for."""
    hooks = {"request": [client_requests.record]}
    async with openai.DefaultAsyncHttpxClient(event_hooks=hooks) as http:
        yield http


@pytest.fixture
async def client(
    gateway: RunningGateway, http_client: openai.DefaultAsyncHttpxClient
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0, http_client=http_client
    ) as sdk:
        yield sdk


@pytest.fixture
def agents_default_client(
    client: openai.AsyncOpenAI, monkeypatch: pytest.MonkeyPatch
) -> openai.AsyncOpenAI:
    """The Agents SDK's documented setup for an OpenAI-compatible endpoint, undone afterwards;
    tracing off, since it would upload traces to OpenAI."""
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    monkeypatch.setattr(_openai_shared, "_default_openai_client", None)
    monkeypatch.setattr(_openai_shared, "_use_responses_by_default", True)
    agents.set_tracing_disabled(True)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_default_openai_api("responses")
    return client


async def assert_went_through_gateway(
    sim: RunningSimulator, client_requests: Requests, model: str, tool_result: str
) -> list[dict[str, Any]]:
    """Every model call was a `POST /v1/responses` to the gateway, each became one request to
    the provider's own API, and the tool's result reached the provider. Returns the upstream
    requests."""
    upstream = await sim_requests(sim)
    assert client_requests.paths
    assert set(client_requests.paths) == {"POST /v1/responses"}
    assert len(upstream) == len(client_requests.paths)
    assert all(request["path"].startswith(UPSTREAM_PATHS[model]) for request in upstream)
    assert tool_result in str(upstream[-1]["body"])
    return upstream


async def run_agent(
    agent: agents.Agent[Any], given: str | list[Any], *, streamed: bool
) -> agents.RunResult | agents.RunResultStreaming:
    """`Runner.run`, or `Runner.run_streamed` with its events drained (the SSE path)."""
    if not streamed:
        return await agents.Runner.run(agent, given)
    result = agents.Runner.run_streamed(agent, given)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("model", sorted(UPSTREAM_PATHS))
async def test_agents_sdk_runs_a_handoff_and_a_function_tool(
    gateway: RunningGateway,
    sim: RunningSimulator,
    agents_default_client: openai.AsyncOpenAI,
    client_requests: Requests,
    model: str,
    streamed: bool,
) -> None:
    cities: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        cities.append(city)
        return f"Sunny and 21C in {city}"

    forecaster = agents.Agent(
        name="Forecaster",
        instructions="Answer weather questions; look the weather up with get_weather.",
        model=model,
        tools=[get_weather],
    )
    triage = agents.Agent(
        name="Triage",
        instructions="Hand weather questions to the Forecaster.",
        model=model,
        handoffs=[forecaster],
    )

    first = await run_agent(triage, "I have a weather question.", streamed=streamed)

    assert first.last_agent is forecaster
    assert function_calls(first) == [["transfer_to_forecaster"], []]
    assert isinstance(first.final_output, str)
    assert first.final_output
    assert cities == []

    question: EasyInputMessageParam = {"role": "user", "content": QUESTION}
    follow_up = [*first.to_input_list(), question]
    second = await run_agent(first.last_agent, follow_up, streamed=streamed)

    assert cities == ["Paris"]
    assert second.last_agent is forecaster
    assert function_calls(second) == [["get_weather"], []]
    assert isinstance(second.final_output, str)
    assert second.final_output
    upstream = await assert_went_through_gateway(
        sim, client_requests, model, "Sunny and 21C in Paris"
    )
    assert len(upstream) == 4


def function_calls(result: agents.RunResult | agents.RunResultStreaming) -> list[list[str]]:
    """The functions each of the run's model answers called, in order."""
    return [
        [item.name for item in response.output if isinstance(item, ResponseFunctionToolCall)]
        for response in result.raw_responses
    ]


@pytest.mark.parametrize("model", sorted(UPSTREAM_PATHS))
async def test_pydantic_ai_responses_model_runs_a_tool_loop(
    gateway: RunningGateway,
    sim: RunningSimulator,
    http_client: openai.DefaultAsyncHttpxClient,
    client_requests: Requests,
    model: str,
) -> None:
    provider = OpenAIProvider(base_url=gateway.base_url, api_key=USER_KEY, http_client=http_client)
    responses_model = OpenAIResponsesModel(model, provider=provider)
    agent = PydanticAgent(responses_model, instructions="Answer weather questions.")
    cities: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        cities.append(city)
        return f"Rainy and 12C in {city}"

    result = await agent.run(QUESTION)

    assert cities == ["Paris"]
    assert isinstance(result.output, str)
    assert result.output
    upstream = await assert_went_through_gateway(
        sim, client_requests, model, "Rainy and 12C in Paris"
    )
    assert len(upstream) == 2


class Weather(BaseModel):
    city: str
    degrees: int


PARIS_WEATHER = Weather(city="Paris", degrees=1)  # what the simulator fills the schema with


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("model", sorted(UPSTREAM_PATHS))
async def test_agents_sdk_output_type_is_structured_on_every_provider(
    agents_default_client: openai.AsyncOpenAI,
    sim: RunningSimulator,
    model: str,
    streamed: bool,
) -> None:
    agent = agents.Agent(name="Forecaster", model=model, output_type=Weather)
    result = await run_agent(agent, QUESTION, streamed=streamed)
    assert result.final_output == PARIS_WEATHER
    [upstream] = await sim_requests(sim)
    assert upstream["path"].startswith(UPSTREAM_PATHS[model])


@pytest.mark.parametrize("api", [OpenAIChatModel, OpenAIResponsesModel], ids=["chat", "responses"])
@pytest.mark.parametrize("model", sorted(UPSTREAM_PATHS))
async def test_pydantic_ai_native_output_is_structured_on_every_provider(
    gateway: RunningGateway,
    http_client: openai.DefaultAsyncHttpxClient,
    model: str,
    api: type[OpenAIChatModel | OpenAIResponsesModel],
) -> None:
    provider = OpenAIProvider(base_url=gateway.base_url, api_key=USER_KEY, http_client=http_client)
    agent = PydanticAgent(api(model, provider=provider), output_type=NativeOutput(Weather))
    result = await agent.run(QUESTION)
    assert result.output == PARIS_WEATHER
