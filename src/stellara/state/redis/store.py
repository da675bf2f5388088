"""The Redis state backend: exact limits shared by every gateway process.

Each `LimitStore` call is one Lua script (`lua/*.lua`, registered once per backend), so it is
atomic and costs one round trip: `admit` checks and records every limit of a request together,
`settle` corrects them together. The scripts port `memory.py` exactly, take the time from the
server's `TIME`, and touch only keys the caller names in `KEYS`.

Keys, all under the scope's hash tag so one script call stays on one Cluster slot::

    {prefix}:{<scope>}:w:<name>:z      window: ZSET reservation id -> time
    {prefix}:{<scope>}:w:<name>:h      window: HASH t = running total, r:<id> = amount
    {prefix}:{<scope>}:p:<name>        daily/monthly: HASH k = period, u = used, e = end, r:<id>
    {prefix}:{<scope>}:s:<name>:<sid>  session: the same HASH; expires idle_s after its last use
    {prefix}:{<scope>}:b               block: the time it ends; expires with it
    {prefix}:{<scope>}:keys            registry: ZSET of the scope's limits by expiry, for reset

Scope, names and session ids are percent-encoded, so none can close the hash tag or forge
another key. Every key carries an expiry, so idle users and old sessions leave Redis by
themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from urllib.parse import quote, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from stellara.errors import StateBackendError
from stellara.state.base import Admission, Amounts, Limit, LimitState, WindowLimit
from stellara.state.redis.arms import RedisArmStore
from stellara.state.redis.breakers import RedisBreakerSync
from stellara.state.redis.cache import RedisCacheStore
from stellara.state.redis.events import RedisEventChannel
from stellara.state.redis.keys import RedisKeySync
from stellara.state.redis.pipelined import PipelinedRedis
from stellara.state.redis.responses import RedisResponsesStore
from stellara.state.redis.sessions import RedisSessionStore
from stellara.state.redis.stats import RedisStatsShare

_RESET_ATTEMPTS = 5  # a reset races only with the creation of new keys in the same scope
_PERIOD_KINDS = {"daily": "d", "monthly": "m", "session": "s"}


def _part(text: str) -> str:
    """A key component that cannot contain `:`, `{` or `}`."""
    return quote(text, safe="")


def _scripts() -> dict[str, str]:
    lua = resources.files(__package__) / "lua"
    lib = (lua / "lib.lua").read_text(encoding="utf-8")
    return {
        name: lib + "\n" + (lua / f"{name}.lua").read_text(encoding="utf-8")
        for name in ("admit", "settle", "read", "reset", "block")
    }


def redact(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return parts._replace(netloc=user + host).geturl()


class RedisLimitStore:
    """`LimitStore` shared by many processes through one Redis (or one Cluster slot per scope).

    Every redis-py failure, timeouts included, surfaces as `StateBackendError`; the limits
    policy decides whether the request goes on (`on_failure: open`) or is refused. redis-py's
    retry after a lost reply is safe: `admit` finds the reservation recorded and counts it once.
    """

    def __init__(
        self, client: Redis, commands: PipelinedRedis, *, key_prefix: str, where: str
    ) -> None:
        """`commands` carries the scripts (admit and settle: every request, twice); `client`
        the management commands."""
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError(f"key_prefix {key_prefix!r} must not contain '{{' or '}}'")
        self._prefix = key_prefix
        self._where = where
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(text) for name, text in _scripts().items()
        }
        self._client = client
        self._commands = commands
        # names and session ids repeat on every request; quoting them showed in profiles
        self._part = lru_cache(maxsize=4096)(_part)

    async def admit(
        self, scope: str, limits: Sequence[Limit], amounts: Amounts, reservation: str
    ) -> Admission:
        tag = self._tag(scope)
        keys, args = self._limit_args(tag, limits, amounts)
        reply = await self._run("admit", [f"{tag}:b", f"{tag}:keys", *keys], [reservation, *args])
        denied = int(reply[1])
        denied_by = None if denied == 0 else "blocked" if denied < 0 else limits[denied - 1].name
        states = _states(limits, reply[4:])
        return Admission(reply[0] == "1", denied_by, float(reply[2]), states, float(reply[3]))

    async def settle(
        self, scope: str, limits: Sequence[Limit], reservation: str, actual: Amounts
    ) -> None:
        keys, args = self._limit_args(self._tag(scope), limits, actual)
        await self._run("settle", keys, [reservation, *args])

    async def read(self, scope: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        keys, args = self._limit_args(self._tag(scope), limits, {})
        reply = await self._run("read", keys, args)
        return _states(limits, reply[1:])

    async def reset(self, scope: str, names: Sequence[str] | None = None) -> None:
        tag = self._tag(scope)
        registry = f"{tag}:keys"
        for _ in range(_RESET_ATTEMPTS):
            try:
                seen = [str(key) for key in await self._client.zrange(registry, 0, -1)]
            except (RedisError, OSError) as exc:
                raise self._error("reset", exc) from exc
            doomed = [key for key in seen if names is None or _name_of(key, tag) in names]
            args = ["1" if names is None else "0", str(len(seen)), *seen, *doomed]
            keys = [registry, f"{tag}:b", *(k for key in doomed for k in _keys_of(key, tag))]
            if await self._run("reset", keys, args) == ["1"]:
                return
        raise StateBackendError(f"redis state backend at {self._where}: reset kept racing")

    async def block(self, scope: str, seconds: float) -> None:
        await self._run("block", [f"{self._tag(scope)}:b"], [repr(float(seconds))])

    def _tag(self, scope: str) -> str:
        return f"{self._prefix}:{{{self._part(scope)}}}"

    def _limit_args(
        self, tag: str, limits: Sequence[Limit], amounts: Amounts
    ) -> tuple[list[str], list[str]]:
        """KEYS and ARGV describing `limits` to the scripts (lib.lua's parse_limits)."""
        keys: list[str] = []
        args: list[str] = []
        for limit in limits:
            name = self._part(limit.name)
            if isinstance(limit, WindowLimit):
                keys += [f"{tag}:w:{name}:z", f"{tag}:w:{name}:h"]
                kind, param = "w", float(limit.window_s)
            elif limit.period == "session":
                keys.append(f"{tag}:s:{name}:{self._part(limit.session_id)}")
                kind, param = "s", float(limit.idle_s)
            else:
                keys.append(f"{tag}:p:{name}")
                kind, param = _PERIOD_KINDS[limit.period], float(limit.utc_offset_s)
            amount = float(amounts.get(limit.dimension, 0.0))
            args += [kind, repr(float(limit.limit)), repr(param), repr(amount)]
        return keys, args

    async def _run(self, script: str, keys: list[str], args: list[str]) -> list[str]:
        """One script call; every script replies with a list of strings (floats intact)."""
        try:
            reply = await self._commands.run_script(self._scripts[script], keys, args)
        except (RedisError, OSError) as exc:
            raise self._error(script, exc) from exc
        return [value.decode() for value in reply]

    def _error(self, operation: str, exc: BaseException) -> StateBackendError:
        detail = str(exc) or type(exc).__name__
        return StateBackendError(f"redis state backend at {self._where}: {operation}: {detail}")


def _states(limits: Sequence[Limit], values: Sequence[str]) -> tuple[LimitState, ...]:
    """LimitStates from the scripts' (used, reset_at) pairs, one pair per limit."""
    states = []
    for i, limit in enumerate(limits):
        used, reset_at = float(values[2 * i]), float(values[2 * i + 1])
        remaining = max(0.0, limit.limit - used)
        states.append(LimitState(limit.name, used, limit.limit, remaining, reset_at))
    return tuple(states)


def _name_of(member: str, tag: str) -> str:
    """The limit name in a registry member (`<tag>:<kind>:<name>[:<session>]`)."""
    return unquote(member[len(tag) + 1 :].split(":")[1])


def _keys_of(member: str, tag: str) -> list[str]:
    """The keys a registry member stands for: a window's two, a period's one."""
    if member.startswith(f"{tag}:w:"):
        return [f"{member}:z", f"{member}:h"]
    return [member]


class RedisBackend:
    """The `redis` state backend: one pooled client per app, shared by its requests.

    The pool blocks (for `pool_timeout_s` at most) rather than failing when every connection is
    busy, and a call gets `socket_timeout_s` and one immediate retry: on a request path a
    quick `StateBackendError` beats redis-py's default of ten retries with backoff. Opening a
    connection gets longer (`connect_timeout_s`): a burst of requests on a cold pool opens
    dozens at once, and a loaded process that timed those out would fail open needlessly.
    Dropped connections are replaced on the next call, so the backend recovers by itself.
    `cache`, `breakers`, `keys`, `sessions` and `responses` share the client; each listener holds
    one connection of its own.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "stellara",
        socket_timeout_s: float = 0.25,
        connect_timeout_s: float = 1.0,
        max_connections: int = 256,
        pool_timeout_s: float = 0.5,
        retries: int = 1,
    ) -> None:
        if not 0 <= retries <= 1:
            raise ValueError("retries must be 0 or 1: a request cannot wait for more")
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), retries),
            decode_responses=True,
        )
        self._client = Redis.from_pool(pool)
        self._key_prefix = key_prefix
        # One pipelined connection for the request path: one write per loop iteration for
        # every request's limit and cache commands together.
        self._commands = PipelinedRedis(self._client)
        where = redact(url)
        self._limits = RedisLimitStore(
            self._client, self._commands, key_prefix=key_prefix, where=where
        )
        self._cache = RedisCacheStore(
            self._client, self._commands, key_prefix=key_prefix, where=where
        )
        self._breakers = RedisBreakerSync(self._client, key_prefix=key_prefix, where=redact(url))
        self._keys = RedisKeySync(self._client, key_prefix=key_prefix, where=redact(url))
        self._stats = RedisStatsShare(self._client, key_prefix=key_prefix)
        self._events = RedisEventChannel(self._commands, key_prefix=key_prefix, where=where)
        self._sessions = RedisSessionStore(self._client, key_prefix=key_prefix, where=where)
        self._responses = RedisResponsesStore(
            self._client, self._commands, key_prefix=key_prefix, where=where
        )
        self._arms = RedisArmStore(self._client, key_prefix=key_prefix, where=where)

    @property
    def name(self) -> str:
        return "redis"

    @property
    def limits(self) -> RedisLimitStore:
        return self._limits

    @property
    def cache(self) -> RedisCacheStore:
        return self._cache

    @property
    def breakers(self) -> RedisBreakerSync:
        return self._breakers

    @property
    def keys(self) -> RedisKeySync:
        return self._keys

    @property
    def event_channel(self) -> RedisEventChannel:
        return self._events

    @property
    def stats(self) -> RedisStatsShare:
        return self._stats

    @property
    def sessions(self) -> RedisSessionStore:
        return self._sessions

    @property
    def responses(self) -> RedisResponsesStore:
        return self._responses

    @property
    def arms(self) -> RedisArmStore:
        return self._arms

    @property
    def client(self) -> Redis:
        """The pooled client, for everything off the request path."""
        return self._client

    @property
    def key_prefix(self) -> str:
        return self._key_prefix

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        # first: their listeners must not reconnect to a closing pool
        await self._breakers.close()
        await self._keys.close()
        await self._stats.close()
        await self._cache.close()
        await self._commands.aclose()
        await self._client.aclose()
