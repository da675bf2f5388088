"""Events POSTed in signed batches to HTTP endpoints (`telemetry.webhooks`).

A POST carries a JSON array of `{"event", "at", "data"}` (oldest first) and, when the hook has
a `secret`, `X-Stellara-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
where `<timestamp>` is the `X-Stellara-Timestamp` header (Unix seconds, fresh on each attempt):
receivers check the signature over the raw body and refuse stale timestamps. A 2xx answer
delivers the batch; 408, 429, 5xx, refused connections and timeouts are retried with
exponential backoff and jitter (a `Retry-After` is honoured) up to `max_retries` times; any
other answer drops the batch at once (the endpoint will not take it). Delivery is at least
once: a batch whose answer was lost is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import logging
import math
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from stellara import _json
from stellara._clock import Clock
from stellara.config.models import WebhookConfig
from stellara.telemetry.sinks import Envelope, EventPatterns, Queued, QueueSink

logger = logging.getLogger(__name__)

RETRY_AFTER_MAX_S = 300.0  # a longer Retry-After would hold every later event behind it
_HTTP_DATE_TOKEN = ","  # `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` rather than seconds


def redact_url(url: str) -> str:
    """`url` without credentials, query or fragment (each may hold a token): for logs and
    status."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class WebhookClient:
    """The one HTTP client, and so one connection pool, that every webhook of an app posts
    through. It opens on first use, inside the running loop; its owner closes it after the
    sinks."""

    def __init__(self, *, max_connections: int = 32) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class WebhookSink(QueueSink):
    """Batches the events one `WebhookConfig` names and delivers them to its URL.

    Args:
        config: the hook.
        client: the app's shared HTTP client.
        clock: stamps events and signatures.
        retry_first_s: the backoff before the first retry; it doubles up to `retry_max_s`.
        jitter: a number in [0, 1) per retry (tests pin it).
    """

    def __init__(
        self,
        config: WebhookConfig,
        client: WebhookClient,
        *,
        clock: Clock,
        retry_first_s: float = 0.5,
        retry_max_s: float = 30.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._where = redact_url(config.url)
        super().__init__(
            f"webhook {self._where}",
            EventPatterns(config.events),
            clock=clock,
            queue_max=config.queue_max,
            batch_max=config.batch_max,
            interval_s=config.flush_interval_s,
        )
        self._config = config
        self._client = client
        self._secret = config.secret.get_secret_value().encode() if config.secret else None
        # Content-Type last: the body is JSON whatever the configured headers say.
        self._headers = {"User-Agent": "stellara", **config.headers}
        self._headers["Content-Type"] = "application/json"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._jitter = jitter
        self._delivered = 0
        self._failed_attempts = 0
        self._last_error: str | None = None
        self._is_failing = False  # since the last delivery
        self._rejection_warned = False

    def status(self) -> dict[str, Any]:
        """Counters in events, except `failed_attempts` (POSTs that delivered nothing)."""
        return {
            "url": self._where,
            "pending": self.pending,
            "delivered": self._delivered,
            "dropped": self.dropped,
            "failed_attempts": self._failed_attempts,
            "last_error": self._last_error,
        }

    async def _send(self, batch: list[Queued]) -> None:
        body = _json.encode([Envelope.of(queued) for queued in batch])
        retry_after_s: float | None = None
        for attempt in range(1 + self._config.max_retries):
            if attempt:
                await asyncio.sleep(self._delay_s(attempt, retry_after_s))
            status, retry_after_s = await self._post(body)
            if status is not None and 200 <= status < 300:
                self._delivered += len(batch)
                self._recovered()
                return
            if status is not None and not _is_retryable(status):
                self._rejected(status, len(batch))
                return
            self._failed_attempts += 1
        self._dropped += len(batch)
        logger.warning(
            "webhook %s: %d events dropped after %d attempts (%s)",
            self._where,
            len(batch),
            1 + self._config.max_retries,
            self._last_error,
        )

    async def _post(self, body: bytes) -> tuple[int | None, float | None]:
        """One attempt: the answer's status and Retry-After (s), or None when none came."""
        timestamp = str(int(self._clock.time()))
        headers = dict(self._headers)
        headers["X-Stellara-Timestamp"] = timestamp
        if self._secret is not None:
            signed = timestamp.encode() + b"." + body
            digest = hmac.new(self._secret, signed, hashlib.sha256).hexdigest()
            headers["X-Stellara-Signature"] = f"sha256={digest}"
        session = self._client.session()
        try:
            async with session.post(
                self._config.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,  # a redirected POST would lose its body
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                # Read, so the connection goes back to the pool; a broken body changes nothing.
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(_describe(exc, self._config.timeout_s))
            return None, None
        if not 200 <= status < 300 and _is_retryable(status):
            self._failed(f"HTTP {status}")
        return status, _retry_after_s(retry_after, self._clock.time())

    def _delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Backoff before retry number `attempt` (1-based), never shorter than Retry-After."""
        backoff = min(self._retry_max_s, self._retry_first_s * 2.0 ** min(attempt - 1, 30))
        backoff *= 0.5 + self._jitter() / 2  # hooks failing together do not retry together
        if retry_after_s is not None:
            return max(backoff, min(retry_after_s, RETRY_AFTER_MAX_S))
        return backoff

    def _failed(self, error: str) -> None:
        self._last_error = error
        if not self._is_failing:
            self._is_failing = True
            logger.warning("webhook %s failing (%s); retrying", self._where, error)

    def _recovered(self) -> None:
        if self._is_failing:
            self._is_failing = False
            logger.info("webhook %s delivering again", self._where)
        self._rejection_warned = False

    def _rejected(self, status: int, count: int) -> None:
        self._failed_attempts += 1
        self._dropped += count
        self._last_error = f"HTTP {status}"
        if not self._rejection_warned:  # once until a delivery: every batch would repeat it
            self._rejection_warned = True
            logger.warning(
                "webhook %s refused a batch with HTTP %d; dropping batches it refuses",
                self._where,
                status,
            )


def _is_retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _retry_after_s(value: str | None, now: float) -> float | None:
    """`Retry-After` in seconds from now: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    if _HTTP_DATE_TOKEN in value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now)
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _describe(exc: BaseException, timeout_s: float) -> str:
    """A failure without the URL (it may hold credentials): the type and the OS's reason."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else ""
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
