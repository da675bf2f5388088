"""The migrations build exactly the schema `store.tables` describes, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from stellara.store.db import Database
from stellara.store.migrate import upgrade
from stellara.store.tables import metadata


async def test_upgrade_builds_the_described_schema_and_is_idempotent(database_url: str) -> None:
    database = Database(database_url)
    try:
        await upgrade(database)
        await upgrade(database)  # a second start finds nothing to do
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            diff = await connection.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata)
            )
    finally:
        await database.close()
    assert {"api_keys", "usage_records", "alembic_version"} <= tables
    assert diff == []
