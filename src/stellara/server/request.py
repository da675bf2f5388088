"""What every model route does first: identify the request, the caller and the body."""

from __future__ import annotations

import os

from aiohttp import web

from stellara.errors import PayloadTooLargeError
from stellara.pipeline.context import RequestContext

REQUEST_ID = "x-stellara-request-id"
PROVIDER = "x-stellara-provider"
ATTEMPTS = "x-stellara-attempts"
CACHE = "x-stellara-cache"


def response_headers(
    request_id: str, ctx: RequestContext | None, is_json: bool = False
) -> dict[str, str]:
    """The `x-stellara-*` headers of a model call's answer (and its Content-Type)."""
    headers = {REQUEST_ID: request_id}
    if is_json:
        headers["Content-Type"] = "application/json"
    if ctx is not None and ctx.provider_id:
        headers[PROVIDER] = ctx.provider_id
        headers[ATTEMPTS] = str(ctx.attempts)
        headers[CACHE] = "miss"
    return headers


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def bearer_token(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer …`, else from `x-api-key` (Anthropic's SDK)."""
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return token.strip() or None
        return None
    return request.headers.get("x-api-key") or None


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be larger than `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(max_bytes) from exc


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body is larger than {max_bytes} bytes.")
