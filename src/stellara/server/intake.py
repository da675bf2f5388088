"""Reading what a request sends: its key, its body (bounded in size and time), the typed
request in it, and the pipeline context a model call runs in; and the headers every model
call's answer carries."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from typing import Any, Protocol, TypeVar

import msgspec
import orjson
from aiohttp import StreamReader, web

from stellara import _json
from stellara.cache.stage import CacheControl
from stellara.errors import (
    ClientError,
    InvalidRequestError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from stellara.inbound.bounds import check_bounds
from stellara.limits import ratelimit_headers
from stellara.pipeline.context import RequestContext
from stellara.principal import Principal
from stellara.schema.chat import ChatRequest
from stellara.schema.completions import CompletionRequest
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.server.spec import Call
from stellara.wire import google_inbound as gemini
from stellara.wire.anthropic import MessagesRequest
from stellara.wire.responses import ResponsesRequest

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
ModelRequest = TypeVar(
    "ModelRequest",
    bound=ChatRequest
    | MessagesRequest
    | ResponsesRequest
    | EmbeddingsRequest
    | gemini.GenerateContentParams
    | gemini.CountTokensParams
    | gemini.EmbedContentParams
    | gemini.BatchEmbedContentsParams
    | CompletionRequest,
)

REQUEST_ID = "x-stellara-request-id"
PROVIDER = "x-stellara-provider"
ATTEMPTS = "x-stellara-attempts"
CACHE = "x-stellara-cache"
CACHE_TTL = "x-stellara-cache-ttl"
ROUTE = "x-stellara-route"
DROPPED_PARAMS = "x-stellara-dropped-params"
EXPERIMENT = "x-stellara-experiment"
VARIANT = "x-stellara-variant"  # answers: the variant that served; requests: a pin
MAX_CACHE_TTL_S = 30 * 86_400.0
SESSION_ID = "X-Session-Id"
# Session ids become state-backend keys; a cap keeps a client from making them arbitrarily big.
MAX_SESSION_ID_CHARS = 256
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


class RequestTimeoutError(ClientError):
    """408: the client did not send its whole body within `server.body_read_timeout_s`."""

    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


class HeaderFieldsTooLargeError(ClientError):
    """431: the request's header fields are larger than `server.max_header_bytes` together."""

    status_code = 431
    error_type = "invalid_request_error"
    code = "request_header_fields_too_large"


# A random process prefix and a counter: unique across processes and restarts without a
# getrandom() call per request (which showed in the profile). Not a secret, so guessable is fine.
_REQUEST_ID_PREFIX = "req_" + os.urandom(6).hex()
_request_numbers = itertools.count()


def new_request_id() -> str:
    """`req_` and 24 hex digits: 12 of the process, 12 of the request's number in it."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers) & 0xFFFF_FFFF_FFFF:012x}"


def response_headers(call: Call, *, is_json: bool = False) -> dict[str, str]:
    """The `x-stellara-*` and `x-ratelimit-*` headers of a call's answer (and its
    Content-Type). The rate-limit headers come from the request's limits ticket, so 429s and
    upstream errors carry them as successes do; a request refused before the limits stage
    (bad key, bad body) has none."""
    headers = {REQUEST_ID: call.request_id}
    if is_json:
        headers["Content-Type"] = "application/json"
    ctx = call.context
    if ctx is None:
        return headers
    if ctx.provider_id:
        headers[PROVIDER] = ctx.provider_id
        headers[ATTEMPTS] = str(ctx.attempts)
        headers[CACHE] = ctx.cache_status
        if ctx.route:
            headers[ROUTE] = ctx.route
        if ctx.dropped_params:
            names = ctx.param_names or {}
            called = dict.fromkeys(names.get(n, n) for n in ctx.dropped_params)  # once each
            headers[DROPPED_PARAMS] = ",".join(called)
    if ctx.experiment:  # errors too: a variant that fails is what its caller must report
        headers[EXPERIMENT] = ctx.experiment
        headers[VARIANT] = ctx.variant
    ticket = ctx.ticket
    if ticket is not None and ticket.admission is not None:
        headers.update(ratelimit_headers(ticket.admission))
    return headers


def json_response(call: Call, body: Any, *, status: int = 200) -> web.Response:
    """`body` as a JSON answer with the call's headers."""
    return web.Response(
        status=status, body=_json.dumps(body), headers=response_headers(call, is_json=True)
    )


class BodyDecoder(Protocol[T_co]):
    """What decodes a request body: a msgspec decoder, or one with the same errors."""

    def decode(self, buf: bytes, /) -> T_co: ...


async def open_model_call(
    call: Call, decoder: BodyDecoder[ModelRequest]
) -> tuple[RequestContext, ModelRequest]:
    """Open a model call's pipeline context (also kept as `call.context`, for the headers of
    an error answer), pass the limits' checks that need no body (`Gateway.admit_early`: a
    caller refused moments ago is refused again before its body is read), then read and
    decode the body and refuse it past the bounds on its shape (`inbound.bounds`)."""
    ctx = call.context = new_context(call)
    call.runtime.gateway.admit_early(ctx)
    body = decode_body(decoder, await read_body(call))
    check_bounds(body)
    return ctx, body


def new_context(call: Call) -> RequestContext:
    """The pipeline's context for a model call: the route it came through (its declared path,
    never the requested one, so records and metric labels stay a handful of values), its
    `X-Session-Id` and cache directives."""
    runtime = call.runtime
    headers = call.request.headers
    now = runtime.clock.monotonic()
    session_id = headers.get(SESSION_ID) or None
    if session_id is not None and len(session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidRequestError(
            f"The {SESSION_ID} header is longer than {MAX_SESSION_ID_CHARS} characters."
        )
    ctx = RequestContext(
        call.request_id,
        call.caller,
        now,
        now + runtime.config.resilience.timeout_s,
        endpoint=call.route.path,
        session_id=session_id,
        started_epoch_s=runtime.clock.time(),
    )
    pin = headers.get(VARIANT)
    if pin is not None:
        ctx.variant_pin = _variant_pin(call.caller, pin)
    cache_control = headers.get("Cache-Control")
    cache_ttl = headers.get(CACHE_TTL)
    if cache_control or cache_ttl:
        ctx.cache_control = _cache_control(cache_control or "", cache_ttl)
    return ctx


def _variant_pin(caller: Principal, pin: str) -> str:
    """A request's `x-stellara-variant`: honoured only for a key the master key allowed to pin
    (`may_pin_variants`), or the master key itself; refused, never ignored, for others."""
    if not (caller.may_pin_variants or caller.is_master):
        raise PermissionDeniedError(
            f"This key may not pin an experiment's variant ({VARIANT}); an admin can allow it "
            "with the key's may_pin_variants."
        )
    pin = pin.strip()
    if not pin:
        raise InvalidRequestError(f"{VARIANT} must name a variant, or 'none' to opt out.")
    return pin


def _cache_control(directives: str, ttl: str | None) -> CacheControl:
    """`Cache-Control: no-cache` (no lookup) / `no-store` (no store), and the stored entry's
    TTL from `x-stellara-cache-ttl` (seconds)."""
    names = {part.strip().lower() for part in directives.split(",")}
    ttl_s: float | None = None
    if ttl is not None:
        try:
            ttl_s = float(ttl)
        except ValueError:
            ttl_s = -1.0
        if not 0 < ttl_s <= MAX_CACHE_TTL_S:
            raise InvalidRequestError(
                f"{CACHE_TTL} must be a number of seconds in (0, {MAX_CACHE_TTL_S:g}]."
            )
    return CacheControl("no-cache" in names, "no-store" in names, ttl_s)


def bearer_token(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer …`, else from `x-api-key` (Anthropic's SDK)."""
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return _utf8_header("Authorization", token.strip()) or None
        return None
    return _utf8_header("x-api-key", request.headers.get("x-api-key")) or None


def google_api_key(request: web.Request) -> str | None:
    """The key from `x-goog-api-key`, else from the `key` query parameter (Google's API)."""
    header = _utf8_header("x-goog-api-key", request.headers.get("x-goog-api-key"))
    return header or request.query.get("key") or None


def check_headers(request: web.Request, max_bytes: int) -> None:
    """431 when the header fields (names, values, and their `: ` and CRLF) hold more than
    `max_bytes` together: aiohttp's parser bounds each line and the number of headers, not
    their total. 400 for a header value that is not UTF-8: aiohttp keeps such bytes as lone
    surrogates, which pass through the gateway unnoticed until something encodes them (hashing
    a key, writing a session id to the usage store) and fails there."""
    size = sum(len(name) + len(value) + 4 for name, value in request.raw_headers)
    if size > max_bytes:
        raise HeaderFieldsTooLargeError(
            f"The request's headers hold {size} bytes; at most {max_bytes} are accepted."
        )
    for name, value in request.headers.items():
        _utf8_header(name, value)


def _utf8_header(name: str, value: str | None) -> str | None:
    """`value`, or 400 when it holds bytes that are not UTF-8 (kept by aiohttp as surrogates)."""
    if value is None or value.isascii():
        return value
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidRequestError(f"The {name} header is not valid UTF-8.") from None
    return value


async def read_body(call: Call, max_bytes: int | None = None) -> bytes:
    """The whole body, or 413 as soon as it is known to be larger than `max_bytes`
    (`server.max_body_bytes` by default), or 408 when it has not all arrived within
    `server.body_read_timeout_s` (a client trickling it would otherwise hold the request open
    for ever: aiohttp has no read timeout)."""
    server = call.runtime.config.server
    limit = server.max_body_bytes if max_bytes is None else max_bytes
    request = call.request
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        async with asyncio.timeout(server.body_read_timeout_s):
            return await _read_all(request.content, limit)
    except TimeoutError as exc:
        raise RequestTimeoutError(
            f"The request body did not arrive within {server.body_read_timeout_s:g} seconds."
        ) from exc


async def _read_all(content: StreamReader, limit: int) -> bytes:
    """Every chunk of `content`, joined once, or 413 as soon as they pass `limit` bytes.

    Not `Request.read`, which grows a buffer chunk by chunk and copies it once more: the
    reallocations of a multi-megabyte body left the allocator's heap fragmented, and tens of
    MB of it were not given back after a burst of large bodies.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body is larger than {max_bytes} bytes.")


def decode_body(decoder: BodyDecoder[T], body: bytes) -> T:
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
