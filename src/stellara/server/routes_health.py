"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from stellara import _json
from stellara.state.base import StateBackend
from stellara.store.usage import UsageWriter

_JSON = {"Content-Type": "application/json"}


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving HTTP."""
    return web.Response(body=b'{"status":"ok"}', headers=_JSON)


class Readiness:
    """`GET /readyz`: ready to take model traffic when the state backend answers.

    A backend that does not answer makes the gateway `not_ready` (503) with
    `on_failure: closed`, since it then refuses model calls; with `open` it still serves (without
    limits), so it stays in rotation: 200 with status `degraded`. A usage store that fails to
    take records only degrades: requests are served while the records wait in the buffer.
    """

    def __init__(
        self,
        state: StateBackend,
        on_failure: Literal["open", "closed"],
        usage: UsageWriter | None = None,
    ) -> None:
        self._state = state
        self._on_failure = on_failure
        self._usage = usage

    async def readyz(self, request: web.Request) -> web.Response:
        is_ok = await self._state.ping()
        check = {
            "name": self._state.name,
            "backend": self._state.name,
            "ok": is_ok,
            "on_failure": self._on_failure,
        }
        if is_ok:
            status, http_status = "ready", 200
        elif self._on_failure == "open":
            status, http_status = "degraded", 200
        else:
            status, http_status = "not_ready", 503
        checks: dict[str, object] = {"state_backend": check}
        if self._usage is not None:
            usage = self._usage.status()
            checks["usage_store"] = {
                "ok": usage["healthy"],
                "pending": usage["pending"],
                "dropped": usage["dropped"],
            }
            if not usage["healthy"] and status == "ready":
                status = "degraded"
        body = {"status": status, "checks": checks}
        return web.Response(status=http_status, body=_json.dumps(body), headers=_JSON)


def register(
    app: web.Application,
    state: StateBackend,
    on_failure: Literal["open", "closed"],
    usage: UsageWriter | None = None,
) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", Readiness(state, on_failure, usage).readyz)
