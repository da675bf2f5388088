"""Anthropic error answers and stream error events → Stellara's `UpstreamError`s (pure).

Anthropic sends `{"type": "error", "error": {"type", "message"}}` both as the body of an HTTP
error and as an `error` event in the middle of a stream (typically `overloaded_error`).
"""

from __future__ import annotations

import msgspec

from stellara.errors import (
    ContextWindowExceededError,
    UpstreamBadRequestError,
    UpstreamError,
)
from stellara.providers._retry_after import parse_retry_after
from stellara.providers._status import MAX_RELAYED_MESSAGE, error_for_status
from stellara.wire.anthropic import ErrorDetail, error_decoder

# How Anthropic words a prompt that does not fit: "prompt is too long: 215000 tokens > 200000
# maximum", and "input length and `max_tokens` exceed context limit: 198000 + 4096 > 200000".
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit")

# Error types of stream `error` events, by the HTTP status the same error would have had.
_EVENT_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_from_response(
    status: int, body: bytes, *, provider: str, retry_after: str | None
) -> UpstreamError:
    """The `UpstreamError` for an HTTP error answer.

    Only messages about the client's input (400, 413) are relayed; the others may quote the
    gateway's account or credentials, so they are summarised instead.
    """
    return _error(status, _detail(body), provider=provider, retry_after=retry_after)


def error_from_event(detail: ErrorDetail, *, provider: str) -> UpstreamError:
    """The `UpstreamError` for an `error` event received mid-stream.

    An unknown error type is treated as a server failure: the answer is lost either way, and
    another attempt may succeed.
    """
    status = _EVENT_STATUS.get(detail.type, 500)
    error = _error(status, detail, provider=provider, retry_after=None)
    error.upstream_status = None  # the HTTP status was 200; the failure came inside the stream
    return error


def _error(
    status: int, detail: ErrorDetail | None, *, provider: str, retry_after: str | None
) -> UpstreamError:
    if status in (400, 413) and detail is not None and detail.message:
        message = detail.message[:MAX_RELAYED_MESSAGE]
        lowered = message.lower()
        if any(marker in lowered for marker in _CONTEXT_MARKERS):
            return ContextWindowExceededError(message, provider=provider, upstream_status=status)
        return UpstreamBadRequestError(message, provider=provider, upstream_status=status)
    return error_for_status(status, provider=provider, retry_after_s=parse_retry_after(retry_after))


def _detail(body: bytes) -> ErrorDetail | None:
    try:
        return error_decoder.decode(body).error
    except msgspec.DecodeError:
        return None
