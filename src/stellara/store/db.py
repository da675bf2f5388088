"""One database connection pool per process, made from `usage_store.url`."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stellara.errors import ConfigError

# Statements never wait long: the usage writer retries, and the admin API answers 503.
STATEMENT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0


def async_url(url: str) -> URL:
    """`sqlite:///…` and `postgresql://…` as SQLAlchemy's async drivers need them."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError([f"usage_store.url: unsupported database {parsed.render_as_string()!r}"])


def redacted(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """The engine for one database. Build it anywhere; it connects on first use."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = async_url(url)
        self.where = self.url.render_as_string(hide_password=True)
        self.dialect = self.url.get_backend_name()
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.dialect == "sqlite":
            kwargs["async_creator"] = _sqlite_connector(self.url.database or ":memory:")
        else:
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=CONNECT_TIMEOUT_S,
                connect_args={
                    "timeout": CONNECT_TIMEOUT_S,
                    "command_timeout": STATEMENT_TIMEOUT_S,
                    "server_settings": {"application_name": "stellara"},
                },
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_connector(path: str) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    """aiosqlite connections that leave nothing behind when a connect fails or is cancelled.

    aiosqlite then only asks its worker thread to stop: the thread may still open the
    connection after its caller gave up, and nothing closes that one (Python 3.13 warns of it
    when it is collected); a thread that outlives its event loop fails when it finishes. So the
    connector waits for the thread and closes what it opened. `check_same_thread=False` lets
    that close run here; in use, only the worker thread ever touches the connection.
    """

    async def connect() -> aiosqlite.Connection:
        opened: list[sqlite3.Connection] = []

        def open_in_worker() -> sqlite3.Connection:
            opened.append(
                sqlite3.connect(path, timeout=STATEMENT_TIMEOUT_S, check_same_thread=False)
            )
            return opened[-1]

        connection = aiosqlite.Connection(open_in_worker, iter_chunk_size=64)
        try:
            return await connection
        except BaseException:
            await asyncio.to_thread(_stop_worker, connection, opened)
            raise

    return connect


def _stop_worker(connection: aiosqlite.Connection, opened: list[sqlite3.Connection]) -> None:
    connection._thread.join(STATEMENT_TIMEOUT_S)
    for unused in opened:
        unused.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers (the admin API) work while the writer writes; NORMAL sync is safe
    with WAL and several times faster than FULL."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
