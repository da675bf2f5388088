import json

import pytest

from stellara.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from stellara.providers._retry_after import parse_retry_after
from stellara.providers.openai.errors import error_from_response


def openai_body(
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


INVALID_KEY_BODY = openai_body(
    "Incorrect API key provided: sk-abc123***************************wxyz. You can find your "
    "API key at https://platform.openai.com/account/api-keys.",
    code="invalid_api_key",
)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_error_from_response_bad_request_relays_message_and_param(status):
    body = openai_body("'messages' must contain at least one item", param="messages")
    error = error_from_response(status, body, provider="p1", retry_after=None)
    assert type(error) is UpstreamBadRequestError
    assert error.message == "'messages' must contain at least one item"
    assert error.param == "messages"
    assert error.upstream_status == status
    assert error.status_code == 400
    assert error.is_retryable is False
    assert error.provider == "p1"


def test_error_from_response_bad_request_message_truncated():
    error = error_from_response(400, openai_body("x" * 5000), provider="p", retry_after=None)
    assert 0 < len(error.message) <= 500


def test_error_from_response_bad_request_empty_message_gets_summary():
    error = error_from_response(400, openai_body(""), provider="p1", retry_after=None)
    assert isinstance(error, UpstreamBadRequestError)
    assert "p1" in error.message


@pytest.mark.parametrize("status", [401, 403])
def test_error_from_response_auth_failure_hides_upstream_body(status):
    error = error_from_response(status, INVALID_KEY_BODY, provider="p1", retry_after=None)
    assert type(error) is UpstreamAuthError
    assert error.status_code == 502
    assert error.upstream_status == status
    assert error.is_retryable is False
    assert "sk-" not in error.message
    assert "Incorrect API key" not in error.message
    assert error.param is None


def test_error_from_response_not_found_is_502():
    body = openai_body("The model `gpt-9` does not exist", code="model_not_found")
    error = error_from_response(404, body, provider="p1", retry_after=None)
    assert type(error) is UpstreamNotFoundError
    assert error.status_code == 502
    assert error.upstream_status == 404
    assert error.is_retryable is False


def test_error_from_response_408_is_timeout():
    error = error_from_response(408, b"", provider="p1", retry_after=None)
    assert type(error) is UpstreamTimeoutError
    assert error.upstream_status == 408
    assert error.is_retryable is True


def test_error_from_response_409_is_bad_request_without_relaying_body():
    body = openai_body("conflict involving sk-secret-key")
    error = error_from_response(409, body, provider="p1", retry_after=None)
    assert type(error) is UpstreamBadRequestError
    assert error.upstream_status == 409
    assert "sk-" not in error.message
    assert error.is_retryable is False


def test_error_from_response_429_with_retry_after():
    body = openai_body(
        "Rate limit reached for gpt-4o", type_="requests", code="rate_limit_exceeded"
    )
    error = error_from_response(429, body, provider="p1", retry_after="3")
    assert type(error) is UpstreamRateLimitedError
    assert error.retry_after_s == 3.0
    assert error.upstream_status == 429
    assert error.status_code == 429
    assert error.is_retryable is True


def test_error_from_response_429_without_retry_after():
    error = error_from_response(429, b"", provider="p1", retry_after=None)
    assert isinstance(error, UpstreamRateLimitedError)
    assert error.retry_after_s is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_error_from_response_5xx_is_unavailable(status):
    body = openai_body("The server had an error", type_="server_error")
    error = error_from_response(status, body, provider="p1", retry_after=None)
    assert type(error) is UpstreamUnavailableError
    assert error.upstream_status == status
    assert error.status_code == 502
    assert error.is_retryable is True
    assert str(status) in error.message


def test_error_from_response_400_non_json_body():
    error = error_from_response(400, b"<html>Bad Request</html>", provider="p1", retry_after=None)
    assert type(error) is UpstreamBadRequestError
    assert error.param is None
    assert "<html>" not in error.message
    assert "400" in error.message


def test_error_from_response_500_non_json_body():
    error = error_from_response(500, b"Internal Server Error", provider="p1", retry_after=None)
    assert type(error) is UpstreamUnavailableError
    assert error.upstream_status == 500


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 2 ", 2.0),
        (None, None),
        ("", None),
        ("-1", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected
