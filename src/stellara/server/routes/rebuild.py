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

from stellara.errors import InvalidRequestError
from stellara.limits.rebuild import rebuild_quotas
from stellara.server.intake import decode_json_object, json_response, read_body
from stellara.server.spec import OBJECT, Access, Call, Reply, Route

MAX_USERS = 1000  # one SQL `IN` list; more users: more calls, or none (everyone)
MAX_USER_CHARS = 256  # the width of `usage_records.user_id`
MAX_BODY_BYTES = 512 * 1024


async def rebuild(call: Call) -> web.StreamResponse:
    runtime = call.runtime
    users = _users(await read_body(call, MAX_BODY_BYTES))
    report = await rebuild_quotas(
        runtime.limiter.policy,
        runtime.state.limits,
        runtime.usage_totals,
        runtime.key_store,
        now=runtime.clock.time(),
        users=users,
    )
    return json_response(call, report.as_dict())


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


ROUTES = (
    Route(
        "POST",
        "/admin/quotas/rebuild",
        rebuild,
        Access.MASTER,
        "Rebuild today's and this month's quota use from the usage records "
        '(after a state-backend loss); optional body {"users": [...]}',
        Reply("The rebuild's report", OBJECT),
        body=OBJECT,
        body_required=False,
        errors={503: "The SQL store or the state backend is unavailable"},
    ),
)
