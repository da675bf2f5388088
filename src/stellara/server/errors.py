"""Stellara errors → HTTP error responses in the OpenAI and Anthropic dialects (DESIGN §3, §7)."""

from __future__ import annotations

import math
import re
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web

from stellara import _json
from stellara.errors import InvalidRequestError, StellaraError
from stellara.providers.anthropic.wire import ErrorDetail, ErrorEvent

T = TypeVar("T")

_JSON = "application/json"
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


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


def error_response(error: StellaraError, headers: dict[str, str] | None = None) -> web.Response:
    """The HTTP response for `error`, with `Retry-After` when the client should wait."""
    out = _error_headers(error, headers)
    return web.Response(status=error.status_code, body=openai_error_body(error), headers=out)


# Anthropic names error types by status, not by cause (DESIGN §7).
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


def anthropic_error_type(error: StellaraError) -> str:
    """The Anthropic `error.type` for `error`: by status, `api_error` for any other 5xx."""
    status = error.status_code
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    return _ANTHROPIC_TYPES.get(status, fallback)


def anthropic_error_body(error: StellaraError) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}`: the HTTP body and the SSE event alike."""
    return _json.encode(ErrorEvent(ErrorDetail(anthropic_error_type(error), error.message)))


def anthropic_error_response(
    error: StellaraError, headers: dict[str, str] | None = None
) -> web.Response:
    """`error_response` for the Anthropic route (`/v1/messages`)."""
    out = _error_headers(error, headers)
    return web.Response(status=error.status_code, body=anthropic_error_body(error), headers=out)


def _error_headers(error: StellaraError, headers: dict[str, str] | None) -> dict[str, str]:
    out = {"Content-Type": _JSON}
    if headers:
        out.update(headers)
    if error.status_code == 429:  # RFC 9110 integer seconds; clients need a number to wait for
        retry_after = getattr(error, "retry_after_s", None) or 1
        out["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return out


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """The typed request in `body`, or a 400 naming what is wrong."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid_json(exc) from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequestError("The request body is not valid UTF-8 JSON.") from exc
    except RecursionError as exc:  # msgspec's depth guard, met in free-form JSON fields
        raise InvalidRequestError("The request body's JSON is nested too deeply.") from exc


def decode_json_object(body: bytes) -> dict[str, Any]:
    """A free-form JSON object body (admin routes), or a 400 saying what is wrong."""
    try:
        value = _json.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return value


def internal_error(request_id: str) -> StellaraError:
    return StellaraError(f"Internal error; the gateway log has the details of {request_id}.")


def invalid_json(exc: msgspec.DecodeError) -> InvalidRequestError:
    """A 400 for a body that is not valid JSON or not the expected shape, naming the field."""
    text = str(exc)
    match = _PATH.search(text)
    param = match.group(1) if match else None
    if isinstance(exc, msgspec.ValidationError):
        message = _PATH.sub("", text)
        where = f" at '{param}'" if param else ""
        return InvalidRequestError(f"Invalid request body{where}: {message}", param=param)
    return InvalidRequestError(f"The request body is not valid JSON: {text}")
