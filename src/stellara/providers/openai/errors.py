"""OpenAI error responses → Stellara's `UpstreamError`s (pure)."""

from __future__ import annotations

import msgspec

from stellara.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from stellara.providers._retry_after import parse_retry_after
from stellara.providers.openai.wire import OpenAIErrorDetail, error_body_decoder

_MAX_RELAYED_MESSAGE = 500
# OpenAI's `context_length_exceeded`; Azure's `content_filter` (its prompt filter).
_BAD_REQUEST_KINDS: dict[str, type[UpstreamBadRequestError]] = {
    "context_length_exceeded": ContextWindowExceededError,
    "content_filter": ContentFilterError,
}


def error_from_response(
    status: int, body: bytes, *, provider: str, retry_after: str | None
) -> UpstreamError:
    """The `UpstreamError` for an HTTP error answer.

    Only a bad-request message is relayed to the client (it is about the client's input); the
    others may quote the gateway's credentials, so they are summarised instead.
    """
    detail = _detail(body)
    if status in (400, 413, 422) and detail is not None:
        message = detail.message[:_MAX_RELAYED_MESSAGE] or f"provider {provider!r} refused it"
        kind = _BAD_REQUEST_KINDS.get(str(detail.code), UpstreamBadRequestError)
        return kind(message, provider=provider, upstream_status=status, param=detail.param)
    if status == 429:
        return UpstreamRateLimitedError(
            f"provider {provider!r} is rate limiting the gateway",
            provider=provider,
            retry_after_s=parse_retry_after(retry_after),
        )
    if status in (401, 403):
        return UpstreamAuthError(
            f"provider {provider!r} rejected the gateway's credentials (HTTP {status})",
            provider=provider,
            upstream_status=status,
        )
    if status == 408:
        return UpstreamTimeoutError(
            f"provider {provider!r} timed out (HTTP 408)", provider=provider, upstream_status=status
        )
    if status == 404:
        return UpstreamNotFoundError(
            f"provider {provider!r} does not know the requested model or route (HTTP 404)",
            provider=provider,
            upstream_status=status,
        )
    if 400 <= status < 500:
        return UpstreamBadRequestError(
            f"provider {provider!r} refused the request (HTTP {status})",
            provider=provider,
            upstream_status=status,
        )
    return UpstreamUnavailableError(
        f"provider {provider!r} failed (HTTP {status})", provider=provider, upstream_status=status
    )


def _detail(body: bytes) -> OpenAIErrorDetail | None:
    try:
        return error_body_decoder.decode(body).error
    except msgspec.DecodeError:
        return None
