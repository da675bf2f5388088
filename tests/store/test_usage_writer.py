"""The usage writer on SQLite and PostgreSQL: every event becomes exactly one row, batches are
written without waiting when full, retried through failures, flushed on close, and a full
buffer drops its oldest records and counts them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from stellara.config.models import UsageStoreConfig
from stellara.events import EventBus, RequestCompleted, RequestFailed
from stellara.store.db import Database
from stellara.store.tables import usage_records
from stellara.store.usage import UsageWriter, usage_row
from stellara.testing import request_completed, request_failed
from tests.dbs import migrated

PROMPT = "SECRET-PROMPT-TEXT"


# A request of `test-model` answered by the simulator, with the content `log_content` keeps.
SIM_ANSWER: dict[str, Any] = {
    "team": "research",
    "key_prefix": "sk-stl-abcde",
    "model": "test-model",
    "provider": "sim",
    "provider_model": "gpt-4o-mini",
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "cost_usd": 0.001,
    "latency_ms": 12.5,
    "attempt_spans": (),
    "prompt": PROMPT,
    "completion": "the answer",
}


def completed(request_id: str, **facts: Any) -> RequestCompleted:
    """A `request.completed` event with content (overridable)."""
    return request_completed(**{**SIM_ANSWER, "request_id": request_id, **facts})


def failed(request_id: str, **facts: Any) -> RequestFailed:
    """A `request.failed` event: an upstream error after its usage was known."""
    return request_failed(**{**SIM_ANSWER, "request_id": request_id, "message": PROMPT, **facts})


def store_config(url: str, **overrides: Any) -> UsageStoreConfig:
    return UsageStoreConfig(url=url, **{"flush_interval_s": 0.05, **overrides})


async def stored_rows(database: Database) -> list[dict[str, Any]]:
    async with database.engine.connect() as connection:
        result = await connection.execute(select(usage_records).order_by(usage_records.c.id))
        return [dict(row) for row in result.mappings()]


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for the background writer to reach `condition` (a real database sets the pace)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the writer has no event to wait on: poll it
            await asyncio.sleep(0.01)


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    """For the buffering and timing, the same whatever the database."""
    async with migrated(f"sqlite:///{tmp_path / 'usage.db'}") as database:
        yield database


def writer_on(database: Database, bus: EventBus, **config: Any) -> UsageWriter:
    url = database.url.render_as_string(hide_password=False)
    # Short backoff so outage tests recover within a second of the database coming back.
    writer = UsageWriter(database, store_config(url, **config), retry_max_s=0.2)
    writer.attach(bus)
    return writer


async def test_writer_stores_each_event_once_without_message_or_content(database: Database) -> None:
    bus = EventBus()
    writer = writer_on(database, bus)
    writer.start()
    bus.publish(
        completed(
            "req_ok",
            session_id="s-1",
            ttfb_ms=3.5,
            cached_tokens=4,
            cache_write_tokens=3,
            reasoning_tokens=7,
        )
    )
    bus.publish(failed("req_bad", provider="", provider_model=""))
    await writer.close()
    ok, bad = await stored_rows(database)
    assert ok["request_id"] == "req_ok"
    assert (ok["user_id"], ok["team"], ok["session_id"]) == ("alice", "research", "s-1")
    assert (ok["prompt_tokens"], ok["completion_tokens"], ok["cached_tokens"]) == (10, 20, 4)
    assert (ok["cache_write_tokens"], ok["reasoning_tokens"]) == (3, 7)
    assert ok["cost_usd"] == pytest.approx(0.001)
    assert (ok["status"], ok["error_type"], ok["ttfb_ms"]) == (200, None, 3.5)
    assert (bad["status"], bad["error_type"], bad["provider"]) == (
        502,
        "upstream_unavailable",
        None,
    )
    for row in (ok, bad):
        assert row["prompt"] is None
        assert row["completion"] is None
        assert PROMPT not in repr(row)
    assert writer.status() | {"database": None} == {
        "healthy": True,
        "pending": 0,
        "written": 2,
        "dropped": 0,
        "last_error": None,
        "buffer_records": 100_000,
        "database": None,
    }


async def test_writer_stores_the_endpoint_and_null_for_a_call_outside_http(
    database: Database,
) -> None:
    bus = EventBus()
    writer = writer_on(database, bus)
    writer.start()
    bus.publish(completed("req_messages", endpoint="/v1/messages"))
    bus.publish(completed("req_library", endpoint=""))
    await writer.close()
    assert [row["endpoint"] for row in await stored_rows(database)] == ["/v1/messages", None]


async def test_writer_stores_content_only_when_configured(sqlite_database: Database) -> None:
    bus = EventBus()
    writer = writer_on(sqlite_database, bus, log_content=True)
    bus.publish(completed("req_1"))
    await writer.close()
    [row] = await stored_rows(sqlite_database)
    assert (row["prompt"], row["completion"]) == (PROMPT, "the answer")


async def test_full_batch_is_written_without_waiting_for_the_interval(
    sqlite_database: Database,
) -> None:
    bus = EventBus()
    writer = writer_on(sqlite_database, bus, batch_records=10, flush_interval_s=60)
    writer.start()
    for i in range(25):
        bus.publish(completed(f"req_{i}"))
    await eventually(lambda: writer.written == 20)
    assert writer.pending == 5  # less than a batch waits for the interval
    await writer.close()
    assert len(await stored_rows(sqlite_database)) == 25


async def test_partial_batch_is_written_after_the_flush_interval(sqlite_database: Database) -> None:
    bus = EventBus()
    writer = writer_on(sqlite_database, bus, flush_interval_s=0.05)
    writer.start()
    bus.publish(completed("req_1"))
    await eventually(lambda: writer.written == 1)
    assert [r["request_id"] for r in await stored_rows(sqlite_database)] == ["req_1"]
    await writer.close()


async def test_close_flushes_every_pending_record(sqlite_database: Database) -> None:
    bus = EventBus()
    writer = writer_on(sqlite_database, bus, batch_records=300, flush_interval_s=60)
    writer.start()
    for i in range(1000):
        bus.publish(completed(f"req_{i}"))
    await writer.close()
    rows = await stored_rows(sqlite_database)
    assert sorted(r["request_id"] for r in rows) == sorted(f"req_{i}" for i in range(1000))
    assert (writer.written, writer.pending, writer.dropped) == (1000, 0, 0)


async def test_full_buffer_drops_the_oldest_and_counts_them(
    sqlite_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    writer = writer_on(sqlite_database, bus, buffer_records=100)
    with caplog.at_level(logging.WARNING, "stellara.store.usage"):
        for i in range(150):  # not started yet: nothing is written
            bus.publish(completed(f"req_{i}"))
    assert (writer.pending, writer.dropped) == (100, 50)
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    await writer.close()
    rows = await stored_rows(sqlite_database)
    assert [r["request_id"] for r in rows] == [f"req_{i}" for i in range(50, 150)]
    assert writer.dropped == 50


async def test_records_already_stored_are_not_duplicated(database: Database) -> None:
    # A batch whose commit succeeded but whose answer was lost is sent again.
    already = [usage_row(completed(f"req_{i}"), log_content=False) for i in range(2)]
    async with database.engine.begin() as connection:
        await connection.execute(insert(usage_records), already)
    bus = EventBus()
    writer = writer_on(database, bus)
    for i in range(3):
        bus.publish(completed(f"req_{i}"))
    await writer.close()
    rows = await stored_rows(database)
    assert sorted(r["request_id"] for r in rows) == ["req_0", "req_1", "req_2"]
    assert (writer.is_healthy, writer.dropped) == (True, 0)


async def test_a_record_the_database_refuses_is_dropped_alone(database: Database) -> None:
    bus = EventBus()
    writer = writer_on(database, bus)
    bus.publish(completed("req_1"))
    bus.publish(completed("req_poison", model=None))  # NOT NULL: never storable
    bus.publish(completed("req_2"))
    await writer.close()
    assert [r["request_id"] for r in await stored_rows(database)] == ["req_1", "req_2"]
    assert (writer.written, writer.dropped, writer.pending) == (2, 1, 0)


async def test_writer_retries_through_an_outage_without_loss(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    writer = writer_on(database, bus, batch_records=20, log_content=True)
    writer.start()
    async with database.engine.begin() as connection:  # every insert now fails
        await connection.execute(text("ALTER TABLE usage_records RENAME TO usage_away"))
    with caplog.at_level(logging.INFO, "stellara.store.usage"):
        for i in range(100):
            bus.publish(completed(f"req_{i}"))
        await eventually(lambda: not writer.is_healthy)
        await asyncio.sleep(0.3)  # several retries fail
        assert writer.written == 0
        assert writer.pending == 100
        assert writer.last_error is not None
        assert PROMPT not in writer.last_error
        assert "INSERT" not in writer.last_error
        async with database.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE usage_away RENAME TO usage_records"))
        await eventually(lambda: writer.written == 100)
    assert writer.is_healthy
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unavailable" in m]) == 1
    assert len([m for m in messages if "back after" in m]) == 1
    await writer.close()
    rows = await stored_rows(database)
    assert sorted(r["request_id"] for r in rows) == sorted(f"req_{i}" for i in range(100))


async def test_close_counts_what_it_could_not_write_as_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    database = Database(url)  # never migrated: every insert fails
    bus = EventBus()
    writer = writer_on(database, bus)
    writer.start()
    for i in range(5):
        bus.publish(completed(f"req_{i}"))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, "stellara.store.usage"):
        await writer.close(timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert (writer.written, writer.pending, writer.dropped) == (0, 0, 5)
    assert any("5 records unwritten" in r.getMessage() for r in caplog.records)
    bus.publish(completed("req_late"))  # after close: counted, not kept
    assert (writer.pending, writer.dropped) == (0, 6)
    await database.close()
