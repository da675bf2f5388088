"""The live dashboard: a static page and the JSON feed it polls.

- `GET /dashboard`: the page for a signed-in browser, else the login form (200).
  `GET /dashboard?key=<master key>` signs in once and redirects to `/dashboard`, so the key
  leaves the address bar (a wrong key answers the form again, with the error).
- `POST /dashboard/login` (form field `key`): open a session and set its cookie.
  `POST /dashboard/logout`: end the session on every process and clear the cookie.
- `GET /dashboard/data`: the feed, composed here from every part the page shows; 401 without
  a valid session cookie (the boundary checks it: `Access.COOKIE`).
- `GET /dashboard/experiments`: the experiments panel's feed (cookie too), polled apart and
  less often, since it reads the SQL store: each experiment's report (`experiments.report`)
  without latency percentiles, which the panel does not show.
- `GET /dashboard/static/{name}`: the page's script, style sheet and icon (no secrets).

Sessions are `pipeline.sessions.DashboardSessions` tokens in an HttpOnly, SameSite=Strict
cookie, kept by the state backend. When it does not answer, every route that needs a session
answers 503 (the pages with the form and a notice), never a signed-in default. Every page is
served with a Content-Security-Policy that allows only this origin, so the page runs no inline
script and loads nothing from elsewhere.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from stellara import __version__, _json
from stellara.errors import RouteNotFoundError, StateBackendError, StoreUnavailableError
from stellara.experiments.report import experiment_report
from stellara.limits import Limiter
from stellara.limits.limiter import StatusKind
from stellara.pipeline.sessions import SESSION_S
from stellara.server.boundary import SESSION_COOKIE
from stellara.server.spec import OBJECT, Access, Call, Reply, Route

# The feed waits on the state backend (limits, stats of other processes); a page polling a
# backend that hangs gets a 503 rather than piling up requests.
DATA_TIMEOUT_S = 5.0
# Limit bars are shown for this many of the busiest users: one state read each per poll.
MAX_LIMIT_USERS = 10
# The experiments panel shows this many: those not stopped, then the last stopped.
MAX_EXPERIMENTS = 12
_STATUS_KINDS: tuple[StatusKind, ...] = ("rate", "quota")
_ERROR_MARKER = "<!-- login-error -->"
_SESSIONS_DOWN = "Sessions are unavailable: the state backend does not answer. Try again soon."
_LOGOUT_UNFINISHED = (
    "Signed out in this browser only: the state backend does not answer, so the session "
    "lasts until it expires."
)
_STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # a `?key=` URL must never travel in a Referer
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@functools.cache
def _file(name: str) -> bytes:
    """One of the dashboard's packaged files (read once: they never change)."""
    return resources.files("stellara.server").joinpath("dashboard", name).read_bytes()


async def page(call: Call) -> web.StreamResponse:
    key = call.request.query.get("key")
    if key is not None:  # even when signed in: the key must leave the address bar
        return await _sign_in(call, key)
    cookie = call.request.cookies.get(SESSION_COOKIE)
    try:
        is_signed_in = await call.runtime.sessions.is_valid(cookie)
    except StateBackendError:
        return _login_page(_SESSIONS_DOWN, 503)
    return _html(_file("index.html")) if is_signed_in else _login_page()


async def login(call: Call) -> web.StreamResponse:
    form = await call.request.post()
    key = form.get("key")
    return await _sign_in(call, key if isinstance(key, str) else "")


async def logout(call: Call) -> web.StreamResponse:
    """Ends the session server-side first: a cleared cookie alone leaves a copied one
    working."""
    response: web.Response
    try:
        await call.runtime.sessions.revoke(call.request.cookies.get(SESSION_COOKIE))
        response = _to_dashboard()
    except StateBackendError:
        response = _login_page(_LOGOUT_UNFINISHED, 503)
    response.del_cookie(SESSION_COOKIE, path="/dashboard")
    return response


async def data(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    try:
        async with asyncio.timeout(DATA_TIMEOUT_S):
            monitoring = await runtime.monitoring.detailed()
            limits = await _limits(runtime.limiter, monitoring)
    except TimeoutError:
        raise StateBackendError("The dashboard's data did not come in time.") from None
    clock = runtime.clock
    body = {
        "server": {
            "version": __version__,
            "uptime_s": round(clock.monotonic() - runtime.started_at, 3),
            "time": clock.time(),
        },
        "monitoring": monitoring,
        "health": {
            "providers": runtime.attempts.health.report(),
            "breakers": runtime.attempts.breakers.snapshot(),
        },
        "cache": runtime.cache.stats() if runtime.cache is not None else None,
        "limits": limits,
    }
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return web.Response(body=_json.dumps(body), headers=headers)


async def experiments(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    try:
        async with asyncio.timeout(DATA_TIMEOUT_S):
            records = await runtime.experiment_store.list()
            records.sort(key=lambda r: (r.status == "stopped", -r.updated_at))
            reports = [
                await experiment_report(
                    record,
                    runtime.experiments.get(record.config.id),
                    runtime.config.feedback.metrics,
                    runtime.experiment_report,
                    with_latency=False,
                )
                for record in records[:MAX_EXPERIMENTS]
            ]
    except TimeoutError:
        raise StoreUnavailableError("The experiments did not come in time.") from None
    body = {"experiments": msgspec.to_builtins(reports), "total": len(records)}
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return web.Response(body=_json.dumps(body), headers=headers)


async def static(call: Call) -> web.StreamResponse:
    name = call.request.match_info["name"]
    content_type = _STATIC_TYPES.get(name)
    if content_type is None:
        raise RouteNotFoundError(f"No dashboard file {name!r}.")
    headers = {**_PAGE_HEADERS, "Content-Type": content_type}
    headers["Cache-Control"] = "no-cache"  # revalidated: a new version shows at once
    return web.Response(body=_file(name), headers=headers)


async def _sign_in(call: Call, key: str) -> web.StreamResponse:
    sessions = call.runtime.sessions
    if not sessions.is_open:
        return _login_page("The dashboard needs server.master_key in the config.", 403)
    if not sessions.is_master_key(key):
        # 200, not 401: a browser logs every 401 page as a console error.
        return _login_page("That is not the master key.")
    try:
        token = await sessions.issue()
        # the session this browser replaces ends too, or a copy of its cookie would outlive it
        await sessions.revoke(call.request.cookies.get(SESSION_COOKIE))
    except StateBackendError:
        return _login_page(_SESSIONS_DOWN, 503)
    response = _to_dashboard()
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_S,
        path="/dashboard",
        httponly=True,
        samesite="Strict",
        secure=call.request.secure,  # over TLS, never sent back in clear text
    )
    return response


def _login_page(error: str | None = None, status: int = 200) -> web.Response:
    page = _file("login.html").decode()
    if error is not None:
        notice = f'<p class="login-error" role="alert" data-testid="login-error">{error}</p>'
        page = page.replace(_ERROR_MARKER, notice)
    return _html(page.encode(), status)


async def _limits(limiter: Limiter, monitoring: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rate-limit and quota use of the busiest users, in the monitoring's order."""
    top = monitoring.get("limits", {}).get("top_users", [])[:MAX_LIMIT_USERS]
    return list(await asyncio.gather(*(_user_limits(limiter, entry) for entry in top)))


async def _user_limits(limiter: Limiter, entry: Mapping[str, Any]) -> dict[str, Any]:
    """One user's bars. The tier is the user's own (config, configured key, default): a
    virtual key's tier is not known here."""
    user = str(entry["user"])
    bars: list[dict[str, Any]] = []
    tier: str | None = None
    try:
        for kind in _STATUS_KINDS:
            policy, states, _ = await limiter.status(user, None, kind, session_id=None)
            if policy is not None:
                tier = policy.tier
            bars.extend(
                {"name": s.name, "used": s.used, "limit": s.limit, "reset_at_epoch_s": s.reset_at}
                for s in states
            )
    except StateBackendError:
        return {"user": user, "tier": None, "limits": [], "error": "state backend unavailable"}
    return {"user": user, "tier": tier, "limits": bars}


def _html(body: bytes, status: int = 200) -> web.Response:
    headers = {**_PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"}
    return web.Response(status=status, body=body, headers=headers)


def _to_dashboard() -> web.Response:
    """303: the browser follows with a GET, and a reload never re-posts the form."""
    return web.Response(status=303, headers={**_PAGE_HEADERS, "Location": "/dashboard"})


_HTML = "text/html"
_REDIRECT = Reply("To /dashboard, the session cookie set (or cleared)", status=303, media=_HTML)
ROUTES = (
    Route(
        "GET",
        "/dashboard",
        page,
        Access.PUBLIC,
        "The live dashboard, or its sign-in form; `?key=<master key>` signs in and redirects "
        "to /dashboard without the key",
        Reply("The page or the form", media=_HTML),
        query=("key",),
    ),
    Route(
        "POST",
        "/dashboard/login",
        login,
        Access.PUBLIC,
        "Sign in with the master key (form field `key`): an HttpOnly, SameSite=Strict "
        "session cookie for 12 h",
        _REDIRECT,
        body={"type": "object", "properties": {"key": {"type": "string"}}},
        body_media="application/x-www-form-urlencoded",
    ),
    Route(
        "POST",
        "/dashboard/logout",
        logout,
        Access.PUBLIC,
        "Sign out: the session ends on every process, and the cookie is cleared",
        _REDIRECT,
    ),
    Route(
        "GET",
        "/dashboard/data",
        data,
        Access.COOKIE,
        "The page's feed: monitoring, health and breakers, cache, the busiest users' limits, "
        "server (session cookie)",
        Reply("Feed", OBJECT),
        errors={503: "The state backend does not answer: no session check, or no data in time"},
    ),
    Route(
        "GET",
        "/dashboard/experiments",
        experiments,
        Access.COOKIE,
        f"The experiments panel's feed: the reports of {MAX_EXPERIMENTS} experiments, those "
        "not stopped first, without latency percentiles (session cookie)",
        Reply("Feed", OBJECT),
        errors={503: "The state backend (session check) or the SQL store does not answer in time"},
    ),
    Route(
        "GET",
        "/dashboard/static/{name}",
        static,
        Access.PUBLIC,
        "The page's script, style sheet and icon",
        Reply("The file", media="application/octet-stream"),
        errors={404: "No such file"},
    ),
)
