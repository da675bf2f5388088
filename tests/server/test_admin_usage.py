"""The usage admin API over HTTP: master key only, filters and cursors, CSV export of every
record, spend per group with totals, the writer's status, 400 for bad parameters and 503 when
the store fails."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stellara.assembly import build_runtime
from stellara.assembly.config import check_config
from stellara.errors import StoreUnavailableError
from stellara.events import EventBus
from stellara.store.db import Database
from stellara.store.migrate import upgrade
from stellara.store.usage import UsageWriter
from stellara.store.usage_query import RECORD_FIELDS, UsageFilters, UsageQuery
from tests.conftest import MASTER_KEY, USER_KEY, routes_only
from tests.dbs import seed
from tests.store.test_usage_writer import completed, failed, store_config

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
NEW_YEAR = 1_767_225_600.0  # 2026-01-01T00:00:00Z


async def serve(
    database: Database, *, query: UsageQuery | None = None, writer: UsageWriter | None = None
) -> TestClient[web.Request, web.Application]:
    """A gateway's routes reading `database` (through `query` when given), its parts not
    started; the caller closes the database."""
    config = check_config(
        {
            "server": {"master_key": MASTER_KEY},
            "keys": [{"key": USER_KEY, "user": "alice"}],
            "usage_store": {"url": "sqlite:///unused.db"},
        }
    )
    runtime = build_runtime(config)
    runtime = replace(
        runtime, usage_query=query or UsageQuery(database), usage=writer or runtime.usage
    )
    client = TestClient(TestServer(routes_only(runtime)))
    await client.start_server()
    return client


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite: the queries themselves are tested on both databases in tests/store."""
    database = Database(f"sqlite:///{tmp_path / 'usage.db'}")
    await upgrade(database)
    yield database
    await database.close()


@pytest.fixture
async def client(database: Database) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = await serve(database)
    yield client
    await client.close()


async def get_json(
    client: TestClient[web.Request, web.Application], path: str, status: int = 200
) -> Any:
    async with client.get(path, headers=MASTER) as response:
        assert response.status == status, await response.text()
        assert response.content_type == "application/json"
        return await response.json()


@pytest.mark.parametrize("path", ["/admin/usage", "/admin/spend", "/admin/usage/status"])
async def test_routes_need_the_master_key(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    async with client.get(path) as anonymous:
        assert anonymous.status == 401
    async with client.get(path, headers={"Authorization": f"Bearer {USER_KEY}"}) as user:
        assert user.status == 403
        assert (await user.json())["error"]["type"] == "permission_error"


async def test_usage_pages_through_filtered_records(
    client: TestClient[web.Request, web.Application], database: Database
) -> None:
    await seed(database, *(completed(f"a{i}", user="alice" if i < 5 else "bob") for i in range(7)))
    seen: list[str] = []
    path = "/admin/usage?user=alice&limit=2"
    while True:
        page = await get_json(client, path)
        assert page["object"] == "list"
        assert len(page["data"]) <= 2
        seen += [r["request_id"] for r in page["data"]]
        if not page["has_more"]:
            assert page["next_after"] is None
            break
        path = f"/admin/usage?user=alice&limit=2&after={page['next_after']}"
    assert seen == ["a0", "a1", "a2", "a3", "a4"]
    [record] = (await get_json(client, "/admin/usage?user=bob&limit=1&after=6"))["data"]
    assert record["request_id"] == "a6"
    assert set(record) == set(RECORD_FIELDS)


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2026-01-01T00:00:00Z", "2026-01-01T00:01:00+00:00"),
        ("2026-01-01T00:00:00", "2026-01-01T01:01:00+01:00"),  # naive is UTC
        (str(NEW_YEAR), str(NEW_YEAR + 60)),
        ("2026-01-01", "1767225660"),
    ],
)
async def test_usage_time_window_accepts_iso_and_epoch(
    client: TestClient[web.Request, web.Application], database: Database, since: str, until: str
) -> None:
    await seed(
        database,
        completed("before", started_at=NEW_YEAR - 1),
        completed("start", started_at=NEW_YEAR),
        completed("inside", started_at=NEW_YEAR + 59.9),
        completed("end", started_at=NEW_YEAR + 60),
    )
    page = await get_json(client, f"/admin/usage?since={since}&until={until.replace('+', '%2B')}")
    assert [r["request_id"] for r in page["data"]] == ["start", "inside"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("/admin/usage?limit=0", "limit"),
        ("/admin/usage?limit=10001", "limit"),
        ("/admin/usage?limit=ten", "limit"),
        ("/admin/usage?after=-1", "after"),
        ("/admin/usage?since=yesterday", "since"),
        ("/admin/usage?until=nan", "until"),
        ("/admin/usage?since=20&until=10", "until"),
        ("/admin/usage?status=abc", "status"),
        ("/admin/usage?format=xml", "format"),
        ("/admin/usage?format=csv&since=soon", "since"),
        ("/admin/spend?group_by=week", "group_by"),
        ("/admin/spend?until=inf", "until"),
    ],
)
async def test_bad_parameters_answer_400_naming_them(
    client: TestClient[web.Request, web.Application], query: str, param: str
) -> None:
    body = await get_json(client, query, status=400)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert param in body["error"]["message"]


async def test_csv_export_streams_every_matching_record(
    client: TestClient[web.Request, web.Application], database: Database
) -> None:
    await seed(database, *(completed(f"r{i:04}") for i in range(2500)))
    await seed(database, completed("bob1", user="bob", session_id="=HYPERLINK(1)"))
    async with client.get("/admin/usage?format=csv&limit=1", headers=MASTER) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert response.headers["Content-Disposition"].startswith("attachment")
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == list(RECORD_FIELDS)
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [r["request_id"] for r in records] == [f"r{i:04}" for i in range(2500)] + ["bob1"]
    assert records[0]["prompt_tokens"] == "10"
    assert records[-1]["session_id"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    async with client.get("/admin/usage?format=csv&user=bob", headers=MASTER) as only_bob:
        assert len((await only_bob.text()).splitlines()) == 2


async def test_spend_groups_records_and_totals_them(
    client: TestClient[web.Request, web.Application], database: Database
) -> None:
    await seed(
        database,
        completed("a1", model="small", cost_usd=0.5),
        completed("a2", model="big", cost_usd=1.5, started_at=NEW_YEAR + 86_400),
        failed("a3", model="big", cost_usd=0.0, prompt_tokens=0, completion_tokens=0),
        completed("b1", user="bob", model="small", cost_usd=0.25),
    )
    by_model = await get_json(client, "/admin/spend?group_by=model")
    assert by_model["group_by"] == "model"
    assert [(g["group"], g["requests"], g["errors"]) for g in by_model["data"]] == [
        ("big", 2, 1),
        ("small", 2, 0),
    ]
    assert by_model["total"] == {
        "requests": 4,
        "prompt_tokens": 30,
        "completion_tokens": 60,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": pytest.approx(2.25),
        "errors": 1,
    }
    by_user = await get_json(client, "/admin/spend?model=small")  # default: per user
    assert by_user["group_by"] == "user"
    assert [(g["group"], g["cost_usd"]) for g in by_user["data"]] == [
        ("alice", pytest.approx(0.5)),
        ("bob", pytest.approx(0.25)),
    ]
    by_day = await get_json(client, "/admin/spend?group_by=day&user=alice")
    assert [(g["group"], g["requests"]) for g in by_day["data"]] == [
        ("2026-01-01", 2),
        ("2026-01-02", 1),
    ]


async def test_status_shows_the_writer(database: Database, tmp_path: Path) -> None:
    writer = UsageWriter(database, store_config(f"sqlite:///{tmp_path / 'usage.db'}"))
    bus = EventBus()
    writer.attach(bus)
    bus.publish(completed("r1"))
    with_writer = await serve(database, writer=writer)
    try:
        before = await get_json(with_writer, "/admin/usage/status")
        await writer.close()
        after = await get_json(with_writer, "/admin/usage/status")
    finally:
        await with_writer.close()
    assert (before["enabled"], before["pending"], before["written"]) == (True, 1, 0)
    assert (after["pending"], after["written"], after["dropped"]) == (0, 1, 0)
    assert (after["healthy"], after["last_error"]) == (True, None)


@pytest.mark.parametrize(
    "path", ["/admin/usage", "/admin/usage?format=csv", "/admin/spend?group_by=day"]
)
async def test_store_failure_answers_503(tmp_path: Path, path: str) -> None:
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}")  # no schema: every query fails
    client = await serve(database)
    try:
        body = await get_json(client, path, status=503)
    finally:
        await client.close()
        await database.close()
    assert body["error"]["code"] == "store_unavailable"


class FailingAfterFirstPage(UsageQuery):
    """The store goes away after the export's first page."""

    calls = 0

    async def records(
        self, filters: UsageFilters, limit: int, after_id: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        self.calls += 1
        if self.calls > 1:
            raise StoreUnavailableError("The usage store is unavailable: OSError.")
        return await super().records(filters, limit, after_id)


async def test_csv_export_failing_midway_is_cut_short(database: Database) -> None:
    await seed(database, *(completed(f"r{i:04}") for i in range(1500)))
    client = await serve(database, query=FailingAfterFirstPage(database))
    try:
        async with client.get("/admin/usage?format=csv", headers=MASTER) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()  # never a complete-looking partial file
    finally:
        await client.close()
