"""The usage store goes down under load and comes back: nothing blocks, nothing is lost or
doubled. PostgreSQL is "killed" by a TCP proxy that drops every connection and refuses new
ones; SQLite by another connection holding an exclusive lock."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from stellara.events import EventBus
from stellara.store.db import Database
from stellara.store.migrate import upgrade
from stellara.store.tables import usage_records
from stellara.store.usage import UsageWriter
from stellara.store.usage_query import UsageFilters, UsageQuery
from tests.store.test_usage_writer import completed, eventually, store_config

pytestmark = pytest.mark.e2e


class TcpProxy:
    """Relays 127.0.0.1:`port` to a server; `kill` drops every connection and refuses new
    ones (the port stays reserved), `revive` accepts again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def revive(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def kill(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()


@dataclass
class Outage:
    """The URL the writer should use, and how to take its database down and up again.
    `is_refused`: writes fail at once (PostgreSQL) rather than wait (a locked SQLite)."""

    url: str
    take_down: Callable[[], Awaitable[None]]
    bring_back: Callable[[], Awaitable[None]]
    is_refused: bool


@asynccontextmanager
async def outage_switch(database_url: str) -> AsyncIterator[Outage]:
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        assert path is not None
        # Used from a thread: waiting for the lock must not stop the loop, where the writer
        # holding it is about to commit.
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

        async def lock() -> None:
            await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")  # every writer waits

        async def unlock() -> None:
            await asyncio.to_thread(locker.execute, "COMMIT")

        try:
            yield Outage(database_url, lock, unlock, is_refused=False)
        finally:
            locker.close()
        return
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.revive()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        yield Outage(proxied, proxy.kill, proxy.revive, is_refused=True)
    finally:
        await proxy.kill()


@pytest.fixture
async def migrated(database_url: str) -> str:
    database = Database(database_url)
    await upgrade(database)
    await database.close()
    return database_url


async def request_ids(database: Database) -> list[str]:
    async with database.engine.connect() as connection:
        result = await connection.execute(select(usage_records.c.request_id))
        return [row[0] for row in result]


async def test_database_outage_under_load_loses_and_doubles_nothing(migrated: str) -> None:
    async with outage_switch(migrated) as outage:
        database = Database(outage.url)
        config = store_config(outage.url, batch_records=50, flush_interval_s=0.02)
        writer = UsageWriter(database, config, retry_max_s=0.1)
        bus = EventBus()
        writer.attach(bus)
        writer.start()
        published = 0
        slowest_publish_s = 0.0

        async def load(count: int) -> None:
            nonlocal published, slowest_publish_s
            for _ in range(count):
                started = time.perf_counter()
                bus.publish(completed(f"req_{published:05}"))
                slowest_publish_s = max(slowest_publish_s, time.perf_counter() - started)
                published += 1
                await asyncio.sleep(0.001)

        await load(200)
        await eventually(lambda: writer.written > 0)
        written_before = writer.written
        await outage.take_down()
        await load(400)  # the database is down for the whole of it
        assert writer.written <= written_before + 50  # at most the batch in flight got in
        assert writer.pending >= 300
        assert writer.is_healthy is not outage.is_refused
        await outage.bring_back()
        await load(200)
        await writer.close()
        stored = await request_ids(database)
        await database.close()
    assert len(stored) == len(set(stored)) == published == 800
    assert set(stored) == {f"req_{i:05}" for i in range(800)}
    assert (writer.written, writer.dropped, writer.pending) == (800, 0, 0)
    assert slowest_publish_s < 0.05  # the request path never waits for the database


async def test_outage_longer_than_the_buffer_keeps_the_newest_records(migrated: str) -> None:
    async with outage_switch(migrated) as outage:
        database = Database(outage.url)
        config = store_config(
            outage.url, batch_records=50, buffer_records=100, flush_interval_s=0.02
        )
        writer = UsageWriter(database, config, retry_max_s=0.1)
        bus = EventBus()
        writer.attach(bus)
        writer.start()
        await outage.take_down()
        for i in range(400):
            bus.publish(completed(f"req_{i:05}"))
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        assert writer.dropped >= 250
        await outage.bring_back()
        await writer.close()
        stored = await request_ids(database)
        await database.close()
    assert len(stored) == len(set(stored))
    assert len(stored) + writer.dropped == 400
    assert {f"req_{i:05}" for i in range(300, 400)} <= set(stored)  # the newest 100 survive


async def test_thousand_concurrent_events_make_a_thousand_rows_with_exact_sums(
    migrated: str,
) -> None:
    database = Database(migrated)
    writer = UsageWriter(database, store_config(migrated, batch_records=100))
    bus = EventBus()
    writer.attach(bus)
    writer.start()
    rng = random.Random(7)
    facts: list[dict[str, Any]] = []
    for _ in range(1000):
        prompt, completion = rng.randint(1, 5000), rng.randint(0, 2000)
        cost = (prompt * 0.15 + completion * 0.6) / 1e6  # gpt-4o-mini's prices
        facts.append({"prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost})

    async def request(i: int) -> None:
        await asyncio.sleep(rng.random() * 0.05)
        bus.publish(completed(f"req_{i:04}", user=f"user{i % 7}", **facts[i]))

    await asyncio.gather(*(request(i) for i in range(1000)))
    await writer.close()
    groups = await UsageQuery(database).spend(UsageFilters(), "user")
    async with database.engine.connect() as connection:
        rows = await connection.scalar(
            select(func.count(func.distinct(usage_records.c.request_id)))
        )
    await database.close()
    assert rows == 1000
    assert sum(g["requests"] for g in groups) == 1000
    assert sum(g["prompt_tokens"] for g in groups) == sum(f["prompt_tokens"] for f in facts)
    assert sum(g["completion_tokens"] for g in groups) == sum(f["completion_tokens"] for f in facts)
    assert sum(g["cost_usd"] for g in groups) == pytest.approx(sum(f["cost_usd"] for f in facts))
