"""Gemini error responses → Stellara's `UpstreamError`s (pure).

Gemini answers errors as `{"error": {"code", "message", "status", "details"}}` with a
`google.rpc` status. Two of its habits matter here: a wrong API key is a *400*
`INVALID_ARGUMENT` whose `ErrorInfo.reason` is `API_KEY_INVALID` (an operator problem, never the
client's), and a 429 carries its wait as `RetryInfo.retryDelay` ("7s") more often than as a
`Retry-After` header.
"""

from __future__ import annotations

import re

import msgspec

from stellara.errors import (
    ContextWindowExceededError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
)
from stellara.providers._retry_after import parse_retry_after
from stellara.providers._status import MAX_RELAYED_MESSAGE, error_for_status
from stellara.wire.google import GoogleErrorBody, GoogleErrorDetail, error_body_decoder

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_AUTH_REASONS = frozenset(
    {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"}
)
# "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
_TOO_MANY_TOKENS = re.compile(
    r"exceeds the maximum number of tokens|input token count|too many tokens", re.IGNORECASE
)


def error_from_response(
    status: int, body: bytes, *, provider: str, retry_after: str | None
) -> UpstreamError:
    """The `UpstreamError` for an HTTP error answer.

    Only an `INVALID_ARGUMENT` message is relayed to the client (it is about the client's
    input); the others may describe the gateway's account, so they are summarised instead.
    """
    detail = parse_error_body(body)
    if detail is not None and _is_key_refused(detail):
        status = 401
    if status in (400, 413) and detail is not None:
        return _bad_request(status, detail, provider)
    if status == 429:
        retry_after_s = parse_retry_after(retry_after) or _retry_delay(detail)
        return error_for_status(status, provider=provider, retry_after_s=retry_after_s)
    return error_from_status(status, detail.status if detail else "", provider=provider)


def error_from_status(status: int, rpc_status: str, *, provider: str) -> UpstreamError:
    """The `UpstreamError` for an HTTP status whose body is not relayed.

    Also used for an `{"error": …}` event in the middle of a stream.
    """
    summary = f"HTTP {status} {rpc_status}".rstrip()
    return error_for_status(status, provider=provider, summary=summary)


def _bad_request(status: int, detail: GoogleErrorDetail, provider: str) -> UpstreamError:
    if detail.status == "FAILED_PRECONDITION":
        # "User location is not supported", "enable billing": the account, not the request.
        return UpstreamAuthError(
            f"provider {provider!r} refused to serve the gateway's account "
            f"(HTTP {status} FAILED_PRECONDITION)",
            provider=provider,
            upstream_status=status,
        )
    message = detail.message[:MAX_RELAYED_MESSAGE] or f"provider {provider!r} refused it"
    if _TOO_MANY_TOKENS.search(message):
        return ContextWindowExceededError(message, provider=provider, upstream_status=status)
    return UpstreamBadRequestError(message, provider=provider, upstream_status=status)


def _is_key_refused(detail: GoogleErrorDetail) -> bool:
    return any(entry.reason in _AUTH_REASONS for entry in detail.details)


def _retry_delay(detail: GoogleErrorDetail | None) -> float | None:
    """Seconds from a `RetryInfo` detail: a protobuf Duration in JSON, like "7s" or "0.5s"."""
    if detail is None:
        return None
    for entry in detail.details:
        if entry.type == _RETRY_INFO and entry.retry_delay:
            return parse_retry_after(entry.retry_delay.removesuffix("s"))
    return None


def parse_error_body(body: bytes) -> GoogleErrorDetail | None:
    """The `error` object of a Gemini error body, or None if `body` is not one."""
    try:
        decoded: GoogleErrorBody | list[GoogleErrorBody] = error_body_decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, list):
        return decoded[0].error if decoded else None
    return decoded.error
