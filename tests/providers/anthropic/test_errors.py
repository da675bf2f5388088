"""Anthropic error answers → `UpstreamError`s: what is relayed, retried, or summarised."""

from __future__ import annotations

import json

import pytest

from stellara.errors import (
    ContextWindowExceededError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from stellara.providers.anthropic.errors import error_from_event, error_from_response
from stellara.wire.anthropic import ErrorDetail


def body(error_type: str, message: str) -> bytes:
    # The API's error shape, with the request_id it adds at the top level.
    error = {"type": error_type, "message": message}
    return json.dumps({"type": "error", "error": error, "request_id": "req_011CSHoEeqs5C"}).encode()


def from_response(status: int, raw: bytes, retry_after: str | None = None) -> UpstreamError:
    return error_from_response(status, raw, provider="claude", retry_after=retry_after)


def test_error_400_relays_the_message():
    error = from_response(400, body("invalid_request_error", "max_tokens: Field required"))
    assert type(error) is UpstreamBadRequestError
    assert error.message == "max_tokens: Field required"
    assert error.status_code == 400
    assert error.upstream_status == 400
    assert not error.is_retryable


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 215000 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit: 198000 + 4096 > 200000, decrease "
        "input length or `max_tokens` and try again",
    ],
)
def test_error_400_prompt_too_long_is_context_window_exceeded(message):
    error = from_response(400, body("invalid_request_error", message))
    assert isinstance(error, ContextWindowExceededError)
    assert error.code == "context_length_exceeded"
    assert error.message == message


def test_error_413_relays_the_message():
    error = from_response(413, body("request_too_large", "Request exceeds the maximum size"))
    assert type(error) is UpstreamBadRequestError
    assert error.message == "Request exceeds the maximum size"


@pytest.mark.parametrize("status", [401, 402, 403])
def test_error_auth_never_relays_the_body(status):
    error = from_response(status, body("authentication_error", "invalid x-api-key sk-ant-SECRET"))
    assert isinstance(error, UpstreamAuthError)
    assert "SECRET" not in error.message
    assert error.status_code == 502
    assert not error.is_retryable


def test_error_404_is_not_found():
    error = from_response(404, body("not_found_error", "model: claude-nope"))
    assert isinstance(error, UpstreamNotFoundError)
    assert "claude-nope" not in error.message


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), (None, None), ("soon", None)])
def test_error_429_is_rate_limited_with_retry_after(header, seconds):
    error = from_response(429, body("rate_limit_error", "Number of requests..."), header)
    assert isinstance(error, UpstreamRateLimitedError)
    assert error.retry_after_s == seconds
    assert error.is_retryable


@pytest.mark.parametrize(
    ("status", "error_type", "words"),
    [(500, "api_error", "failed"), (529, "overloaded_error", "overloaded"), (503, "x", "failed")],
)
def test_error_5xx_is_unavailable_and_retryable(status, error_type, words):
    error = from_response(status, body(error_type, "Overloaded"))
    assert isinstance(error, UpstreamUnavailableError)
    assert words in error.message
    assert error.upstream_status == status
    assert error.is_retryable


def test_error_504_is_timeout():
    assert isinstance(from_response(504, body("timeout_error", "x")), UpstreamTimeoutError)


@pytest.mark.parametrize("raw", [b"", b"<html>Bad Gateway</html>", b'{"error": "flat"}'])
def test_error_unreadable_body_is_summarised(raw):
    error = from_response(400, raw)
    assert type(error) is UpstreamBadRequestError
    assert error.message == "provider 'claude' refused the request (HTTP 400)"


def test_error_event_keeps_the_type_mapping_without_an_http_status():
    error = error_from_event(ErrorDetail("overloaded_error", "Overloaded"), provider="claude")
    assert isinstance(error, UpstreamUnavailableError)
    assert error.upstream_status is None
    assert "overloaded" in error.message
