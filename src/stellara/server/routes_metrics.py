"""`GET /metrics`: the Prometheus exposition of one gateway (every worker's, with `--workers`).

No authentication: Prometheus scrapes it, and nothing in it is secret (no keys, users or
prompts; see `stellara.telemetry.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from stellara.telemetry.metrics import REFRESH_S, GatewayMetrics

logger = logging.getLogger(__name__)

_HEADERS = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}


class MetricsRoutes:
    """Serves one app's `GatewayMetrics`; in multiprocess mode it also keeps this worker's
    pulled readings fresh in the shared files, for scrapes another worker answers."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def register(self, app: web.Application) -> None:
        """Add the route (before any catch-all route) and, with workers, the refresh loop."""
        app.router.add_get("/metrics", self.metrics)
        if self._metrics.multiprocess_dir is not None:
            app.cleanup_ctx.append(self._refreshing)

    async def metrics(self, request: web.Request) -> web.Response:
        self._refresh()
        # Rendering reads every series (and, with workers, their files): off the event loop.
        body = await asyncio.to_thread(generate_latest, self._metrics.registry)
        response = web.Response(body=body, headers=_HEADERS)
        response.enable_compression()  # only when the scraper accepts it; Prometheus does
        return response

    async def _refreshing(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._refresh_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _refresh_forever(self) -> None:
        while True:
            self._refresh()
            await asyncio.sleep(REFRESH_S)

    def _refresh(self) -> None:
        try:
            self._metrics.refresh()
        except Exception:  # a broken reading must cost its own series, not the whole scrape
            logger.exception("metrics: reading the gateway's state failed")
