"""Usage queries on SQLite and PostgreSQL: filters, keyset pages, chunked export, spend per
group and per UTC day, and a 503-able error when the database is not there."""

from __future__ import annotations

from typing import Any

import pytest

from stellara.errors import StoreUnavailableError
from stellara.store.db import Database
from stellara.store.usage_query import UsageFilters, UsageQuery
from tests.dbs import seed
from tests.store.test_usage_writer import completed, failed

NEW_YEAR = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["request_id"] for r in records]


async def test_filters_select_matching_records(database: Database) -> None:
    await seed(
        database,
        completed("a1", started_at=NEW_YEAR - 1),
        completed("a2", started_at=NEW_YEAR, model="other", provider="p2", key_id="key_2"),
        failed("a3", started_at=NEW_YEAR + 10, status=429, error="rate_limit_exceeded"),
        completed("b1", started_at=NEW_YEAR + 20, user="bob", team=None, endpoint="/v1/messages"),
    )
    query = UsageQuery(database)

    async def matching(**filters: Any) -> list[str]:
        records, next_after = await query.records(UsageFilters(**filters), 100)
        assert next_after is None
        return ids(records)

    assert await matching() == ["a1", "a2", "a3", "b1"]
    assert await matching(user="bob") == ["b1"]
    assert await matching(team="research") == ["a1", "a2", "a3"]
    assert await matching(model="other") == ["a2"]
    assert await matching(provider="p2") == ["a2"]
    assert await matching(key_id="key_2") == ["a2"]
    assert await matching(endpoint="/v1/messages") == ["b1"]
    assert await matching(status=429) == ["a3"]
    assert await matching(since=NEW_YEAR, until=NEW_YEAR + 20) == ["a2", "a3"]  # [since, until)
    assert await matching(user="alice", since=NEW_YEAR + 5) == ["a3"]
    [record], _ = await query.records(UsageFilters(status=429), 1)
    assert (record["user"], record["error"], record["status"]) == (
        "alice",
        "rate_limit_exceeded",
        429,
    )


async def test_records_pages_by_id_without_gaps_or_overlap(database: Database) -> None:
    await seed(database, *(completed(f"r{i:02}") for i in range(25)))
    query = UsageQuery(database)
    seen: list[str] = []
    after: int | None = None
    pages = []
    while True:
        records, after = await query.records(UsageFilters(), 10, after)
        pages.append(len(records))
        seen += ids(records)
        if after is None:
            break
        assert after == records[-1]["id"]
    assert pages == [10, 10, 5]
    assert seen == [f"r{i:02}" for i in range(25)]


async def test_iter_records_yields_every_record_in_bounded_chunks(database: Database) -> None:
    await seed(database, *(completed(f"r{i:02}", user="u" if i % 2 else "v") for i in range(40)))
    chunks = [chunk async for chunk in UsageQuery(database).iter_records(UsageFilters(user="u"), 7)]
    assert [len(c) for c in chunks] == [7, 7, 6]
    assert [r for c in chunks for r in ids(c)] == [f"r{i:02}" for i in range(1, 40, 2)]


async def test_spend_sums_each_group_costliest_first(database: Database) -> None:
    await seed(
        database,
        completed("a1", prompt_tokens=100, completion_tokens=10, cost_usd=0.25),
        completed("a2", prompt_tokens=50, completion_tokens=5, cached_tokens=40, cost_usd=0.25),
        failed("a3", prompt_tokens=0, completion_tokens=0, cost_usd=0.0),
        completed("b1", user="bob", team=None, model="big", cost_usd=2.0, key_id="key_b"),
    )
    query = UsageQuery(database)
    by_user = await query.spend(UsageFilters(), "user")
    assert by_user == [
        {
            "group": "bob",
            "requests": 1,
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_usd": pytest.approx(2.0),
            "errors": 0,
        },
        {
            "group": "alice",
            "requests": 3,
            "prompt_tokens": 150,
            "completion_tokens": 15,
            "cached_tokens": 40,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_usd": pytest.approx(0.5),
            "errors": 1,
        },
    ]
    assert [(g["group"], g["requests"]) for g in await query.spend(UsageFilters(), "team")] == [
        (None, 1),
        ("research", 3),
    ]
    by_model = await query.spend(UsageFilters(user="alice"), "model")
    assert [(g["group"], g["requests"]) for g in by_model] == [("test-model", 3)]
    by_key = await query.spend(UsageFilters(), "key")
    assert [g["group"] for g in by_key] == ["key_b", "key_1"]
    by_provider = await query.spend(UsageFilters(status=502), "provider")
    assert [(g["group"], g["errors"]) for g in by_provider] == [("sim", 1)]
    await seed(database, completed("r1", endpoint="/v1/responses", cost_usd=1.0))
    by_endpoint = await query.spend(UsageFilters(), "endpoint")
    assert [(g["group"], g["requests"]) for g in by_endpoint] == [
        ("/v1/chat/completions", 4),
        ("/v1/responses", 1),
    ]


async def test_spend_by_day_splits_at_utc_midnight(database: Database) -> None:
    await seed(
        database,
        completed("late", started_at=NEW_YEAR - 0.5, cost_usd=1.0),
        completed("first", started_at=NEW_YEAR, cost_usd=2.0),
        completed("evening", started_at=NEW_YEAR + 86_399.5, cost_usd=3.0),
        completed("next", started_at=NEW_YEAR + 86_400, cost_usd=4.0),
    )
    days = await UsageQuery(database).spend(UsageFilters(), "day")
    assert [(d["group"], d["requests"], d["cost_usd"]) for d in days] == [
        ("2025-12-31", 1, pytest.approx(1.0)),
        ("2026-01-01", 2, pytest.approx(5.0)),
        ("2026-01-02", 1, pytest.approx(4.0)),
    ]


async def assert_store_unavailable(url: str) -> None:
    database = Database(url)
    query = UsageQuery(database)
    try:
        with pytest.raises(StoreUnavailableError) as records_error:
            await query.records(UsageFilters(), 10)
        with pytest.raises(StoreUnavailableError):
            await query.spend(UsageFilters(), "day")
    finally:
        await database.close()
    assert records_error.value.status_code == 503
    assert "unavailable" in records_error.value.message


async def test_store_without_its_schema_raises_store_unavailable(database_url: str) -> None:
    await assert_store_unavailable(database_url)  # never migrated: no usage_records table


async def test_refused_connection_raises_store_unavailable() -> None:
    await assert_store_unavailable("postgresql://postgres@127.0.0.1:9/none")  # nothing on :9
