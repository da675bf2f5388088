import json

import msgspec
import pytest

from stellara.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelNotFoundError,
    NoHealthyProviderError,
    RateLimitedError,
    StellaraError,
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
    UpstreamUnavailableError,
)
from stellara.providers.openai.errors import error_from_response
from stellara.schema.chat import request_decoder
from stellara.server.errors import error_response, openai_error_body
from stellara.server.intake import invalid_json
from stellara.server.spec import Dialect


def test_openai_error_body_shape():
    error = ModelNotFoundError("The model 'x' does not exist.", param="model")
    assert json.loads(openai_error_body(error)) == {
        "error": {
            "message": "The model 'x' does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_openai_error_body_null_param_and_code():
    body = json.loads(openai_error_body(StellaraError("boom")))
    assert body == {"error": {"message": "boom", "type": "api_error", "param": None, "code": None}}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AuthenticationError("Invalid API key."), 401),
        (ModelNotFoundError("nope"), 404),
        (UpstreamUnavailableError("down", provider="p"), 502),
        (UpstreamBadRequestError("bad", provider="p", param="messages"), 400),
        (NoHealthyProviderError("every breaker open, no clue when"), 503),
    ],
)
def test_error_response_status_body_and_no_retry_after(error, status):
    response = error_response(Dialect.OPENAI, error)
    assert response.status == status
    assert response.content_type == "application/json"
    assert "Retry-After" not in response.headers
    assert isinstance(response.body, bytes)
    assert json.loads(response.body)["error"]["message"] == error.message


def test_error_response_extra_headers_kept():
    response = error_response(
        Dialect.OPENAI, AuthenticationError("x"), {"x-stellara-request-id": "r1"}
    )
    assert response.headers["x-stellara-request-id"] == "r1"
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("retry_after_s", "header"), [(7, "7"), (1, "1"), (0, "1")])
def test_error_response_rate_limited_retry_after(retry_after_s, header):
    response = error_response(
        Dialect.OPENAI, RateLimitedError("slow down", retry_after_s=retry_after_s)
    )
    assert response.status == 429
    assert response.headers["Retry-After"] == header


@pytest.mark.parametrize(("retry_after_s", "header"), [(0.2, "1"), (1.0, "1"), (2.5, "3")])
def test_error_response_upstream_rate_limited_retry_after_is_integer(retry_after_s, header):
    error = UpstreamRateLimitedError("busy", provider="p", retry_after_s=retry_after_s)
    response = error_response(Dialect.OPENAI, error)
    assert response.status == 429
    assert response.headers["Retry-After"] == header
    assert int(response.headers["Retry-After"]) >= 1


def test_error_response_no_healthy_provider_retry_after():
    error = NoHealthyProviderError("breakers open", retry_after_s=12.3)
    response = error_response(Dialect.OPENAI, error)
    assert response.status == 503
    assert response.headers["Retry-After"] == "13"


def decode_error(body: bytes) -> msgspec.DecodeError:
    with pytest.raises(msgspec.DecodeError) as info:
        request_decoder.decode(body)
    return info.value


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 5}',
            "temperature",
        ),
        (b'{"model": "m", "messages": [{"role": "bot", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "m", "messages": [{"role": "user"}]}', "messages[0]"),
    ],
)
def test_invalid_json_validation_error_names_param(body, param):
    error = invalid_json(decode_error(body))
    assert isinstance(error, InvalidRequestError)
    assert error.status_code == 400
    assert error.param == param
    assert error.message.startswith(f"Invalid request body at '{param}': ")
    assert "$." not in error.message


def test_invalid_json_root_validation_error_has_no_param():
    error = invalid_json(decode_error(b'{"messages": [{"role": "user", "content": "x"}]}'))
    assert error.param is None
    assert error.message.startswith("Invalid request body: ")
    assert "model" in error.message


def test_invalid_json_malformed_body():
    error = invalid_json(decode_error(b'{"model": "m", '))
    assert error.status_code == 400
    assert error.param is None
    assert "not valid JSON" in error.message


def test_error_response_429_always_has_retry_after() -> None:
    for header in (None, "0", "inf", "garbage", "2.5"):
        error = error_from_response(429, b"", provider="p", retry_after=header)
        response = error_response(Dialect.OPENAI, error)
        assert int(response.headers["Retry-After"]) >= 1
    huge = error_response(
        Dialect.OPENAI, error_from_response(429, b"", provider="p", retry_after="1e400")
    )
    assert huge.headers["Retry-After"] == "1"
