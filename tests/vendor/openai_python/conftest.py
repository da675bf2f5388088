"""The `client` and `async_client` fixtures openai-python's tests ask for, pointed at the gateway.

Like the SDK's own conftest: the parameter `False` turns strict response validation off, and
`{"http_client": "aiohttp"}` sends through the aiohttp transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from openai import AsyncOpenAI, DefaultAioHttpClient, OpenAI

from tests.vendor.conftest import OPENAI_SDK_KEY


@pytest.fixture
def client(request: pytest.FixtureRequest, sdk_gateway_url: str) -> Iterator[OpenAI]:
    strict = getattr(request, "param", True)
    with OpenAI(
        base_url=f"{sdk_gateway_url}/v1",
        api_key=OPENAI_SDK_KEY,
        _strict_response_validation=strict,
    ) as sdk:
        yield sdk


@pytest.fixture
async def async_client(
    request: pytest.FixtureRequest, sdk_gateway_url: str
) -> AsyncIterator[AsyncOpenAI]:
    param = getattr(request, "param", True)
    is_aiohttp = isinstance(param, dict) and param.get("http_client") == "aiohttp"
    async with AsyncOpenAI(
        base_url=f"{sdk_gateway_url}/v1",
        api_key=OPENAI_SDK_KEY,
        _strict_response_validation=param if isinstance(param, bool) else True,
        http_client=DefaultAioHttpClient() if is_aiohttp else None,
    ) as sdk:
        yield sdk
