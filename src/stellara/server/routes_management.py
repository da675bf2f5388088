"""Quota and rate-limit status and resets (DESIGN §3, §7).

`GET /ai-orchestration/quotas/{userId}` and `GET /ai-orchestration/rate-limits/{userId}` answer
`{"user", "tier", "shadow", "limited", "windows": {<window>: {<dimension>: {used, limit,
remaining, reset_at, reset_at_epoch_s}}}}`. Windows are `daily`, `monthly`, `session` for
quotas (`session` only with an `X-Session-Id` header or `session_id` query parameter) and
`rate`, `burst` for rate limits, whose entries also carry `window_s`. `reset_at` is ISO-8601
UTC for people, `reset_at_epoch_s` the same instant for programs.

A user key reads its own user's status only; the master key reads anyone's and is the only
key that may reset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from stellara import _json
from stellara.errors import PermissionDeniedError, StellaraError
from stellara.limits import Limiter
from stellara.limits.limiter import StatusKind
from stellara.limits.policy import QUOTA_PREFIX
from stellara.pipeline.auth import Authenticator, Principal
from stellara.server.errors import error_response
from stellara.server.request import SESSION_ID, bearer_token
from stellara.state.base import Limit, LimitState, WindowLimit

_JSON = {"Content-Type": "application/json"}
QUOTAS = "/ai-orchestration/quotas/{userId}"
RATE_LIMITS = "/ai-orchestration/rate-limits/{userId}"


class ManagementRoutes:
    """The limits part of the management API, bound to one app's limiter (None: no tiers)."""

    def __init__(self, limiter: Limiter | None, auth: Authenticator) -> None:
        self._limiter = limiter
        self._auth = auth

    def register(self, app: web.Application) -> None:
        app.router.add_get(QUOTAS, self.quotas)
        app.router.add_post(QUOTAS + "/reset", self.reset_quotas)
        app.router.add_get(RATE_LIMITS, self.rate_limits)
        app.router.add_post(RATE_LIMITS + "/reset", self.reset_rate_limits)

    async def quotas(self, request: web.Request) -> web.Response:
        return await self._status(request, "quota")

    async def rate_limits(self, request: web.Request) -> web.Response:
        return await self._status(request, "rate")

    async def reset_quotas(self, request: web.Request) -> web.Response:
        return await self._reset(request, "quota")

    async def reset_rate_limits(self, request: web.Request) -> web.Response:
        return await self._reset(request, "rate")

    async def _status(self, request: web.Request, kind: StatusKind) -> web.Response:
        user = request.match_info["userId"]
        try:
            principal = await self._auth.authenticate(bearer_token(request))
            if not principal.is_master and principal.user != user:
                raise PermissionDeniedError(
                    "A user key may read only its own user's limits.", code="permission_denied"
                )
            body = await self._describe(request, principal, user, kind)
        except StellaraError as exc:
            return error_response(exc)
        return web.Response(body=_json.dumps(body), headers=_JSON)

    async def _describe(
        self, request: web.Request, principal: Principal, user: str, kind: StatusKind
    ) -> dict[str, Any]:
        limiter = self._limiter
        if limiter is None:
            return {"user": user, "tier": None, "shadow": False, "limited": False, "windows": {}}
        key_tier = principal.tier if principal.user == user else None
        session_id = request.query.get("session_id") or request.headers.get(SESSION_ID)
        policy, states, _ = await limiter.status(user, key_tier, kind, session_id=session_id)
        tier = policy.tier if policy else limiter.policy.tier_of(user, key_tier)
        limits = {limit.name: limit for limit in policy.limits} if policy else {}
        windows: dict[str, dict[str, Any]] = {}
        for state in states:
            window, _, dimension = state.name.removeprefix(QUOTA_PREFIX).partition(":")
            windows.setdefault(window, {})[dimension] = _entry(state, limits[state.name])
        return {
            "user": user,
            "tier": tier,
            "shadow": bool(policy and policy.is_shadow),
            "limited": policy is not None,
            "windows": windows,
        }

    async def _reset(self, request: web.Request, kind: StatusKind) -> web.Response:
        user = request.match_info["userId"]
        try:
            principal = await self._auth.authenticate(bearer_token(request))
            if not principal.is_master:
                raise PermissionDeniedError(
                    "Resets need the master key.", code="master_key_required"
                )
            if self._limiter is not None:
                await self._limiter.reset(user, kind)
        except StellaraError as exc:
            return error_response(exc)
        what = "quotas" if kind == "quota" else "rate_limits"
        return web.Response(body=_json.dumps({"user": user, "reset": what}), headers=_JSON)


def _entry(state: LimitState, limit: Limit) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "used": state.used,
        "limit": state.limit,
        "remaining": state.remaining,
        "reset_at": datetime.fromtimestamp(state.reset_at, UTC).isoformat().replace("+00:00", "Z"),
        "reset_at_epoch_s": state.reset_at,
    }
    if isinstance(limit, WindowLimit):
        entry["window_s"] = limit.window_s
    return entry
