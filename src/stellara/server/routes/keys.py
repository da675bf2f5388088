"""Virtual keys and the users behind them. Every route needs the master key.

- `POST /admin/keys` body `{"user", "team"?, "tier"?, "models"?, "limits"?, "name"?,
  "expires_at"?, "may_pin_variants"?}` → 201 `{"key_id", "key", "prefix", …}`: the only
  answer that shows the key.
  `models` are public model names (null: every model), `limits` has a tier's shape, and
  `expires_at` is ISO-8601 (UTC when no offset is given) or epoch seconds; `may_pin_variants`
  lets the key's requests pin an experiment's variant or opt out (`x-stellara-variant`).
- `GET /admin/keys` (`?user=`, `?include_revoked=true`) → `{"object": "list", "data",
  "has_more"}`, oldest first; `GET /admin/keys/{key_id}`.
- `PATCH /admin/keys/{key_id}`: the fields sent change, null clears one (`user` excepted).
- `DELETE /admin/keys/{key_id}` revokes the key (kept for the audit trail) and answers it.
- `GET /admin/users`: every user the config or the store knows, with their effective tier,
  teams and active keys; `GET /admin/users/{user}` adds the user's stored keys, revoked ones too.

Keys are shown as `store.admin.key_view` makes them; a change reaches every gateway process
at once through `Authenticator.forget`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web

from stellara.errors import InvalidRequestError, RouteNotFoundError
from stellara.server.intake import decode_json_object, json_response, read_body
from stellara.server.spec import OBJECT, Access, Call, Reply, Route
from stellara.store.admin import KEY_FIELDS, MAX_TEXT_CHARS, check_key_fields, key_view
from stellara.store.keys import KeyRecord

KEYS = "/admin/keys"
KEY = "/admin/keys/{key_id}"
USERS = "/admin/users"
USER = "/admin/users/{user}"
LIST_LIMIT = 1000
# `/admin/users` reads every stored key to count them per user; past this many it undercounts.
USER_SCAN_LIMIT = 100_000
_MAX_KEY_ID_CHARS = 40  # the column's size


@dataclass
class _UserSummary:
    """One user's keys as `/admin/users` counts them (static config keys and stored ones)."""

    key_tiers: list[str | None] = field(default_factory=list)  # of active keys, oldest first
    teams: set[str] = field(default_factory=set)
    active_keys: int = 0
    static_keys: int = 0

    def add(self, tier: str | None, team: str | None) -> None:
        self.key_tiers.append(tier)
        self.active_keys += 1
        if team is not None:
            self.teams.add(team)


async def create_key(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    now = runtime.clock.time()
    fields = check_key_fields(runtime.config, await _body(call), now=now, is_new=True)
    key, record = await runtime.key_store.create(now=now, **fields)
    runtime.auth.forget(record.digest)
    body = {"key_id": record.key_id, "key": key, **key_view(record, now)}
    return json_response(call, body, status=201)


async def list_keys(call: Call) -> web.StreamResponse:
    query = call.request.query
    user = query.get("user")
    if user is not None:
        _check_user(user)
    include_revoked = _flag(query.get("include_revoked", "false"), "include_revoked")
    records = await call.runtime.key_store.list(
        user=user, include_revoked=include_revoked, limit=LIST_LIMIT + 1
    )
    now = call.runtime.clock.time()
    data = [key_view(record, now) for record in records[:LIST_LIMIT]]
    return json_response(
        call, {"object": "list", "data": data, "has_more": len(records) > LIST_LIMIT}
    )


async def get_key(call: Call) -> web.StreamResponse:
    key_id = call.request.match_info["key_id"]
    record = await call.runtime.key_store.get(key_id) if _is_key_id(key_id) else None
    return json_response(call, key_view(_found(record, key_id), call.runtime.clock.time()))


async def update_key(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    key_id = call.request.match_info["key_id"]
    now = runtime.clock.time()
    changes = check_key_fields(runtime.config, await _body(call), now=now, is_new=False)
    record = await runtime.key_store.update(key_id, changes) if _is_key_id(key_id) else None
    record = _found(record, key_id)
    if changes:
        runtime.auth.forget(record.digest)
    return json_response(call, key_view(record, now))


async def revoke_key(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    key_id = call.request.match_info["key_id"]
    now = runtime.clock.time()
    record = await runtime.key_store.revoke(key_id, now) if _is_key_id(key_id) else None
    record = _found(record, key_id)
    runtime.auth.forget(record.digest)
    return json_response(call, key_view(record, now))


async def list_users(call: Call) -> web.StreamResponse:
    records = await call.runtime.key_store.list(include_revoked=True, limit=USER_SCAN_LIMIT)
    summaries = _summaries(call, records)
    data = [_describe(call, user, summaries[user]) for user in sorted(summaries)]
    return json_response(call, {"object": "list", "data": data})


async def get_user(call: Call) -> web.StreamResponse:
    user = call.request.match_info["user"]
    records: list[KeyRecord] = []
    if len(user) <= MAX_TEXT_CHARS["user"] and "\x00" not in user:
        records = await call.runtime.key_store.list(
            user=user, include_revoked=True, limit=USER_SCAN_LIMIT
        )
    summary = _summaries(call, records).get(user)
    if summary is None:
        raise RouteNotFoundError(f"No user {user!r} is known.", code="user_not_found")
    now = call.runtime.clock.time()
    keys = [key_view(record, now) for record in records]
    return json_response(call, {**_describe(call, user, summary), "keys": keys})


def _summaries(call: Call, records: Iterable[KeyRecord]) -> dict[str, _UserSummary]:
    """Every user named in `limits.users`, the static keys or `records`."""
    config = call.runtime.config
    now = call.runtime.clock.time()
    summaries = {user: _UserSummary() for user in config.limits.users}
    for key in config.keys:
        summary = summaries.setdefault(key.user, _UserSummary())
        summary.add(key.tier, key.team)
        summary.static_keys += 1
    for record in records:
        summary = summaries.setdefault(record.user, _UserSummary())
        if record.is_active(now):
            summary.add(record.tier, record.team)
    return summaries


def _describe(call: Call, user: str, summary: _UserSummary) -> dict[str, Any]:
    """`tier` is the tier of the user's first active key (static keys first, then stored
    ones, oldest first) by the limits' rules; `tiers` lists those of all their active keys,
    since a key's own tier applies when the config gives the user none."""
    policy = call.runtime.limiter.policy
    tiers = [policy.tier_of(user, tier) for tier in summary.key_tiers]
    tier = tiers[0] if tiers else policy.tier_of(user)
    return {
        "user": user,
        "tier": tier,
        "tiers": sorted(set(tiers) or {tier}),
        "teams": sorted(summary.teams),
        "active_keys": summary.active_keys,
        "static_keys": summary.static_keys,
    }


async def _body(call: Call) -> dict[str, Any]:
    return decode_json_object(await read_body(call))


def _flag(value: str, name: str) -> bool:
    value = value.lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidRequestError(f"'{name}' must be true or false.", param=name)
    return value in ("true", "1")


def _check_user(user: str) -> None:
    limit = MAX_TEXT_CHARS["user"]
    if not user or len(user) > limit or "\x00" in user:
        message = f"'user' must be 1 to {limit} characters, without NUL."
        raise InvalidRequestError(message, param="user")


def _is_key_id(key_id: str) -> bool:
    """Whether `key_id` could name a stored key; other values need no trip to the database
    (and some, with NUL, would fail in PostgreSQL)."""
    return len(key_id) <= _MAX_KEY_ID_CHARS and "\x00" not in key_id


def _found(record: KeyRecord | None, key_id: str) -> KeyRecord:
    if record is None:
        raise RouteNotFoundError(f"No key with id {key_id!r}.", code="key_not_found")
    return record


KEY_BODY = MappingProxyType(
    {
        "type": "object",
        "properties": {name: {} for name in sorted(KEY_FIELDS)},
        "additionalProperties": False,
    }
)
_STORE = {503: "The SQL store is unavailable"}
_MISSING_KEY = {**_STORE, 404: "No such key"}
ROUTES = (
    Route(
        "POST",
        KEYS,
        create_key,
        Access.MASTER,
        "Create a virtual key; the key is shown only here",
        Reply("The key, shown this once", OBJECT, status=201),
        body=KEY_BODY,
        errors=_STORE,
    ),
    Route(
        "GET",
        KEYS,
        list_keys,
        Access.MASTER,
        "Virtual keys (not the keys themselves)",
        Reply("Keys", OBJECT),
        query=("user", "include_revoked"),
        errors=_STORE,
    ),
    Route(
        "GET",
        KEY,
        get_key,
        Access.MASTER,
        "One virtual key",
        Reply("The key", OBJECT),
        errors=_MISSING_KEY,
    ),
    Route(
        "PATCH",
        KEY,
        update_key,
        Access.MASTER,
        "Change a key (fields set; null clears)",
        Reply("The key", OBJECT),
        body=KEY_BODY,
        errors=_MISSING_KEY,
    ),
    Route(
        "DELETE",
        KEY,
        revoke_key,
        Access.MASTER,
        "Revoke a key: refused at once on every process",
        Reply("The revoked key", OBJECT),
        errors=_MISSING_KEY,
    ),
    Route(
        "GET",
        USERS,
        list_users,
        Access.MASTER,
        "Users, their tier, teams and key counts",
        Reply("Users", OBJECT),
        errors=_STORE,
    ),
    Route(
        "GET",
        USER,
        get_user,
        Access.MASTER,
        "One user and their keys",
        Reply("The user", OBJECT),
        errors={**_STORE, 404: "No such user"},
    ),
)
