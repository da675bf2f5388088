"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from stellara import _json

_JSON = {"Content-Type": "application/json"}


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving HTTP."""
    return web.Response(body=b'{"status":"ok"}', headers=_JSON)


async def readyz(request: web.Request) -> web.Response:
    """Ready to take model traffic: every state dependency answers.

    With the memory backend there is nothing outside the process to wait for; the Redis and SQL
    backends add their checks here as they arrive.
    """
    body = {"status": "ready", "checks": {"state_backend": {"backend": "memory", "ok": True}}}
    return web.Response(body=_json.dumps(body), headers=_JSON)


def register(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
