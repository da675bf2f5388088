"""Fresh databases for the SQL-store tests: the same tests run on SQLite and PostgreSQL.

PostgreSQL is the server in `STELLARA_TEST_POSTGRES_URL` (default: the local one on 5432,
database `test`); each test gets a database of its own, created from it and dropped after.
The tests fail (never skip) when it does not answer: they are the proof that PostgreSQL works.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from stellara.events import RequestEnded
from stellara.store.db import Database
from stellara.store.migrate import upgrade
from stellara.store.tables import usage_records
from stellara.store.usage import usage_row

POSTGRES_URL = os.environ.get(
    "STELLARA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DATABASE_KINDS = ("sqlite", "postgresql")


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def fresh_database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A `usage_store.url` naming an empty database of `kind`, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'stellara-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"stellara_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} does not answer ({exc}); start one "
            '(eval "$(scripts/services)") or set STELLARA_TEST_POSTGRES_URL',
            pytrace=False,
        )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def migrated(url: str) -> AsyncIterator[Database]:
    """The database at `url`, migrated to the newest schema, closed afterwards."""
    database = Database(url)
    await upgrade(database)
    try:
        yield database
    finally:
        await database.close()


async def seed_rows(database: Database, rows: Iterable[dict[str, Any]]) -> None:
    """Store usage records as they are, bypassing the writer."""
    async with database.engine.begin() as connection:
        await connection.execute(insert(usage_records), list(rows))


async def seed(database: Database, *events: RequestEnded) -> None:
    """Store the usage records of `events`, as the writer would (without content)."""
    await seed_rows(database, (usage_row(e, log_content=False) for e in events))
