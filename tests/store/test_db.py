"""The SQLite connector leaves nothing open behind a connect that does not finish."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from stellara.store import db
from stellara.store.db import Database


async def test_sqlite_connect_cancelled_closes_the_connection_its_worker_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiosqlite's worker opens the connection after its caller gave up; unless the connector
    # closes it, it waits for the garbage collector (Python 3.13 warns: ResourceWarning).
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(real_connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", recording_connect)
    connecting = asyncio.ensure_future(db._sqlite_connector(str(tmp_path / "usage.db"))())
    await asyncio.sleep(0)  # the worker has its connect queued
    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")


async def test_sqlite_connector_connections_serve_queries(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'usage.db'}")
    try:
        async with database.engine.connect() as connection:
            assert (await connection.exec_driver_sql("SELECT 41 + 1")).scalar() == 42
    finally:
        await database.close()
