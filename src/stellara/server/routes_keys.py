"""Virtual keys and the users behind them (DESIGN §3, §7). Every route needs the master key.

- `POST /admin/keys` body `{"user", "team"?, "tier"?, "models"?, "limits"?, "name"?,
  "expires_at"?}` → 201 `{"key_id", "key", "prefix", …}`: the only answer that shows the key.
  `models` are public model names (null: every model), `limits` has a tier's shape, and
  `expires_at` is ISO-8601 (UTC when no offset is given) or epoch seconds.
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

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from stellara import _json
from stellara._clock import Clock
from stellara.config.models import StellaraConfig
from stellara.errors import InvalidRequestError, RouteNotFoundError, StellaraError
from stellara.limits.policy import LimitsPolicy
from stellara.pipeline.auth import Authenticator
from stellara.server.errors import decode_json_object, error_response
from stellara.server.request import read_body, require_master
from stellara.store.admin import MAX_TEXT_CHARS, check_key_fields, key_view
from stellara.store.keys import KeyRecord, KeyStore

_JSON = {"Content-Type": "application/json"}
KEYS = "/admin/keys"
KEY = "/admin/keys/{key_id}"
USERS = "/admin/users"
USER = "/admin/users/{user}"
LIST_LIMIT = 1000
# `/admin/users` reads every stored key to count them per user; past this many it undercounts.
USER_SCAN_LIMIT = 100_000
_MAX_KEY_ID_CHARS = 40  # the column's size

Answer = tuple[int, Any]
Handler = Callable[[web.Request], Awaitable[Answer]]


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


class KeyRoutes:
    """The admin API of virtual keys and users, bound to one app's key store."""

    def __init__(
        self, store: KeyStore, auth: Authenticator, config: StellaraConfig, clock: Clock
    ) -> None:
        self._store = store
        self._auth = auth
        self._config = config
        self._clock = clock
        key_tiers: dict[str, str] = {}
        for key in config.keys:
            if key.tier is not None:
                key_tiers.setdefault(key.user, key.tier)
        self._policy = LimitsPolicy(config.limits, key_tiers)

    def register(self, app: web.Application) -> None:
        app.router.add_post(KEYS, self._route(self._create))
        app.router.add_get(KEYS, self._route(self._list))
        app.router.add_get(KEY, self._route(self._get))
        app.router.add_patch(KEY, self._route(self._update))
        app.router.add_delete(KEY, self._route(self._revoke))
        app.router.add_get(USERS, self._route(self._users))
        app.router.add_get(USER, self._route(self._user))

    def _route(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """`handler` behind the master-key check, its answer as JSON, its errors as the
        OpenAI error body (a store failure is a 503)."""

        async def route(request: web.Request) -> web.Response:
            try:
                await require_master(
                    self._auth, request, "Key administration needs the master key."
                )
                status, body = await handler(request)
            except StellaraError as exc:
                return error_response(exc)
            return web.Response(status=status, body=_json.dumps(body), headers=_JSON)

        return route

    async def _create(self, request: web.Request) -> Answer:
        now = self._clock.time()
        fields = check_key_fields(self._config, await self._body(request), now=now, is_new=True)
        key, record = await self._store.create(now=now, **fields)
        self._auth.forget(record.digest)
        return 201, {"key_id": record.key_id, "key": key, **key_view(record, now)}

    async def _list(self, request: web.Request) -> Answer:
        user = request.query.get("user")
        if user is not None:
            _check_user(user)
        include_revoked = _flag(request, "include_revoked")
        records = await self._store.list(
            user=user, include_revoked=include_revoked, limit=LIST_LIMIT + 1
        )
        now = self._clock.time()
        data = [key_view(record, now) for record in records[:LIST_LIMIT]]
        return 200, {"object": "list", "data": data, "has_more": len(records) > LIST_LIMIT}

    async def _get(self, request: web.Request) -> Answer:
        key_id = request.match_info["key_id"]
        record = await self._store.get(key_id) if _is_key_id(key_id) else None
        return 200, key_view(_found(record, key_id), self._clock.time())

    async def _update(self, request: web.Request) -> Answer:
        key_id = request.match_info["key_id"]
        now = self._clock.time()
        changes = check_key_fields(self._config, await self._body(request), now=now, is_new=False)
        record = await self._store.update(key_id, changes) if _is_key_id(key_id) else None
        record = _found(record, key_id)
        if changes:
            self._auth.forget(record.digest)
        return 200, key_view(record, now)

    async def _revoke(self, request: web.Request) -> Answer:
        key_id = request.match_info["key_id"]
        now = self._clock.time()
        record = await self._store.revoke(key_id, now) if _is_key_id(key_id) else None
        record = _found(record, key_id)
        self._auth.forget(record.digest)
        return 200, key_view(record, now)

    async def _users(self, request: web.Request) -> Answer:
        records = await self._store.list(include_revoked=True, limit=USER_SCAN_LIMIT)
        summaries = self._summaries(records, self._clock.time())
        data = [self._describe(user, summaries[user]) for user in sorted(summaries)]
        return 200, {"object": "list", "data": data}

    async def _user(self, request: web.Request) -> Answer:
        user = request.match_info["user"]
        records: list[KeyRecord] = []
        if len(user) <= MAX_TEXT_CHARS["user"] and "\x00" not in user:
            records = await self._store.list(user=user, include_revoked=True, limit=USER_SCAN_LIMIT)
        now = self._clock.time()
        summary = self._summaries(records, now).get(user)
        if summary is None:
            raise RouteNotFoundError(f"No user {user!r} is known.", code="user_not_found")
        keys = [key_view(record, now) for record in records]
        return 200, {**self._describe(user, summary), "keys": keys}

    def _summaries(self, records: Iterable[KeyRecord], now: float) -> dict[str, _UserSummary]:
        """Every user named in `limits.users`, the static keys or `records`."""
        summaries = {user: _UserSummary() for user in self._config.limits.users}
        for key in self._config.keys:
            summary = summaries.setdefault(key.user, _UserSummary())
            summary.add(key.tier, key.team)
            summary.static_keys += 1
        for record in records:
            summary = summaries.setdefault(record.user, _UserSummary())
            if record.is_active(now):
                summary.add(record.tier, record.team)
        return summaries

    def _describe(self, user: str, summary: _UserSummary) -> dict[str, Any]:
        """`tier` is the tier of the user's first active key (static keys first, then stored
        ones, oldest first) by the limits' rules; `tiers` lists those of all their active keys,
        since a key's own tier applies when the config gives the user none."""
        tiers = [self._policy.tier_of(user, tier) for tier in summary.key_tiers]
        tier = tiers[0] if tiers else self._policy.tier_of(user)
        return {
            "user": user,
            "tier": tier,
            "tiers": sorted(set(tiers) or {tier}),
            "teams": sorted(summary.teams),
            "active_keys": summary.active_keys,
            "static_keys": summary.static_keys,
        }

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return decode_json_object(await read_body(request, self._config.server.max_body_bytes))


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
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
