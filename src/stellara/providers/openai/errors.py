"""OpenAI error responses → Stellara's `UpstreamError`s (pure)."""

from __future__ import annotations

import msgspec

from stellara.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    UpstreamBadRequestError,
    UpstreamError,
)
from stellara.providers._retry_after import parse_retry_after
from stellara.providers._status import MAX_RELAYED_MESSAGE, error_for_status
from stellara.wire.openai import OpenAIErrorDetail, error_body_decoder

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
        message = detail.message[:MAX_RELAYED_MESSAGE] or f"provider {provider!r} refused it"
        kind = _BAD_REQUEST_KINDS.get(str(detail.code), UpstreamBadRequestError)
        return kind(message, provider=provider, upstream_status=status, param=detail.param)
    return error_for_status(status, provider=provider, retry_after_s=parse_retry_after(retry_after))


def _detail(body: bytes) -> OpenAIErrorDetail | None:
    try:
        return error_body_decoder.decode(body).error
    except msgspec.DecodeError:
        return None
