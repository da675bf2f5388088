"""The `client` and `async_client` fixtures anthropic-sdk-python's tests ask for, pointed at
the gateway.

Like the SDK's own conftest: the parameter `False` turns strict response validation off, and
`{"http_client": "aiohttp"}` sends through the aiohttp transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from anthropic import Anthropic, AsyncAnthropic, DefaultAioHttpClient

from tests.vendor.conftest import ANTHROPIC_SDK_KEY


@pytest.fixture
def client(request: pytest.FixtureRequest, sdk_gateway_url: str) -> Iterator[Anthropic]:
    strict = getattr(request, "param", True)
    with Anthropic(
        base_url=sdk_gateway_url, api_key=ANTHROPIC_SDK_KEY, _strict_response_validation=strict
    ) as sdk:
        yield sdk


@pytest.fixture
async def async_client(
    request: pytest.FixtureRequest, sdk_gateway_url: str
) -> AsyncIterator[AsyncAnthropic]:
    param = getattr(request, "param", True)
    is_aiohttp = isinstance(param, dict) and param.get("http_client") == "aiohttp"
    async with AsyncAnthropic(
        base_url=sdk_gateway_url,
        api_key=ANTHROPIC_SDK_KEY,
        _strict_response_validation=param if isinstance(param, bool) else True,
        http_client=DefaultAioHttpClient() if is_aiohttp else None,
    ) as sdk:
        yield sdk
