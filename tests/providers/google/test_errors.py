"""Gemini error bodies (as the API sends them) → Stellara's upstream errors."""

from __future__ import annotations

import json
from typing import Any

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
from stellara.providers.google.errors import error_from_response

SECRET = "AIzaSy-SECRET-KEY"


def body(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return json.dumps({"error": error}).encode()


def error(status: int, payload: bytes, retry_after: str | None = None) -> UpstreamError:
    return error_from_response(status, payload, provider="gem", retry_after=retry_after)


def test_error_invalid_argument_relays_message() -> None:
    message = "* GenerateContentRequest.contents: contents is not specified"
    result = error(400, body(400, "INVALID_ARGUMENT", message))
    assert type(result) is UpstreamBadRequestError
    assert result.message == message
    assert result.upstream_status == 400
    assert result.is_retryable is False


def test_error_token_limit_is_context_window_exceeded() -> None:
    message = (
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    )
    result = error(400, body(400, "INVALID_ARGUMENT", message))
    assert isinstance(result, ContextWindowExceededError)
    assert result.code == "context_length_exceeded"


def test_error_invalid_api_key_is_auth_error_without_body() -> None:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    payload = body(400, "INVALID_ARGUMENT", f"API key not valid: {SECRET}", info)
    result = error(400, payload)
    assert isinstance(result, UpstreamAuthError)
    assert SECRET not in result.message


@pytest.mark.parametrize(("status", "rpc"), [(401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED")])
def test_error_auth_statuses_never_relay_body(status: int, rpc: str) -> None:
    result = error(status, body(status, rpc, f"key {SECRET} refused"))
    assert isinstance(result, UpstreamAuthError)
    assert result.status_code == 502
    assert SECRET not in result.message
    assert rpc in result.message


def test_error_failed_precondition_is_operator_problem() -> None:
    payload = body(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")
    assert isinstance(error(400, payload), UpstreamAuthError)


def test_error_not_found() -> None:
    payload = body(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta")
    assert isinstance(error(404, payload), UpstreamNotFoundError)


def test_error_rate_limit_reads_retry_info() -> None:
    payload = body(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    )
    result = error(429, payload)
    assert isinstance(result, UpstreamRateLimitedError)
    assert result.retry_after_s == 7.0


def test_error_rate_limit_prefers_retry_after_header() -> None:
    payload = body(
        429,
        "RESOURCE_EXHAUSTED",
        "quota",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    )
    result = error(429, payload, retry_after="3")
    assert isinstance(result, UpstreamRateLimitedError)
    assert result.retry_after_s == 3.0


def test_error_rate_limit_without_any_delay() -> None:
    result = error(429, b"not json")
    assert isinstance(result, UpstreamRateLimitedError)
    assert result.retry_after_s is None


@pytest.mark.parametrize(
    ("status", "rpc", "kind"),
    [
        (500, "INTERNAL", UpstreamUnavailableError),
        (503, "UNAVAILABLE", UpstreamUnavailableError),
        (504, "DEADLINE_EXCEEDED", UpstreamTimeoutError),
    ],
)
def test_error_server_statuses(status: int, rpc: str, kind: type[UpstreamError]) -> None:
    result = error(status, body(status, rpc, "boom"))
    assert type(result) is kind
    assert result.is_retryable


def test_error_list_wrapped_body_is_understood() -> None:
    payload = json.dumps([json.loads(body(400, "INVALID_ARGUMENT", "bad field"))]).encode()
    assert error(400, payload).message == "bad field"


def test_error_unreadable_400_is_summarised() -> None:
    result = error(400, b"<html>bad</html>")
    assert type(result) is UpstreamBadRequestError
    assert "HTTP 400" in result.message
