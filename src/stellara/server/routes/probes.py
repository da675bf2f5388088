"""Liveness and readiness probes: `GET /healthz`, `GET /readyz`.

Ready means ready to take model traffic: the state backend answers. One that does not makes
the gateway `not_ready` (503) with `on_failure: closed`, since it then refuses model calls;
with `open` it still serves, each process enforcing the limits on its own (`limits:
"local"` once the backend counts as down), so it stays in rotation: 200 with status
`degraded`. A usage store that fails to
take records only degrades: requests are served while the records wait in the buffer.
"""

from __future__ import annotations

from aiohttp import web

from stellara import _json
from stellara.server.schemas import HealthStatus, Readiness
from stellara.server.spec import Access, Call, Reply, Route

_JSON = {"Content-Type": "application/json"}


async def healthz(call: Call) -> web.StreamResponse:
    """The process is up and serving HTTP."""
    return web.Response(body=b'{"status":"ok"}', headers=_JSON)


async def readyz(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    state = runtime.state
    on_failure = runtime.config.state.on_failure
    is_ok = await state.ping()
    check = {
        "name": state.name,
        "backend": state.name,
        "ok": is_ok,
        "on_failure": on_failure,
        "limits": _limits_mode(runtime.limiter.circuit.is_open, on_failure),
    }
    if is_ok:
        status, http_status = "ready", 200
    elif on_failure == "open":
        status, http_status = "degraded", 200
    else:
        status, http_status = "not_ready", 503
    usage = runtime.usage.status()
    checks: dict[str, object] = {
        "state_backend": check,
        "usage_store": {
            "ok": usage["healthy"],
            "pending": usage["pending"],
            "dropped": usage["dropped"],
        },
    }
    if not usage["healthy"] and status == "ready":
        status = "degraded"
    body = {"status": status, "checks": checks}
    return web.Response(status=http_status, body=_json.dumps(body), headers=_JSON)


def _limits_mode(is_backend_down: bool, on_failure: str) -> str:
    """`shared` (on the state backend), `local` (each process on its own while the backend is
    down, `on_failure: open`) or `refused` (backend down, `on_failure: closed`)."""
    if not is_backend_down:
        return "shared"
    return "local" if on_failure == "open" else "refused"


ROUTES = (
    Route("GET", "/healthz", healthz, Access.PUBLIC, "Liveness", Reply("Up", HealthStatus)),
    Route(
        "GET",
        "/readyz",
        readyz,
        Access.PUBLIC,
        "Readiness",
        Reply("Ready", Readiness),
        errors={503: "Not ready (the state backend is down and `on_failure: closed`)"},
    ),
)
