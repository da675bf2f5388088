"""Stellara errors → HTTP error responses in the OpenAI dialect (DESIGN §3)."""

from __future__ import annotations

import math
import re

import msgspec
from aiohttp import web

from stellara import _json
from stellara.errors import InvalidRequestError, StellaraError
from stellara.schema.chat import ChatRequest, request_decoder

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
    out = {"Content-Type": _JSON}
    if headers:
        out.update(headers)
    if error.status_code == 429:  # RFC 9110 integer seconds; clients need a number to wait for
        retry_after = getattr(error, "retry_after_s", None) or 1
        out["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return web.Response(status=error.status_code, body=openai_error_body(error), headers=out)


def decode_chat_request(body: bytes) -> ChatRequest:
    """The typed request in `body`, or a 400 naming what is wrong."""
    try:
        return request_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid_json(exc) from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequestError("The request body is not valid UTF-8 JSON.") from exc


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
