"""Usage records: one row per model call, written in the background in batches.

The request path only appends the event's facts to a bounded in-memory buffer; one task per
process writes them. The database may be down, locked or full for a while: the writer keeps
the batch it was writing, backs off and tries again, and the buffer absorbs new records
until it is full, when the oldest are dropped and counted. Inserts ignore a `request_id`
already stored, so a batch retried after a commit whose answer was lost is never doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from stellara._clock import Clock, SystemClock
from stellara._tasks import finish_within
from stellara.config.models import UsageStoreConfig
from stellara.events import EventBus, RequestEnded
from stellara.store.db import Database
from stellara.store.tables import usage_records

logger = logging.getLogger(__name__)

# The database is down, locked, full or slow: worth retrying the same batch.
_UNAVAILABLE = (SQLAlchemyError, OSError, TimeoutError)
# A row the database will never take (a NULL or an oversized value): retrying cannot help.
_REJECTED = (IntegrityError, DataError)
CLOSE_TIMEOUT_S = 10.0
# Rows per INSERT on SQLite: sqlite3 binds them holding the GIL, which stops the event loop;
# 50 rows keep each stop well under a millisecond (500 showed as +1 ms at p99, unloaded).
SQLITE_ROWS_PER_STATEMENT = 50

_CONTENT_COLUMNS = ("prompt", "completion")  # only with `log_content`

Row = dict[str, Any]


def usage_row(event: RequestEnded, *, log_content: bool) -> Row:
    """The `usage_records` row of a request's end. The error's `message` is never stored (it
    may echo the prompt), nor the content unless `log_content`."""
    row: Row = {
        "request_id": event.request_id,
        "started_at": event.started_at,
        "user_id": event.user,
        "team": event.team,
        "key_id": event.key_id,
        "key_prefix": event.key_prefix,
        "session_id": event.session_id,
        "endpoint": event.endpoint or None,  # "": not through the HTTP API
        "model": event.model,
        "provider": event.provider or None,  # "": failed before a target was chosen
        "provider_model": event.provider_model or None,
        "attempts": event.attempts,
        "cache": event.cache,
        "stream": event.stream,
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "cached_tokens": event.cached_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "cost_usd": event.cost_usd,
        "usage_estimated": event.usage_estimated,
        "latency_ms": event.latency_ms,
        "ttfb_ms": event.ttfb_ms,
        "status": event.status,
        "error_type": event.error,
        "experiment": event.experiment,
        "variant": event.variant,
    }
    if log_content:  # every row of a writer has the same keys: one executemany per batch
        row["prompt"] = event.prompt
        row["completion"] = event.completion
    return row


class _BatchInsert:
    """The idempotent batch insert, compiled once and run straight through the driver.

    SQLAlchemy's per-row parameter processing would cost ~5 µs a record on the event loop
    (a third of the whole write); the rows' values need none (plain numbers and strings).
    On SQLite a batch is one multi-row INSERT: sqlite3's executemany releases and retakes the
    GIL for every row, and under a busy event loop each retake waits for the loop's switch
    interval, so a writer taking rows one by one fell behind at a few hundred records a second.
    """

    def __init__(self, database: Database, *, log_content: bool) -> None:
        insert = sqlite.insert if database.is_sqlite else postgresql.insert
        # inline(): no RETURNING of the new ids, which executemany cannot take.
        statement = (
            insert(usage_records).inline().on_conflict_do_nothing(index_elements=["request_id"])
        )
        columns = [
            column.name
            for column in usage_records.columns
            if column.name != "id" and (log_content or column.name not in _CONTENT_COLUMNS)
        ]
        compiled = statement.compile(dialect=database.engine.dialect, column_keys=columns)
        self._sql = compiled.string
        self._order = tuple(compiled.positiontup or ())
        self._is_sqlite = database.is_sqlite
        self._multi_row_sql: dict[int, str] = {}

    async def run(self, connection: AsyncConnection, rows: list[Row]) -> None:
        order = self._order
        values = [tuple(row[name] for name in order) for row in rows]
        if not self._is_sqlite:
            await connection.exec_driver_sql(self._sql, values)  # asyncpg: one round trip
            return
        for start in range(0, len(values), SQLITE_ROWS_PER_STATEMENT):
            chunk = values[start : start + SQLITE_ROWS_PER_STATEMENT]
            flat = tuple(value for row in chunk for value in row)
            await connection.exec_driver_sql(self._multi_row(len(chunk)), flat)

    def _multi_row(self, count: int) -> str:
        sql = self._multi_row_sql.get(count)
        if sql is None:
            one = "(" + ", ".join("?" * len(self._order)) + ")"
            head, _, tail = self._sql.partition(" VALUES ")
            rest = tail[tail.index(")") + 1 :]  # the ON CONFLICT clause
            sql = self._multi_row_sql[count] = f"{head} VALUES {', '.join([one] * count)}{rest}"
        return sql


class UsageWriter:
    """Buffers usage records from the event bus and writes them to SQL in batches.

    Call `attach` when building the app, `start` once its loop runs and `close` at shutdown
    (after the last request has published its event). Nothing here ever raises into a
    request; `status()` tells the admin API how the writing goes. Memory holds at most
    `buffer_records` waiting records plus the one batch being written.
    """

    def __init__(
        self,
        database: Database,
        config: UsageStoreConfig,
        *,
        clock: Clock | None = None,
        retry_first_s: float = 0.1,
        retry_max_s: float = 5.0,
    ) -> None:
        self._db = database
        self._config = config
        self._clock = clock or SystemClock()
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._buffer: deque[Row] = deque(maxlen=config.buffer_records)
        self._batch: list[Row] = []  # taken from the buffer, being written (or retried)
        self._insert = _BatchInsert(database, log_content=config.log_content)
        self._wake = asyncio.Event()  # a full batch is pending, or closing
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._is_closed = False
        self._written = 0
        self._dropped = 0
        self._last_error: str | None = None
        self._down_since: float | None = None  # monotonic; None while writes succeed
        self._dropped_at_outage = 0
        self._overflow_warned = False

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._batch)

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def last_error(self) -> str | None:
        """The last write failure (kept after recovery, for the admin API); no SQL, no data."""
        return self._last_error

    @property
    def is_healthy(self) -> bool:
        """True unless the last write failed (the store is down for this process)."""
        return self._down_since is None

    def pending_row(self, request_id: str) -> Row | None:
        """The record of `request_id` if it still waits to be written (newest first: what is
        asked about is usually a request that has just ended)."""
        for row in reversed(self._buffer):
            if row["request_id"] == request_id:
                return row
        return next((row for row in self._batch if row["request_id"] == request_id), None)

    def status(self) -> dict[str, Any]:
        return {
            "healthy": self.is_healthy,
            "pending": self.pending,
            "written": self._written,
            "dropped": self._dropped,
            "last_error": self._last_error,
            "buffer_records": self._config.buffer_records,
            "database": self._db.where,
        }

    def attach(self, events: EventBus) -> None:
        events.subscribe(RequestEnded, self._record)

    def _record(self, event: RequestEnded) -> None:
        """The subscriber: runs on the request path, so no I/O and nothing to wait for."""
        if self._is_closed:
            self._drop(1, "after the usage writer closed")
            return
        row = usage_row(event, log_content=self._config.log_content)
        if len(self._buffer) == self._buffer.maxlen:  # append drops the oldest
            self._drop(1, f"the buffer of {self._config.buffer_records} records is full")
        self._buffer.append(row)
        if len(self._buffer) >= self._config.batch_records:
            self._wake.set()

    def _drop(self, count: int, why: str) -> None:
        self._dropped += count
        if not self._overflow_warned:
            self._overflow_warned = True
            logger.warning("usage records dropped (%s); counting them in `dropped`", why)

    def start(self) -> None:
        """Start the background writer on the running loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write every pending record, retrying while the database fails, for at most
        `timeout_s`; whatever is still unwritten then is counted as dropped and logged."""
        self._is_closed = True
        self._closing.set()
        self._wake.set()
        self.start()  # never started (no loop at start-up): the records still get written
        assert self._task is not None
        await finish_within(self._task, timeout_s)
        lost = self.pending
        if lost:
            self._dropped += lost
            self._buffer.clear()
            self._batch = []
            logger.error(
                "usage writer stopped with %d records unwritten (%s): %s",
                lost,
                self._db.where,
                self._last_error,
            )

    async def _run(self) -> None:
        delay_s = self._retry_first_s
        while True:
            if not self._batch:
                await self._wait_for_records()
                self._take_batch()
                if not self._batch:
                    if self._closing.is_set():
                        return
                    continue
            try:
                await self._write_batch()
            except _UNAVAILABLE as exc:
                self._failed(exc)
                await self._back_off(delay_s)
                delay_s = min(delay_s * 2, self._retry_max_s)
            except Exception:  # a bug must not stop usage recording for good
                logger.exception("usage writer failed; retrying")
                await self._back_off(self._retry_max_s)
            else:
                delay_s = self._retry_first_s

    async def _wait_for_records(self) -> None:
        """Until a full batch is pending, the flush interval has passed, or closing."""
        if len(self._buffer) >= self._config.batch_records or self._closing.is_set():
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.flush_interval_s):
                await self._wake.wait()

    async def _back_off(self, delay_s: float) -> None:
        """Wait `delay_s` before retrying; `close` cuts it short (the database may be back)."""
        if self._closing.is_set():
            await asyncio.sleep(min(delay_s, self._retry_first_s))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._closing.wait()

    def _take_batch(self) -> None:
        take = min(len(self._buffer), self._config.batch_records)
        self._batch = [self._buffer.popleft() for _ in range(take)]

    async def _write_batch(self) -> None:
        waiting = self.pending
        try:
            async with self._db.engine.begin() as connection:
                await self._insert.run(connection, self._batch)
        except _REJECTED:
            await self._write_one_by_one()
        else:
            self._written += len(self._batch)
            self._batch = []
        self._recovered(waiting)

    async def _write_one_by_one(self) -> None:
        """A batch the database refused as data: keep every row it takes, drop the others."""
        batch, self._batch = self._batch, []
        for index, row in enumerate(batch):
            try:
                async with self._db.engine.begin() as connection:
                    await self._insert.run(connection, [row])
            except _REJECTED as exc:
                self._dropped += 1
                logger.error(
                    "usage record %s refused by the database, dropped: %s",
                    row["request_id"],
                    describe(exc),
                )
            except BaseException:  # down again, or cancelled: the rest is still pending
                self._batch = batch[index:]
                raise
            else:
                self._written += 1

    def _failed(self, exc: BaseException) -> None:
        self._last_error = describe(exc)
        if self._down_since is None:
            self._down_since = self._clock.monotonic()
            self._dropped_at_outage = self._dropped
            logger.warning(
                "usage store %s unavailable (%s); buffering records and retrying",
                self._db.where,
                self._last_error,
            )

    def _recovered(self, waited: int) -> None:
        if self._down_since is not None:
            logger.info(
                "usage store %s back after %.1f s: %d records waited, %d dropped",
                self._db.where,
                self._clock.monotonic() - self._down_since,
                waited,
                self._dropped - self._dropped_at_outage,
            )
            self._down_since = None
        if not self._buffer:
            self._overflow_warned = False  # caught up: the next overflow is a new episode


def describe(exc: BaseException) -> str:
    """The error's type and first line, never the SQL statement or its parameters (they
    would carry the records' content into logs and the admin API)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    name = type(cause).__name__
    return f"{name}: {first_line}" if first_line else name
