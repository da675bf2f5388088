"""Bad input gets the documented 4xx with an OpenAI error body; none gives a 500."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from stellara.events import RequestFailed
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import LIMITED_KEY, USER_KEY, RunningGateway, upstream_requests

AUTH = {"Authorization": f"Bearer {USER_KEY}"}
HELLO: Any = [{"role": "user", "content": "hello"}]  # SDK TypedDicts: typed loosely


async def post(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    body: bytes | str,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        data=body,
        headers=AUTH if headers is None else headers,
    ) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        return response.status, await response.json()


def assert_openai_error(body: dict[str, Any], error_type: str) -> dict[str, Any]:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"model": "test-model", "messages": [', None),
        ("not json at all", None),
        ('["a", "list"]', None),
        ('{"messages": [{"role": "user", "content": "x"}]}', None),
        ('{"model": "test-model"}', None),
        ('{"model": "test-model", "messages": []}', "messages"),
        ('{"model": "test-model", "messages": "hello"}', "messages"),
        ('{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "model"),
        ('{"model": "test-model", "messages": [{"role": "wizard", "content": "x"}]}', None),
        ('{"model": "test-model", "messages": [{"role": "user", "content": 7}]}', None),
        ('{"model": "test-model", "messages": [{"role": "user"}]}', None),
        (
            '{"model": "test-model", "messages": [{"role": "user", "content": "x"}], '
            '"temperature": 9}',
            "temperature",
        ),
        (
            '{"model": "test-model", "messages": [{"role": "user", "content": "x"}], '
            '"stream": "yes"}',
            "stream",
        ),
        (
            '{"model": "test-model", "messages": [{"role": "user", "content": "x"}], '
            '"tools": [{"type": "function"}]}',
            None,
        ),
        (b'{"model": "\xff\xfe"}', None),
    ],
)
async def test_invalid_body_is_400_with_openai_error(
    gateway: RunningGateway, http: aiohttp.ClientSession, body: str, param: str | None
) -> None:
    status, payload = await post(http, gateway, body)
    assert status == 400
    error = assert_openai_error(payload, "invalid_request_error")
    if param is not None:
        assert error["param"] == param


async def test_invalid_body_never_reaches_provider(
    gateway: RunningGateway, http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    await post(http, gateway, '{"model": "test-model", "messages": "nope"}')
    assert await upstream_requests(sim) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-123"},
        {"Authorization": "Basic abc"},
        {"x-api-key": "nope"},
    ],
)
async def test_missing_or_wrong_key_is_401(
    gateway: RunningGateway, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    body = '{"model": "test-model", "messages": [{"role": "user", "content": "x"}]}'
    status, payload = await post(http, gateway, body, headers)
    assert status == 401
    assert assert_openai_error(payload, "authentication_error")["code"] == "invalid_api_key"


async def test_x_api_key_header_authenticates(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = '{"model": "test-model", "messages": [{"role": "user", "content": "x"}]}'
    status, payload = await post(http, gateway, body, {"x-api-key": USER_KEY})
    assert status == 200
    assert payload["object"] == "chat.completion"


async def test_unknown_model_is_404(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.chat.completions.create(model="no-such-model", messages=HELLO)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


async def test_model_not_allowed_for_key_is_403(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=LIMITED_KEY, max_retries=0
    ) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await sdk.chat.completions.create(model="test-model", messages=HELLO)
    assert caught.value.status_code == 403


async def test_sdk_sees_bad_key_as_authentication_error(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key="sk-wrong", max_retries=0
    ) as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.chat.completions.create(model="test-model", messages=HELLO)


async def test_oversized_body_is_413(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    big = "x" * (70 * 1024)  # the test config allows 64 KiB
    body = f'{{"model": "test-model", "messages": [{{"role": "user", "content": "{big}"}}]}}'
    status, payload = await post(http, gateway, body)
    assert status == 413
    assert assert_openai_error(payload, "invalid_request_error")["code"] == "payload_too_large"


async def test_oversized_chunked_body_is_413(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(80):
            yield b"x" * 1024

    async with http.post(
        f"{gateway.base_url}/chat/completions", data=chunks(), headers=AUTH
    ) as response:
        assert response.status == 413
        assert_openai_error(await response.json(), "invalid_request_error")


async def test_wrong_method_is_405_json(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.base_url}/chat/completions", headers=AUTH) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert_openai_error(await response.json(), "invalid_request_error")


async def test_unknown_route_is_404_json(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{gateway.base_url}/nowhere", headers=AUTH) as response:
        assert response.status == 404
        assert_openai_error(await response.json(), "invalid_request_error")


async def test_every_error_carries_request_id(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{gateway.base_url}/chat/completions", data="{") as response:
        assert response.status == 401
        assert response.headers["x-stellara-request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "test-model", "messages": [{"role": "user", "content": "x"}]},
        ),
        (
            "/v1/messages",
            {
                "model": "test-model",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
        ),
        (
            "/ai-orchestration/generate",
            {"model": "test-model", "messages": [{"role": "user", "content": "x"}]},
        ),
    ],
)
async def test_a_bug_answers_500_and_still_records_the_request(
    gateway: RunningGateway,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    body: dict[str, Any],
) -> None:
    """Every request a client got a request id for leaves exactly one request event (and so
    one usage record), even when it ended in a bug."""
    failed: list[RequestFailed] = []
    gateway.app[RUNTIME].events.subscribe(RequestFailed, failed.append)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gateway.app[RUNTIME].gateway.attempts, "run", broken)
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    async with http.post(gateway.url + path, json=body, headers=headers) as response:
        assert response.status == 500
        request_id = response.headers["x-stellara-request-id"]
        assert request_id in (await response.text())
    assert [(e.request_id, e.status) for e in failed] == [(request_id, 500)]
