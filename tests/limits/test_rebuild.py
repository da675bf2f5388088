"""Quota rebuilds: usage records in SQL (SQLite and PostgreSQL) put back into an emptied state
backend (memory and Redis), checked through the limiter that reads it; and the admin route,
end to end through a gateway whose Redis lost its keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from stellara.assembly.config import check_config
from stellara.config.models import LimitsConfig, TierConfig
from stellara.errors import QuotaExceededError
from stellara.events import EventBus
from stellara.limits import Limiter, LimitEvents, LimitsPolicy
from stellara.limits.rebuild import RebuildReport, rebuild_quotas
from stellara.schema.chat import Usage
from stellara.server import create_app
from stellara.sim import RunningSimulator
from stellara.state.base import Amounts, LimitState, LimitStore, PeriodLimit
from stellara.state.memory import MemoryBackend
from stellara.state.redis import RedisBackend
from stellara.store.db import Database
from stellara.store.keys import KeyStore
from stellara.store.migrate import upgrade
from stellara.store.tables import usage_records
from stellara.store.usage import usage_row
from stellara.store.usage_totals import UsageTotals
from stellara.testing import ManualClock, request_completed, request_failed
from tests.conftest import MASTER_KEY, USER_KEY, gateway_config
from tests.dbs import fresh_database_url, migrated, seed_rows
from tests.limits.fakes import DownBackend
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix

DAY_S = 86_400
HOUR_S = 3_600
HELLO = [{"role": "user", "content": "hi"}]
ONE_REQUEST: Amounts = {"requests": 1.0, "tokens": 30.0, "cost_usd": 0.001}
NO_USAGE: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}


# -- fixtures and helpers


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with migrated(database_url) as database:
        yield database


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    """For tests about the state side: one SQL database is enough."""
    async with fresh_database_url("sqlite", tmp_path) as url:
        database = Database(url)
        await upgrade(database)
        yield database
        await database.close()


REBUILD = "/admin/quotas/rebuild"


@dataclass
class State:
    """A state backend that can lose everything: memory is replaced by an empty one, Redis has
    its keys deleted (what a restart without persistence does)."""

    kind: str
    backend: MemoryBackend | RedisBackend
    clock: ManualClock
    prefix: str = ""

    @property
    def store(self) -> LimitStore:
        return self.backend.limits

    async def lose(self) -> None:
        if isinstance(self.backend, MemoryBackend):
            self.backend = MemoryBackend(self.clock)
        else:
            await drop_keys(REDIS_URL, self.prefix)


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[State]:
    """Real time on both (Redis keeps its own clock): periods are today and this month."""
    clock = ManualClock(time.time())
    if request.param == "memory":
        yield State("memory", MemoryBackend(clock), clock)
        return
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    try:
        yield State("redis", backend, clock, prefix)
    finally:
        await backend.close()
        await drop_keys(REDIS_URL, prefix)


def limits_config(**tiers: dict[str, Any]) -> LimitsConfig:
    return LimitsConfig.model_validate({"tiers": tiers, "default_tier": "basic"})


def limiter_on(state: State, config: LimitsConfig) -> Limiter:
    """A limiter over the state's current store (build it again after `lose`)."""
    events = LimitEvents(EventBus(), warn_at=0.8)
    return Limiter(LimitsPolicy(config), state.store, events, state.clock, on_failure="closed")


async def rebuild(
    limiter: Limiter, state: State, database: Database, users: list[str] | None = None
) -> RebuildReport:
    return await rebuild_quotas(
        limiter.policy,
        state.store,
        UsageTotals(database),
        KeyStore(database),
        now=state.clock.time(),
        users=users,
    )


_ids = iter(range(1_000_000))


def record(user: str, started_at: float, **facts: Any) -> dict[str, Any]:
    """A usage row as the writer stores it: a completed call of 10 + 20 tokens for $0.001,
    unless `facts` say otherwise (`error` makes it a failed call)."""
    data: dict[str, Any] = {
        "request_id": f"req_{next(_ids)}",
        "started_at": started_at,
        "user": user,
        "key_id": None,  # a record of before virtual keys
        "model": "test-model",
        "provider": "",
        "provider_model": "",
        "attempts": 0,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cost_usd": 0.001,
        "latency_ms": 0.0,
        "attempt_spans": (),
        **facts,
    }
    build = request_failed if data.get("error") else request_completed
    return usage_row(build(**data), log_content=False)


@dataclass(frozen=True)
class Moments:
    """Times in the current UTC day and month, the previous month, and this month before
    today (None on the 1st: there is no such time)."""

    now: float
    today: float
    earlier_this_month: float | None
    last_month: float

    @classmethod
    def at(cls, now: float) -> Moments:
        local = datetime.fromtimestamp(now, UTC)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        earlier = (month_start.timestamp() + day_start) / 2 if local.day > 1 else None
        return cls(now, (day_start + now) / 2, earlier, month_start.timestamp() - HOUR_S)


def resolved(limiter: Limiter, user: str, key: Any = None) -> Any:
    """The limits of `user`'s request (made with `key`, a KeyRecord, if given)."""
    if key is None:
        policy = limiter.resolve(user, None, None)
    else:
        limits = TierConfig.model_validate(key.limits) if key.limits else None
        policy = limiter.resolve(user, key.tier, None, key_id=key.key_id, key_limits=limits)
    assert policy is not None
    return policy


async def used(limiter: Limiter, user: str, **extra: Any) -> dict[str, float]:
    _, states, _ = await limiter.status(user, None, "quota", session_id=extra.get("session"))
    return {s.name: s.used for s in states}


# -- the rebuild on every SQL database and state backend


async def test_rebuild_restores_user_quotas_counting_only_admitted_requests(
    state: State, database: Database
) -> None:
    at = Moments.at(state.clock.time())
    earlier = (
        [record("alice", at.earlier_this_month) for _ in range(3)] if at.earlier_this_month else []
    )
    await seed_rows(
        database,
        [
            *(record("alice", at.today) for _ in range(5)),
            # admitted, then failed upstream or answered from the cache: a request, no tokens
            record("alice", at.today, error="upstream_unavailable", status=502, **NO_USAGE),
            record("alice", at.today, error="upstream_rate_limited", status=429, **NO_USAGE),
            record("alice", at.today, cache="hit", **NO_USAGE),
            # refused before anything was reserved: never counted
            record("alice", at.today, error="rate_limit_exceeded", status=429, **NO_USAGE),
            record("alice", at.today, error="insufficient_quota", status=429, **NO_USAGE),
            record("alice", at.today, error="state_backend_unavailable", status=503, **NO_USAGE),
            *earlier,
            *(record("alice", at.last_month) for _ in range(4)),
            *(record("bob", at.today) for _ in range(2)),
            record("carol", at.last_month),
        ],
    )
    config = limits_config(
        basic={
            "quota": {
                "daily": {"requests": 8, "tokens": 1000},
                "monthly": {"requests": 100, "cost_usd": 1.0},
            }
        }
    )
    await state.lose()
    limiter = limiter_on(state, config)
    assert (await used(limiter, "alice"))["quota:daily:requests"] == 0

    report = await rebuild(limiter, state, database)

    month_requests = 8 + len(earlier)
    assert await used(limiter, "alice") == pytest.approx(
        {
            "quota:daily:requests": 8,
            "quota:daily:tokens": 150,
            "quota:monthly:requests": month_requests,
            "quota:monthly:cost_usd": 0.005 + 0.001 * len(earlier),
        }
    )
    assert (await used(limiter, "bob"))["quota:daily:requests"] == 2
    assert set(report.users) == {"alice", "bob"}  # carol has no records this month
    daily = report.users["alice"].daily
    assert (daily.requests, daily.tokens) == (8, 150)
    assert daily.cost_usd == pytest.approx(0.005)
    assert report.users["alice"].monthly.requests == month_requests
    assert report.users["alice"].quotas["quota:daily:requests"] == 8
    assert report.blocked == {}
    # the quota is as full as before the loss: alice's next request is refused, bob's is not
    alice = await limiter.admit(resolved(limiter, "alice"), ONE_REQUEST, "next-a")
    assert isinstance(alice.refusal, QuotaExceededError)
    assert "quota:daily:requests" in alice.refusal.message
    bob = await limiter.admit(resolved(limiter, "bob"), ONE_REQUEST, "next-b")
    assert bob.refusal is None


async def test_rebuild_restores_a_keys_own_quotas_in_its_users_scope(
    state: State, database: Database
) -> None:
    keys = KeyStore(database)
    now = state.clock.time()
    own = {"quota": {"daily": {"cost_usd": 0.004}, "monthly": {"requests": 50}}}
    _, capped = await keys.create(user="alice", limits=own, now=now)
    _, revoked = await keys.create(user="alice", limits=own, now=now)
    await keys.revoke(revoked.key_id, now)
    at = Moments.at(now)
    earlier = at.earlier_this_month
    await seed_rows(
        database,
        [
            *(record("alice", at.today, key_id=capped.key_id) for _ in range(4)),
            *([record("alice", earlier, key_id=capped.key_id)] if earlier else []),
            record("alice", at.last_month, key_id=capped.key_id),
            *(record("alice", at.today, key_id=revoked.key_id) for _ in range(3)),
            record("alice", at.today, key_id="static-key"),  # a config key: no key quotas
        ],
    )
    config = limits_config(basic={"quota": {"daily": {"requests": 100}}})
    await state.lose()
    limiter = limiter_on(state, config)

    report = await rebuild(limiter, state, database)

    key_quotas = {
        name: used
        for name, used in report.users["alice"].quotas.items()
        if name.endswith(f"@key:{capped.key_id}")
    }
    assert key_quotas == pytest.approx(
        {
            f"quota:daily:cost_usd@key:{capped.key_id}": 0.004,
            f"quota:monthly:requests@key:{capped.key_id}": 4 + (1 if earlier else 0),
        }
    )
    assert report.users["alice"].quotas["quota:daily:requests"] == 4 + 3 + 1
    assert set(report.keys) == {capped.key_id}  # the revoked key cannot be used any more
    assert report.keys[capped.key_id].user == "alice"
    assert report.keys[capped.key_id].daily.requests == 4
    # the key's daily budget is spent; alice's own requests (other keys) still go through
    through_key = await limiter.admit(resolved(limiter, "alice", capped), ONE_REQUEST, "k")
    assert isinstance(through_key.refusal, QuotaExceededError)
    assert f"quota:daily:cost_usd@key:{capped.key_id}" in through_key.refusal.message
    without_key = await limiter.admit(resolved(limiter, "alice"), ONE_REQUEST, "u")
    assert without_key.refusal is None
    assert without_key.admission is not None
    assert without_key.admission.states[0].used == 4 + 3 + 1 + 1


async def test_rebuild_replaces_calendar_use_but_keeps_rate_windows_and_sessions(
    state: State, database: Database
) -> None:
    config = limits_config(
        basic={
            "rate": {"window_s": 600, "requests": 100},
            "quota": {"daily": {"requests": 50}, "session": {"requests": 20}},
        }
    )
    await state.lose()
    limiter = limiter_on(state, config)
    # two requests after the loss: counted in the state, and (once written) in SQL as well
    session_policy = limiter.resolve("alice", None, "s1")
    assert session_policy is not None
    for i in range(2):
        ticket = await limiter.admit(session_policy, ONE_REQUEST, f"live-{i}")
        assert ticket.refusal is None
    at = Moments.at(state.clock.time())
    await seed_rows(database, [record("alice", at.today, session_id="s1") for _ in range(2 + 3)])

    await rebuild(limiter, state, database)

    quotas = await used(limiter, "alice", session="s1")
    assert quotas["quota:daily:requests"] == 5  # the records' count, not 2 + 5
    assert quotas["quota:session:requests"] == 2  # sessions are not rebuilt: left as they were
    _, rate_states, _ = await limiter.status("alice", None, "rate", session_id=None)
    assert [(s.name, s.used) for s in rate_states] == [("rate:requests", 2)]


async def test_rebuild_leaves_a_burst_blocked_user_alone_and_reports_it(
    state: State, sqlite_database: Database
) -> None:
    config = limits_config(basic={"quota": {"daily": {"requests": 50}}})
    limiter = limiter_on(state, config)
    stale = await limiter.admit(resolved(limiter, "alice"), ONE_REQUEST, "before")
    assert stale.refusal is None
    await state.store.block("alice", 30)
    at = Moments.at(state.clock.time())
    await seed_rows(
        sqlite_database,
        [*(record("alice", at.today) for _ in range(7)), record("bob", at.today)],
    )

    report = await rebuild(limiter, state, sqlite_database)

    assert set(report.blocked) == {"alice"}
    assert 0 < report.blocked["alice"] <= 30
    assert (await used(limiter, "alice"))["quota:daily:requests"] == 1  # untouched
    assert (await used(limiter, "bob"))["quota:daily:requests"] == 1
    assert report.users["alice"].quotas == {}


async def test_rebuild_of_named_users_touches_only_them(sqlite_database: Database) -> None:
    clock = ManualClock(time.time())
    state = State("memory", MemoryBackend(clock), clock)
    limiter = limiter_on(state, limits_config(basic={"quota": {"daily": {"requests": 50}}}))
    for user in ("alice", "dave"):  # use the records do not know of
        ticket = await limiter.admit(resolved(limiter, user), ONE_REQUEST, f"stale-{user}")
        assert ticket.refusal is None
    at = Moments.at(clock.time())
    await seed_rows(
        sqlite_database,
        [*(record(user, at.today) for user in ("alice", "bob", "bob", "carol"))],
    )

    report = await rebuild(limiter, state, sqlite_database, users=["bob", "dave"])

    assert set(report.users) == {"bob", "dave"}
    users = ("alice", "bob", "carol", "dave")
    counts = {user: (await used(limiter, user))["quota:daily:requests"] for user in users}
    # alice keeps her use, carol stays untouched, dave (no records) is reset to zero
    assert counts == {"alice": 1, "bob": 2, "carol": 0, "dave": 0}


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def test_rebuild_reproduces_what_the_state_held_across_dst_tiers_and_keys(
    database: Database,
) -> None:
    """The oracle: requests go through a live limiter (and leave their records), then the
    state is lost and rebuilt; every calendar quota must read as it did before.

    New York, on the day DST starts: the day began at 05:00 UTC (EST) though the offset is
    now EDT, and the month at 05:00 UTC on the 1st. Tiers come from keys: the basic tier
    counts requests, the pro key's tier tokens and cost, the pro key its own quotas."""
    config = LimitsConfig.model_validate(
        {
            "timezone": "America/New_York",
            "default_tier": "basic",
            "tiers": {
                "basic": {"quota": {"daily": {"requests": 3}, "monthly": {"requests": 100}}},
                "pro": {"quota": {"daily": {"tokens": 10**6}, "monthly": {"cost_usd": 100}}},
            },
        }
    )
    clock = ManualClock(utc("2026-03-08T20:00:00"))
    state = State("memory", MemoryBackend(clock), clock)
    limiter = limiter_on(state, config)
    own = {"quota": {"daily": {"requests": 100}, "monthly": {"cost_usd": 50}}}
    _, pro = await KeyStore(database).create(user="alice", tier="pro", limits=own, now=0)
    requests = [  # (UTC time, pro key?, the call fails after admission?)
        ("2026-02-27T15:00:00", False, False),
        ("2026-03-01T04:30:00", False, False),  # 23:30 EST on Feb 28: last month
        ("2026-03-01T05:30:00", True, False),  # 00:30 EST on the 1st
        ("2026-03-07T12:00:00", False, False),
        ("2026-03-08T04:30:00", True, False),  # 23:30 EST on the 7th: yesterday
        ("2026-03-08T05:30:00", False, False),  # 00:30 EST: today
        ("2026-03-08T13:00:00", False, False),
        ("2026-03-08T14:00:00", False, False),
        ("2026-03-08T15:00:00", False, False),  # the 4th basic request today: refused
        ("2026-03-08T16:00:00", True, True),
        ("2026-03-08T17:00:00", True, False),
    ]
    rows = []
    for i, (when, by_pro, fails) in enumerate(requests):
        clock.set_time(utc(when))
        key = pro if by_pro else None
        ticket = await limiter.admit(resolved(limiter, "alice", key), ONE_REQUEST, f"r{i}")
        facts: dict[str, Any] = {"key_id": pro.key_id if by_pro else "static-key"}
        if ticket.refusal is not None:
            facts.update(error=ticket.refusal.code, status=429, **NO_USAGE)
        elif fails:
            await ticket.settle(None, 0.0)
            facts.update(error="upstream_unavailable", status=502, **NO_USAGE)
        else:
            tokens, cost = 100 + i, 0.01 * (i + 1)
            await ticket.settle(Usage(tokens - 40, 40, tokens), cost)
            facts.update(prompt_tokens=tokens - 40, completion_tokens=40, cost_usd=cost)
        rows.append(record("alice", clock.time(), **facts))
    await seed_rows(database, rows)
    clock.set_time(utc("2026-03-08T20:00:00"))
    calendar = {
        limit.name: limit
        for policy in (resolved(limiter, "alice"), resolved(limiter, "alice", pro))
        for limit in policy.limits
        if isinstance(limit, PeriodLimit)
    }

    async def held() -> dict[str, float]:
        states: tuple[LimitState, ...] = await state.store.read("alice", list(calendar.values()))
        return {s.name: s.used for s in states}

    truth = await held()
    assert truth["quota:daily:requests"] == 3  # 05:30, 13:00, 14:00 UTC; not 04:30
    assert truth[f"quota:daily:requests@key:{pro.key_id}"] == 2  # 16:00 and 17:00 only
    assert truth["quota:monthly:requests"] == 4  # basic ones from 05:00 UTC on the 1st
    await state.lose()
    limiter = limiter_on(state, config)

    report = await rebuild(limiter, state, database)

    assert await held() == pytest.approx(truth)
    assert report.starts == {
        "daily": utc("2026-03-08T05:00:00"),
        "monthly": utc("2026-03-01T05:00:00"),
    }


# -- the admin route


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def rows_written(database: Database, count: int) -> None:
    """Wait for the gateway's background writer to have stored `count` records."""
    async with asyncio.timeout(5):
        while True:
            async with database.engine.connect() as connection:
                query = select(func.count()).select_from(usage_records)
                if (await connection.execute(query)).scalar_one() >= count:
                    return
            await asyncio.sleep(0.02)


async def test_rebuild_route_restores_a_gateways_quotas_after_redis_lost_its_keys(
    sim: RunningSimulator, database_url: str, http: aiohttp.ClientSession
) -> None:
    """A real gateway on Redis serves until its daily quota refuses, Redis loses every key
    (the quota reads 0 and would admit again), the route rebuilds it, and the gateway
    refuses again."""
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    raw = gateway_config(
        sim.url,
        limits={"tiers": {"basic": {"quota": {"daily": {"requests": 3}}}}, "default_tier": "basic"},
        usage_store={"url": database_url, "flush_interval_s": 0.02},
    )
    gateway = create_app(
        check_config(raw), state_backend=RedisBackend(REDIS_URL, key_prefix=prefix)
    )
    database = Database(database_url)
    user = {"Authorization": f"Bearer {USER_KEY}"}
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    chat = {"model": "test-model", "messages": HELLO, "max_tokens": 5}
    try:
        async with serving(gateway) as url:

            async def call() -> int:
                async with http.post(f"{url}/v1/chat/completions", json=chat, headers=user) as r:
                    return r.status

            async def daily_used() -> float:
                async with http.get(f"{url}/ai-orchestration/quotas/alice", headers=master) as r:
                    body = await r.json()
                return float(body["windows"]["daily"]["requests"]["used"])

            assert [await call() for _ in range(4)] == [200, 200, 200, 429]
            await rows_written(database, 4)
            await drop_keys(REDIS_URL, prefix)
            assert await daily_used() == 0

            async with http.post(f"{url}{REBUILD}", headers=master) as response:
                assert response.status == 200
                body = await response.json()

            assert body["users"]["alice"]["quotas"] == {"quota:daily:requests": 3}
            assert body["users"]["alice"]["daily"]["requests"] == 3
            assert body["blocked"] == {}
            assert await daily_used() == 3
            assert await call() == 429
    finally:
        await database.close()
        await drop_keys(REDIS_URL, prefix)


def rebuild_config(usage_url: str) -> dict[str, Any]:
    return {
        "server": {"master_key": MASTER_KEY},
        "keys": [{"key": USER_KEY, "user": "alice"}],
        "limits": {"tiers": {"basic": {"quota": {"daily": {"requests": 5}}}}},
        "usage_store": {"url": usage_url},
    }


@pytest.fixture
async def route(tmp_path: Path) -> AsyncIterator[str]:
    """A gateway on memory state, for the route's answers to bad calls."""
    app = create_app(check_config(rebuild_config(f"sqlite:///{tmp_path / 'rebuild.db'}")))
    async with serving(app) as url:
        yield url


async def test_rebuild_route_needs_the_master_key_and_a_valid_body(
    route: str, http: aiohttp.ClientSession
) -> None:
    url = route + REBUILD
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with http.post(url) as response:
        assert response.status == 401
    async with http.post(url, headers={"Authorization": f"Bearer {USER_KEY}"}) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "master_key_required"
    for body, param in (
        (b"{", None),
        (b"[]", None),
        (b'{"users": []}', "users"),
        (b'{"users": "alice"}', "users"),
        (b'{"users": [""]}', "users"),
        (b'{"user": ["alice"]}', "user"),
    ):
        async with http.post(url, data=body, headers=master) as response:
            assert response.status == 400, body
            assert (await response.json())["error"]["param"] == param, body
    async with http.post(url, json={"users": ["alice", "alice"]}, headers=master) as response:
        assert response.status == 200
        assert list((await response.json())["users"]) == ["alice"]


async def test_rebuild_route_answers_503_when_a_store_fails(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'rebuild.db'}"
    cases = (  # (usage store, state backend, the error code expected)
        ("postgresql://postgres@127.0.0.1:1/nothing", None, "store_unavailable"),
        (sqlite_url, DownBackend(), "state_backend_unavailable"),
    )
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    for usage_url, backend, code in cases:
        app = create_app(check_config(rebuild_config(usage_url)), state_backend=backend)
        async with (
            serving(app) as url,
            http.post(url + REBUILD, json={"users": ["alice"]}, headers=master) as response,
        ):
            assert response.status == 503
            assert (await response.json())["error"]["code"] == code
