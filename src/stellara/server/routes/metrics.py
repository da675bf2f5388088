"""`GET /metrics`: the Prometheus exposition of one gateway (every worker's, with `--workers`).

No authentication: Prometheus scrapes it, and nothing in it is secret (no keys, users or
prompts; see `stellara.telemetry.metrics`).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from stellara.assembly.observability import refresh
from stellara.errors import RouteNotFoundError
from stellara.server.spec import Access, Call, Reply, Route

_HEADERS = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}


async def metrics(call: Call) -> web.StreamResponse:
    gateway_metrics = call.runtime.metrics
    if gateway_metrics is None:
        raise RouteNotFoundError("Metrics are off (telemetry.metrics: false).")
    refresh(gateway_metrics)
    # Rendering reads every series (and, with workers, their files): off the event loop.
    body = await asyncio.to_thread(generate_latest, gateway_metrics.registry)
    response = web.Response(body=body, headers=_HEADERS)
    response.enable_compression()  # only when the scraper accepts it; Prometheus does
    return response


ROUTES = (
    Route(
        "GET",
        "/metrics",
        metrics,
        Access.PUBLIC,
        "Prometheus exposition (requests, latency, tokens, cost, breakers, limits, cache, "
        "in-flight); no key",
        Reply("text/plain; version=0.0.4", media="text/plain"),
        errors={404: "Metrics are off (`telemetry.metrics: false`)"},
    ),
)
