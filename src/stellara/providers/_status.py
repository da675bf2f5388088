"""The HTTP statuses every provider shares, mapped onto the `UpstreamError` tree (pure).

Each wire format's `errors.py` handles what is particular to it (its error body, which
bad-request messages it relays, how it words a prompt that is too long) and hands every other
status here, with a summary such as `HTTP 503` or `HTTP 503 UNAVAILABLE`.
"""

from __future__ import annotations

from stellara.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

MAX_RELAYED_MESSAGE = 500  # a provider's message relayed to the client is cut to this


def error_for_status(
    status: int, *, provider: str, summary: str = "", retry_after_s: float | None = None
) -> UpstreamError:
    """The error for a status whose body is not relayed (it may quote the gateway's account).

    402 (billing) counts with 401/403: the operator must act, not the client. 529 is
    Anthropic's "overloaded". 408 and 504 are timeouts.
    """
    summary = summary or f"HTTP {status}"
    if status == 429:
        return UpstreamRateLimitedError(
            f"provider {provider!r} is rate limiting the gateway",
            provider=provider,
            retry_after_s=retry_after_s,
        )
    if status in (401, 402, 403):
        what = "has a billing problem" if status == 402 else "rejected the gateway's credentials"
        return UpstreamAuthError(
            f"provider {provider!r} {what} ({summary})", provider=provider, upstream_status=status
        )
    if status == 404:
        return UpstreamNotFoundError(
            f"provider {provider!r} does not know the requested model or route ({summary})",
            provider=provider,
            upstream_status=status,
        )
    if status in (408, 504):
        return UpstreamTimeoutError(
            f"provider {provider!r} timed out ({summary})",
            provider=provider,
            upstream_status=status,
        )
    if 400 <= status < 500:
        return UpstreamBadRequestError(
            f"provider {provider!r} refused the request ({summary})",
            provider=provider,
            upstream_status=status,
        )
    what = "is overloaded" if status == 529 else "failed"
    return UpstreamUnavailableError(
        f"provider {provider!r} {what} ({summary})", provider=provider, upstream_status=status
    )
