"""Quota and rate-limit status and resets.

`GET /ai-orchestration/quotas/{userId}` and `GET /ai-orchestration/rate-limits/{userId}` answer
`{"user", "tier", "shadow", "limited", "windows": {<window>: {<dimension>: {used, limit,
remaining, reset_at, reset_at_epoch_s}}}}`. Windows are `daily`, `monthly`, `session` for
quotas (`session` only with an `X-Session-Id` header or `session_id` query parameter) and
`rate`, `burst` for rate limits, whose entries also carry `window_s`. `reset_at` is ISO-8601
UTC for people, `reset_at_epoch_s` the same instant for programs. `local_admissions` counts the
user's requests this process admitted on its own limits while the state backend was down, and
`in_flight` the user's model calls in flight on this process (counted when a concurrency limit
applies).

A user key reads its own user's status only; the master key reads anyone's and is the only
key that may reset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from stellara.errors import PermissionDeniedError
from stellara.limits.limiter import StatusKind
from stellara.limits.policy import QUOTA_PREFIX
from stellara.server.intake import SESSION_ID, json_response
from stellara.server.schemas import LimitReset, LimitStatus
from stellara.server.spec import Access, Call, Reply, Route
from stellara.state.base import Limit, LimitState, WindowLimit

QUOTAS = "/ai-orchestration/quotas/{userId}"
RATE_LIMITS = "/ai-orchestration/rate-limits/{userId}"


async def quotas(call: Call) -> web.StreamResponse:
    return await _status(call, "quota")


async def rate_limits(call: Call) -> web.StreamResponse:
    return await _status(call, "rate")


async def reset_quotas(call: Call) -> web.StreamResponse:
    return await _reset(call, "quota")


async def reset_rate_limits(call: Call) -> web.StreamResponse:
    return await _reset(call, "rate")


async def _status(call: Call, kind: StatusKind) -> web.StreamResponse:
    user = call.request.match_info["userId"]
    principal = call.caller
    if not principal.is_master and principal.user != user:
        raise PermissionDeniedError(
            "A user key may read only its own user's limits.", code="permission_denied"
        )
    limiter = call.runtime.limiter
    key_tier = principal.tier if principal.user == user else None
    request = call.request
    session_id = request.query.get("session_id") or request.headers.get(SESSION_ID)
    policy, states, _ = await limiter.status(user, key_tier, kind, session_id=session_id)
    tier = policy.tier if policy else limiter.policy.tier_of(user, key_tier)
    limits = {limit.name: limit for limit in policy.limits} if policy else {}
    windows: dict[str, dict[str, Any]] = {}
    for state in states:
        window, _, dimension = state.name.removeprefix(QUOTA_PREFIX).partition(":")
        windows.setdefault(window, {})[dimension] = _entry(state, limits[state.name])
    body = {
        "user": user,
        "tier": tier,
        "shadow": bool(policy and policy.is_shadow),
        "limited": policy is not None,
        "windows": windows,
        "local_admissions": limiter.fallback.admissions_of(user),
        "in_flight": limiter.guard.in_flight(user),
    }
    return json_response(call, body)


async def _reset(call: Call, kind: StatusKind) -> web.StreamResponse:
    user = call.request.match_info["userId"]
    await call.runtime.limiter.reset(user, kind)
    what = "quotas" if kind == "quota" else "rate_limits"
    return json_response(call, {"user": user, "reset": what})


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


_STATUS = "(own user, or master key)"
_OTHER_USER = {403: "A user key reading another user"}
ROUTES = (
    Route(
        "GET",
        QUOTAS,
        quotas,
        Access.OWN_USER,
        f"Quota use per window and dimension {_STATUS}",
        Reply("Status", LimitStatus),
        query=("session_id",),
        errors=_OTHER_USER,
    ),
    Route(
        "POST",
        QUOTAS + "/reset",
        reset_quotas,
        Access.MASTER,
        "Forget the user's quota use (master key)",
        Reply("Reset", LimitReset),
    ),
    Route(
        "GET",
        RATE_LIMITS,
        rate_limits,
        Access.OWN_USER,
        f"Rate-limit use per window and dimension {_STATUS}",
        Reply("Status", LimitStatus),
        errors=_OTHER_USER,
    ),
    Route(
        "POST",
        RATE_LIMITS + "/reset",
        reset_rate_limits,
        Access.MASTER,
        "Forget the user's rate-limit use (master key)",
        Reply("Reset", LimitReset),
    ),
)
