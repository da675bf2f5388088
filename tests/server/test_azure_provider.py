"""openai SDK → Stellara → Azure OpenAI (simulated), and the AzureOpenAI SDK → simulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, set_faults, upstream_requests

AZURE_KEY = "azure-key-0123456789abcdef"


def azure_config(sim_url: str) -> dict[str, Any]:
    return {
        "providers": [
            {
                "id": "azure-eu",
                "type": "azure",
                "base_url": sim_url,
                "api_key": AZURE_KEY,
                "api_version": "2024-10-21",
                "deployments": {"gpt-4o": "prod-gpt4o"},
            }
        ],
        "models": [
            {"name": "smart", "targets": [{"provider": "azure-eu", "model": "gpt-4o"}]},
            {"name": "mini", "targets": [{"provider": "azure-eu", "model": "gpt-4o-mini"}]},
        ],
        "keys": [{"key": USER_KEY, "user": "alice"}],
    }


@pytest.fixture
async def azure_gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(azure_config(sim.url))


async def test_azure_request_uses_deployment_url_and_api_key(
    azure_gateway: RunningGateway, sim: RunningSimulator
) -> None:
    async with openai.AsyncOpenAI(base_url=azure_gateway.base_url, api_key=USER_KEY) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": "hello azure"}]
        )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-stellara-provider"] == "azure-eu"
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert sent["headers"]["api-key"] == AZURE_KEY
    assert "authorization" not in sent["headers"]
    assert sent["body"]["model"] == "prod-gpt4o"


async def test_azure_model_without_deployment_entry_uses_its_name(
    azure_gateway: RunningGateway, sim: RunningSimulator
) -> None:
    async with openai.AsyncOpenAI(base_url=azure_gateway.base_url, api_key=USER_KEY) as sdk:
        stream = await sdk.chat.completions.create(
            model="mini", messages=[{"role": "user", "content": "stream it"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert sent["body"]["stream_options"] == {"include_usage": True}


async def test_azure_content_filter_is_400_content_filter(
    azure_gateway: RunningGateway, sim: RunningSimulator
) -> None:
    body = {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
        }
    }
    await set_faults(sim, {"kind": "status", "status": 400, "body": body})
    async with openai.AsyncOpenAI(
        base_url=azure_gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "x"}]
            )
    assert caught.value.code == "content_filter"
    assert "content management policy" in caught.value.message


async def test_simulator_speaks_azure_to_the_azure_sdk(sim: RunningSimulator) -> None:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=sim.url, api_key=AZURE_KEY, api_version="2024-10-21"
    ) as sdk:
        completion = await sdk.chat.completions.create(
            model="prod-gpt4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert completion.choices[0].message.content
    [sent] = await upstream_requests(sim)
    assert sent["path"] == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent["headers"]["api-key"] == AZURE_KEY


async def test_simulator_refuses_azure_request_without_api_version(sim: RunningSimulator) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{sim.url}/openai/deployments/x", api_key="k", max_retries=0
    ) as sdk:
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "a"}]
            )
