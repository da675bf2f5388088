"""The live dashboard (DESIGN §3): a static page and the JSON feed it polls.

- `GET /dashboard`: the page for a signed-in browser, else the login form (200).
  `GET /dashboard?key=<master key>` signs in once and redirects to `/dashboard`, so the key
  leaves the address bar (a wrong key answers the form again, with the error).
- `POST /dashboard/login` (form field `key`), `POST /dashboard/logout`: set or clear the cookie.
- `GET /dashboard/data`: the feed, composed here from every part the page shows; 401 without
  a valid cookie.
- `GET /dashboard/static/{name}`: the page's script, style sheet and icon (no secrets).

The session cookie is `<expiry>.<HMAC-SHA256(master key, "stellara-dashboard:<expiry>")>`: any
gateway process with the same master key verifies it without shared state, and changing the
master key signs every browser out. Every page is served with a Content-Security-Policy that
allows only this origin, so the page runs no inline script and loads nothing from elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from stellara import __version__, _json
from stellara._clock import Clock
from stellara.cache.stage import AnswerCache
from stellara.errors import AuthenticationError, RouteNotFoundError, StateBackendError
from stellara.limits import Limiter
from stellara.limits.limiter import StatusKind
from stellara.server.errors import error_response

COOKIE = "stellara_dashboard"
SESSION_S = 12 * 3600
# The feed waits on the state backend (limits, stats of other processes); a page polling a
# backend that hangs gets a 503 rather than piling up requests.
DATA_TIMEOUT_S = 5.0
# Limit bars are shown for this many of the busiest users: one state read each per poll.
MAX_LIMIT_USERS = 10
_MAX_EXPIRY_DIGITS = 12  # epoch seconds until the year 33658
_STATUS_KINDS: tuple[StatusKind, ...] = ("rate", "quota")
_ERROR_MARKER = "<!-- login-error -->"
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


class MonitoringSource(Protocol):
    """What the feed needs of the monitoring service: its detailed statistics."""

    async def detailed(self) -> dict[str, Any]: ...


class DashboardRoutes:
    """Bound to one app's monitoring, health, cache and limiter.

    Args:
        master_key: the only key that signs in; None keeps the dashboard closed.
        monitoring: the detailed request statistics (`GET …/monitoring/stats` shape).
        health_report: health per provider and breaker states, as the orchestration routes
            answer them.
        cache: the answer cache, None when not configured.
        limiter: where the busiest users' rate-limit and quota use is read (None: no limits).
        clock: expiry of the sessions (wall time) and the uptime (monotonic).
    """

    def __init__(
        self,
        master_key: str | None,
        monitoring: MonitoringSource,
        health_report: Callable[[], Mapping[str, Any]],
        cache: AnswerCache | None,
        limiter: Limiter | None,
        clock: Clock,
    ) -> None:
        self._secret = master_key.encode() if master_key else None
        self._monitoring = monitoring
        self._health_report = health_report
        self._cache = cache
        self._limiter = limiter
        self._clock = clock
        self._started_at = clock.monotonic()
        files = resources.files("stellara.server").joinpath("dashboard")
        self._index = files.joinpath("index.html").read_bytes()
        self._login = files.joinpath("login.html").read_text("utf-8")
        self._static = {name: files.joinpath(name).read_bytes() for name in _STATIC_TYPES}

    def register(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self.page)
        app.router.add_post("/dashboard/login", self.login)
        app.router.add_post("/dashboard/logout", self.logout)
        app.router.add_get("/dashboard/data", self.data)
        app.router.add_get("/dashboard/static/{name}", self.static)

    async def page(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key")
        if key is not None:  # even when signed in: the key must leave the address bar
            return self._sign_in(request, key)
        if self._is_signed_in(request):
            return _html(self._index)
        return self._login_page()

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        key = form.get("key")
        return self._sign_in(request, key if isinstance(key, str) else "")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = _to_dashboard()
        response.del_cookie(COOKIE, path="/dashboard")
        return response

    async def data(self, request: web.Request) -> web.Response:
        if not self._is_signed_in(request):
            return error_response(AuthenticationError("Sign in to the dashboard first."))
        try:
            async with asyncio.timeout(DATA_TIMEOUT_S):
                monitoring = await self._monitoring.detailed()
                limits = await self._limits(monitoring)
        except TimeoutError:
            error = StateBackendError("The dashboard's data did not come in time.")
            return error_response(error, {"Cache-Control": "no-store"})
        body = {
            "server": {
                "version": __version__,
                "uptime_s": round(self._clock.monotonic() - self._started_at, 3),
                "time": self._clock.time(),
            },
            "monitoring": monitoring,
            "health": self._health_report(),
            "cache": self._cache.stats() if self._cache is not None else None,
            "limits": limits,
        }
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return web.Response(body=_json.dumps(body), headers=headers)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self._static.get(name)
        if body is None:
            return error_response(RouteNotFoundError(f"No dashboard file {name!r}."))
        headers = {**_PAGE_HEADERS, "Content-Type": _STATIC_TYPES[name]}
        headers["Cache-Control"] = "no-cache"  # revalidated: a new version shows at once
        return web.Response(body=body, headers=headers)

    def _signature(self, expires_at: int) -> str:
        assert self._secret is not None  # callers checked that a master key is configured
        message = f"stellara-dashboard:{expires_at}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _is_signed_in(self, request: web.Request) -> bool:
        value = request.cookies.get(COOKIE)
        if self._secret is None or not value:
            return False
        expiry, _, signature = value.partition(".")
        # ASCII digits only, and few of them: int() refuses "²" and 5,000-digit strings.
        if not (expiry.isascii() and expiry.isdigit()) or len(expiry) > _MAX_EXPIRY_DIGITS:
            return False
        if int(expiry) <= self._clock.time():
            return False
        return hmac.compare_digest(signature.encode(), self._signature(int(expiry)).encode())

    def _sign_in(self, request: web.Request, key: str) -> web.StreamResponse:
        if self._secret is None:
            return self._login_page("The dashboard needs server.master_key in the config.", 403)
        if not hmac.compare_digest(key.encode(), self._secret):
            # 200, not 401: a browser logs every 401 page as a console error.
            return self._login_page("That is not the master key.")
        expires_at = int(self._clock.time()) + SESSION_S
        response = _to_dashboard()
        response.set_cookie(
            COOKIE,
            f"{expires_at}.{self._signature(expires_at)}",
            max_age=SESSION_S,
            path="/dashboard",
            httponly=True,
            samesite="Strict",
            secure=request.secure,  # over TLS, never sent back in clear text
        )
        return response

    def _login_page(self, error: str | None = None, status: int = 200) -> web.Response:
        page = self._login
        if error is not None:
            notice = f'<p class="login-error" role="alert" data-testid="login-error">{error}</p>'
            page = page.replace(_ERROR_MARKER, notice)
        return _html(page.encode(), status)

    async def _limits(self, monitoring: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Rate-limit and quota use of the busiest users, in the monitoring's order."""
        limiter = self._limiter
        if limiter is None:
            return []
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
