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


def error_body(dialect: Dialect, error: StellaraError) -> bytes:
    if dialect is Dialect.ANTHROPIC:
        return anthropic_error_body(error)
    return openai_error_body(error)


def error_event(dialect: Dialect, error: StellaraError) -> bytes:
    """The SSE frame that ends a stream broken after it started, in `dialect`."""
    if dialect is Dialect.ANTHROPIC:
        return b"event: error\ndata: " + anthropic_error_body(error) + b"\n\n"
    return b"data: " + openai_error_body(error) + b"\n\n"


def error_response(
    dialect: Dialect, error: StellaraError, headers: dict[str, str] | None = None
) -> web.Response:
    """The HTTP answer for `error`, with `Retry-After` when the client should wait."""
    out = {"Content-Type": _JSON}
    if headers:
        out.update(headers)
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is None and error.status_code == 429:
        retry_after = 1  # a 429 always says when: clients need a number to wait for
    if retry_after is not None:  # RFC 9110: integer seconds
        out["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if isinstance(error, MethodNotAllowedError):
        out["Allow"] = ", ".join(error.allowed)
    return web.Response(status=error.status_code, body=error_body(dialect, error), headers=out)
