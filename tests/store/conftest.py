"""The SQL-store tests' database: migrated, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stellara.store.db import Database
from tests.dbs import migrated


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with migrated(database_url) as database:
        yield database
