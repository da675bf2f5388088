"""The outbound HTTP seam: one pooled aiohttp session per provider, and its errors.

Every adapter sends through `UpstreamHTTP`, so connection pooling, timeouts, the mapping of
transport failures (refused, reset, timed out) to `UpstreamError`s, and the reading of an error
answer (with the provider's own `ErrorReader`) live in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

import aiohttp
from yarl import URL

from stellara.config.models import ProviderSettings
from stellara.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

# aiohttp refuses lines longer than twice its read buffer; one SSE event can carry a whole
# answer (or an audio delta) on one line, so the buffer is sized for that.
READ_BUFFER_BYTES = 4 * 1024 * 1024


class ErrorReader(Protocol):
    """A wire format's reading of an error answer (`<provider>.errors.error_from_response`)."""

    def __call__(
        self, status: int, body: bytes, *, provider: str, retry_after: str | None
    ) -> UpstreamError: ...


def parse_url(url: str) -> URL:
    """Parse once at start-up: aiohttp would otherwise re-parse a string URL per request."""
    return URL(url, encoded=False)


class UpstreamHTTP:
    """A lazily created, shared `aiohttp.ClientSession` for one provider.

    Created on first use because a session must be made inside the running event loop.
    """

    def __init__(
        self,
        settings: ProviderSettings,
        provider_headers: Mapping[str, str],
        read_error: ErrorReader,
    ) -> None:
        """`provider_headers` are the wire format's own (auth, API version); the entry's
        configured `headers` go on top, so an operator can add or override any. `read_error`
        turns the provider's error answers into `UpstreamError`s."""
        self._provider_id = settings.id
        self._read_error = read_error
        self._connect_timeout_s = settings.connect_timeout_s
        self._max_connections = settings.max_connections
        self._session: aiohttp.ClientSession | None = None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(provider_headers)
        headers.update(settings.headers)
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                ttl_dns_cache=300,
                keepalive_timeout=30,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                read_bufsize=READ_BUFFER_BYTES,
                # Cookies a provider sets must not travel with other users' requests.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def post_json(self, url: URL, body: bytes, *, timeout_s: float) -> bytes:
        """POST `body` and return the answer's body, all of it within `timeout_s`.

        Raises:
            UpstreamError: The provider answered with an error (read by `read_error`), or the
                transport failed.
        """
        async with self._post(url, body, timeout_s=timeout_s, is_streaming=False) as response:
            payload = await response.read()
            if response.status != 200:
                raise self._error(response, payload)
        return payload

    @asynccontextmanager
    async def open_stream(
        self, url: URL, body: bytes, *, timeout_s: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `body` and yield the streaming answer, which must start within `timeout_s` and
        never stay silent for longer; an error answer raises as `post_json`'s does."""
        async with self._post(url, body, timeout_s=timeout_s, is_streaming=True) as response:
            if response.status != 200:
                raise self._error(response, await response.read())
            yield response

    def _error(self, response: aiohttp.ClientResponse, body: bytes) -> UpstreamError:
        return self._read_error(
            response.status,
            body,
            provider=self._provider_id,
            retry_after=response.headers.get("Retry-After"),
        )

    @asynccontextmanager
    async def _post(
        self,
        url: URL,
        body: bytes,
        *,
        timeout_s: float,
        is_streaming: bool,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `body` and yield the response, whatever its status; transport failures become
        `UpstreamError`s."""
        connect_s = min(self._connect_timeout_s, timeout_s)
        if is_streaming:
            timeout = aiohttp.ClientTimeout(sock_connect=connect_s, sock_read=timeout_s)
        else:
            timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_s)
        provider = self._provider_id
        try:
            headers = self._stream_headers if is_streaming else self._headers
            async with self._get_session().post(
                url, data=body, headers=headers, timeout=timeout
            ) as response:
                yield response
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                f"provider {provider!r} did not answer within {timeout_s:g} s", provider=provider
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamUnavailableError(
                f"provider {provider!r} broke off its answer", provider=provider
            ) from exc
        except aiohttp.http_exceptions.HttpProcessingError as exc:
            raise UpstreamProtocolError(
                f"provider {provider!r} sent a malformed HTTP message: {type(exc).__name__}",
                provider=provider,
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailableError(
                f"provider {provider!r} is unreachable: {type(exc).__name__}", provider=provider
            ) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
