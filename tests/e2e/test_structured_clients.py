"""The structured-output clients users bring, pointed at Stellara's chat completions (issue 18):
LangChain's `with_structured_output(method="json_schema")` and instructor's `JSON_SCHEMA` mode,
each asking OpenAI-, Anthropic- and Google-backed models for a pydantic object.

Both send `response_format: {type: json_schema, json_schema: {strict: true, ...}}` and parse
the answer's content; every provider must enforce it (OpenAI natively, Anthropic through the
forced answer tool, Gemini through its response schema), so a provider that only *asked* for
JSON would fail here: the simulator answers prose unless the schema reaches it in the
provider's own enforced form.
"""

from __future__ import annotations

import instructor
import openai
import pytest
from langchain_openai import ChatOpenAI

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway
from tests.conftest import upstream_requests as sim_requests
from tests.e2e.test_responses_agents import (
    PARIS_WEATHER,
    QUESTION,
    UPSTREAM_PATHS,
    Weather,
    two_providers,
)

MODELS = sorted(UPSTREAM_PATHS)


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(two_providers(sim.url))


# langchain-openai's stream hands the parsed object to a field the openai SDK types as None:
# a warning inside the two client libraries, whatever the server sent.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("model", MODELS)
async def test_langchain_json_schema_output_on_every_provider(
    gateway: RunningGateway, sim: RunningSimulator, model: str, streamed: bool
) -> None:
    chat = ChatOpenAI(
        model=model,
        base_url=gateway.base_url,
        api_key=USER_KEY,
        max_retries=0,
        streaming=streamed,
    )
    structured = chat.with_structured_output(Weather, method="json_schema", strict=True)
    if streamed:
        pieces = [piece async for piece in structured.astream(QUESTION)]
        assert pieces, "the stream yielded nothing"
        answer = pieces[-1]
    else:
        answer = await structured.ainvoke(QUESTION)
    assert answer == PARIS_WEATHER
    [upstream] = await sim_requests(sim)
    assert upstream["path"].startswith(UPSTREAM_PATHS[model])


@pytest.mark.parametrize("model", MODELS)
async def test_instructor_json_schema_mode_on_every_provider(
    gateway: RunningGateway, sim: RunningSimulator, model: str
) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        client = instructor.from_openai(sdk, mode=instructor.Mode.JSON_SCHEMA)
        answer = await client.chat.completions.create(
            model=model,
            response_model=Weather,
            max_retries=0,  # an answer that does not parse must fail the test, not be retried
            messages=[{"role": "user", "content": QUESTION}],
        )
    # instructor answers an instance of its own subclass of the model
    assert answer.model_dump() == PARIS_WEATHER.model_dump()
    [upstream] = await sim_requests(sim)
    assert upstream["path"].startswith(UPSTREAM_PATHS[model])
