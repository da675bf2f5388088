"""What every model route does first: identify the request, the caller and the body."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from aiohttp import web

from stellara._clock import Clock
from stellara.cache.stage import CacheControl
from stellara.errors import (
    ClientError,
    InvalidRequestError,
    PayloadTooLargeError,
    PermissionDeniedError,
    StellaraError,
)
from stellara.limits import ratelimit_headers
from stellara.pipeline.auth import Authenticator, Principal
from stellara.pipeline.context import RequestContext
from stellara.pipeline.gateway import Gateway
from stellara.server.errors import decode_body, internal_error

T = TypeVar("T")
logger = logging.getLogger(__name__)

REQUEST_ID = "x-stellara-request-id"
PROVIDER = "x-stellara-provider"
ATTEMPTS = "x-stellara-attempts"
CACHE = "x-stellara-cache"
CACHE_TTL = "x-stellara-cache-ttl"
ROUTE = "x-stellara-route"
MAX_CACHE_TTL_S = 30 * 86_400.0
SESSION_ID = "X-Session-Id"
# Session ids become state-backend keys; a cap keeps a client from making them arbitrarily big.
MAX_SESSION_ID_CHARS = 256
# When the app carries no config (a bare test app): `ServerConfig.body_read_timeout_s`'s default.
DEFAULT_BODY_READ_TIMEOUT_S = 60.0


class RequestTimeoutError(ClientError):
    """408: the client did not send its whole body within `server.body_read_timeout_s`."""

    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


def response_headers(
    request_id: str, ctx: RequestContext | None, is_json: bool = False
) -> dict[str, str]:
    """The `x-stellara-*` and `x-ratelimit-*` headers of a model call's answer (and its
    Content-Type). The rate-limit headers come from the request's limits ticket, so 429s and
    upstream errors carry them as successes do; a request refused before the limits stage
    (bad key, bad body) has none."""
    headers = {REQUEST_ID: request_id}
    if is_json:
        headers["Content-Type"] = "application/json"
    if ctx is None:
        return headers
    if ctx.provider_id:
        headers[PROVIDER] = ctx.provider_id
        headers[ATTEMPTS] = str(ctx.attempts)
        headers[CACHE] = ctx.cache_status
        if ctx.route:
            headers[ROUTE] = ctx.route
    ticket = ctx.ticket
    if ticket is not None and ticket.admission is not None:
        headers.update(ratelimit_headers(ticket.admission))
    return headers


def new_context(
    request: web.Request,
    request_id: str,
    principal: Principal,
    clock: Clock,
    timeout_s: float,
) -> RequestContext:
    """The pipeline's context for a model call, with its `X-Session-Id`."""
    now = clock.monotonic()
    session_id = request.headers.get(SESSION_ID) or None
    if session_id is not None and len(session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidRequestError(
            f"The {SESSION_ID} header is longer than {MAX_SESSION_ID_CHARS} characters."
        )
    ctx = RequestContext(
        request_id,
        principal,
        now,
        now + timeout_s,
        session_id=session_id,
        started_epoch_s=clock.time(),
    )
    cache_control = request.headers.get("Cache-Control")
    cache_ttl = request.headers.get(CACHE_TTL)
    if cache_control or cache_ttl:
        ctx.cache_control = _cache_control(cache_control or "", cache_ttl)
    return ctx


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


def unexpected_error(
    gateway: Gateway, request_id: str, ctx: RequestContext | None
) -> StellaraError:
    """A bug met at the HTTP boundary: logged with its traceback, recorded as the request's
    end (so it still leaves a usage record), and answered as a 500 naming the request id."""
    logger.exception("unexpected error in request %s", request_id)
    error = internal_error(request_id)
    if ctx is not None:
        gateway.publish_failure(ctx, error)
    return error


# A random process prefix and a counter: unique across processes and restarts without a
# getrandom() call per request (which showed in the profile). Not a secret, so guessable is fine.
_REQUEST_ID_PREFIX = "req_" + os.urandom(6).hex()
_request_numbers = itertools.count()


def new_request_id() -> str:
    """`req_` and 24 hex digits: 12 of the process, 12 of the request's number in it."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers) & 0xFFFF_FFFF_FFFF:012x}"


def bearer_token(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer …`, else from `x-api-key` (Anthropic's SDK)."""
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return _utf8_header("Authorization", token.strip()) or None
        return None
    return _utf8_header("x-api-key", request.headers.get("x-api-key")) or None


def _utf8_header(name: str, value: str | None) -> str | None:
    """`value`, or 400 when it holds bytes that are not UTF-8 (kept by aiohttp as surrogates)."""
    if value is None or value.isascii():
        return value
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidRequestError(f"The {name} header is not valid UTF-8.") from None
    return value


def check_header_values(request: web.Request) -> None:
    """400 for a header value that is not UTF-8. aiohttp keeps such bytes as lone surrogates,
    which pass through the gateway unnoticed until something encodes them (hashing a key,
    writing a session id to the usage store) and fails there."""
    for name, value in request.headers.items():
        _utf8_header(name, value)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be larger than `max_bytes`, or 408
    when it has not all arrived within `server.body_read_timeout_s` (a client trickling it
    would otherwise hold the request open for ever: aiohttp has no read timeout)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    timeout_s = _body_read_timeout_s(request)
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(max_bytes) from exc
    except TimeoutError as exc:
        raise RequestTimeoutError(
            f"The request body did not arrive within {timeout_s:g} seconds."
        ) from exc


def _body_read_timeout_s(request: web.Request) -> float:
    from stellara.server.app import CONFIG  # app.py imports this module: import on use

    config = request.config_dict.get(CONFIG)
    return DEFAULT_BODY_READ_TIMEOUT_S if config is None else config.server.body_read_timeout_s


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body is larger than {max_bytes} bytes.")


@dataclass(frozen=True, slots=True)
class ModelCallIntake:
    """What every model route does first: authenticate, read the body within the limit,
    decode it, and open the request's context."""

    auth: Authenticator
    clock: Clock
    max_body_bytes: int
    timeout_s: float

    async def begin(
        self, request: web.Request, request_id: str, decoder: msgspec.json.Decoder[T]
    ) -> tuple[RequestContext, T]:
        check_header_values(request)
        principal = await self.auth.authenticate(bearer_token(request), model_call=True)
        body = decode_body(decoder, await read_body(request, self.max_body_bytes))
        return new_context(request, request_id, principal, self.clock, self.timeout_s), body


async def require_master(auth: Authenticator, request: web.Request, message: str) -> Principal:
    """The master key's principal, or 401 / 403 (`message`)."""
    principal = await auth.authenticate(bearer_token(request))
    if not principal.is_master:
        raise PermissionDeniedError(message, code="master_key_required")
    return principal
