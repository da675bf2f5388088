"""Stellara errors → HTTP error answers, in the dialect of the route that failed.

The boundary (`stellara.server.boundary`) is the only caller for whole answers; the SSE relay
uses `error_event` for a stream that breaks after its headers went out.
"""

from __future__ import annotations

import math

from aiohttp import web

from stellara import _json
from stellara.errors import MethodNotAllowedError, StellaraError
from stellara.server.spec import Dialect
from stellara.wire.anthropic import ErrorDetail, ErrorEvent
from stellara.wire.google import ErrorDetail as GoogleErrorInfo
from stellara.wire.google import GoogleErrorBody, GoogleErrorDetail

_JSON = "application/json"

# Anthropic names error types by status, not by cause.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
# google.rpc status codes by HTTP status, as Google's REST front end maps them.
_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def openai_error_body(error: StellaraError) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as OpenAI sends it."""
    return _json.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.error_type,
                "param": error.param,
                "code": error.code,
            }
        }
    )


def anthropic_error_type(error: StellaraError) -> str:
    """The Anthropic `error.type` for `error`: by status, `api_error` for any other 5xx."""
    status = error.status_code
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    return _ANTHROPIC_TYPES.get(status, fallback)


def anthropic_error_body(error: StellaraError) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}`: the HTTP body and the SSE event alike."""
    return _json.encode(ErrorEvent(ErrorDetail(anthropic_error_type(error), error.message)))


def gemini_error_body(error: StellaraError) -> bytes:
    """`{"error": {"code", "message", "status"}}` as Google sends it; a 429 says in
    `RetryInfo` how long to wait."""
    status = error.status_code
    fallback = "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"
    details = []
    if status == 429:
        details.append(GoogleErrorInfo(type=_RETRY_INFO, retry_delay=f"{_retry_after_s(error)}s"))
    detail = GoogleErrorDetail(
        status, error.message, _GEMINI_STATUSES.get(status, fallback), details
    )
    return _json.encode(GoogleErrorBody(detail))


def error_body(dialect: Dialect, error: StellaraError) -> bytes:
    if dialect is Dialect.ANTHROPIC:
        return anthropic_error_body(error)
    if dialect is Dialect.GEMINI:
        return gemini_error_body(error)
    return openai_error_body(error)


def error_event(dialect: Dialect, error: StellaraError) -> bytes:
    """The SSE frame that ends a stream broken after it started, in `dialect`."""
    if dialect is Dialect.ANTHROPIC:
        return b"event: error\ndata: " + anthropic_error_body(error) + b"\n\n"
    if dialect is Dialect.GEMINI:  # Google's SDK raises on a `{"error": …}` piece
        return b"data: " + gemini_error_body(error) + b"\r\n\r\n"
    return b"data: " + openai_error_body(error) + b"\n\n"


def _retry_after_s(error: StellaraError) -> int:
    """Whole seconds to wait (RFC 9110), at least 1; a 429 always says when: clients need a
    number to wait for."""
    retry_after = getattr(error, "retry_after_s", None)
    return max(1, math.ceil(retry_after)) if retry_after is not None else 1


def error_response(
    dialect: Dialect, error: StellaraError, headers: dict[str, str] | None = None
) -> web.Response:
    """The HTTP answer for `error`, with `Retry-After` when the client should wait."""
    out = {"Content-Type": _JSON}
    if headers:
        out.update(headers)
    if error.status_code == 429 or getattr(error, "retry_after_s", None) is not None:
        out["Retry-After"] = str(_retry_after_s(error))
    if isinstance(error, MethodNotAllowedError):
        out["Allow"] = ", ".join(error.allowed)
    return web.Response(status=error.status_code, body=error_body(dialect, error), headers=out)
