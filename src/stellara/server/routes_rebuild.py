"""`POST /admin/quotas/rebuild` (master key): quota use rebuilt from the usage records.

For after the state backend lost its data (see `limits.rebuild`). The optional JSON body
`{"users": ["alice", …]}` limits the rebuild to those users (each reset to what the records
say, zero without any); without it, every user with records this month is rebuilt. The
answer is the report: the periods' starts, per user the counted records and the use now held
by each quota, per virtual key with quotas of its own the same sums, and the users skipped
because a burst block was refusing their admissions. A SQL store or state backend that fails
answers 503; rebuilding again is safe.
"""

from __future__ import annotations

from aiohttp import web

from stellara import _json
from stellara._clock import Clock
from stellara.errors import InvalidRequestError, StellaraError
from stellara.limits.policy import LimitsPolicy
from stellara.limits.rebuild import rebuild_quotas
from stellara.pipeline.auth import Authenticator
from stellara.server.errors import decode_json_object, error_response
from stellara.server.request import read_body, require_master
from stellara.state.base import LimitStore
from stellara.store.keys import KeyStore
from stellara.store.usage_totals import UsageTotals

_JSON = {"Content-Type": "application/json"}
REBUILD = "/admin/quotas/rebuild"
MAX_USERS = 1000  # one SQL `IN` list; more users: more calls, or none (everyone)
MAX_USER_CHARS = 256  # the width of `usage_records.user_id`
MAX_BODY_BYTES = 512 * 1024


class QuotaRebuildRoutes:
    """The quota rebuild of one app: its limits policy and store, and its SQL store."""

    def __init__(
        self,
        policy: LimitsPolicy,
        store: LimitStore,
        totals: UsageTotals,
        keys: KeyStore,
        auth: Authenticator,
        clock: Clock,
    ) -> None:
        self._policy = policy
        self._store = store
        self._totals = totals
        self._keys = keys
        self._auth = auth
        self._clock = clock

    def register(self, app: web.Application) -> None:
        app.router.add_post(REBUILD, self.rebuild)

    async def rebuild(self, request: web.Request) -> web.Response:
        try:
            await require_master(self._auth, request, "Rebuilding quotas needs the master key.")
            users = _users(await read_body(request, MAX_BODY_BYTES))
            report = await rebuild_quotas(
                self._policy,
                self._store,
                self._totals,
                self._keys,
                now=self._clock.time(),
                users=users,
            )
        except StellaraError as exc:  # StoreUnavailableError, StateBackendError: 503
            return error_response(exc)
        return web.Response(body=_json.dumps(report.as_dict()), headers=_JSON)


def _users(raw: bytes) -> list[str] | None:
    """The body's `users`, or None (everyone) for an empty body or no `users`."""
    if not raw.strip():
        return None
    body = decode_json_object(raw)
    unknown = sorted(set(body) - {"users"})
    if unknown:
        raise InvalidRequestError(f"Unknown field(s): {', '.join(unknown)}.", param=unknown[0])
    users = body.get("users")
    if users is None:
        return None
    message = f"'users' must list 1 to {MAX_USERS} user names of 1 to {MAX_USER_CHARS} characters."
    if not isinstance(users, list) or not 1 <= len(users) <= MAX_USERS:
        raise InvalidRequestError(message, param="users")
    for user in users:
        if not isinstance(user, str) or not 1 <= len(user) <= MAX_USER_CHARS or "\x00" in user:
            raise InvalidRequestError(message, param="users")
    return list(dict.fromkeys(users))
