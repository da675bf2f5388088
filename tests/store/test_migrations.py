"""The migrations build exactly the schema `store.tables` describes, on both databases."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from stellara.store.db import Database
from stellara.store.migrate import HEAD_REVISION, MIGRATIONS, MigrationError, upgrade
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


def test_head_revision_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


async def test_up_to_date_database_is_checked_without_loading_alembic(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'up-to-date.db'}"
    database = Database(url)
    try:
        assert await upgrade(database) == (None, HEAD_REVISION)
    finally:
        await database.close()
    # A fresh interpreter, as a gateway starting on that database.
    probe = (
        "import asyncio, sys\n"
        "from stellara.store.db import Database\n"
        "from stellara.store.migrate import upgrade\n"
        "async def main():\n"
        f"    db = Database({url!r})\n"
        "    try:\n"
        "        print(await upgrade(db))\n"
        "    finally:\n"
        "        await db.close()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == [f"({HEAD_REVISION!r}, {HEAD_REVISION!r})", "False"]


async def test_unknown_revision_is_a_migration_error(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'from-the-future.db'}")
    try:
        await upgrade(database)
        async with database.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(MigrationError):
            await upgrade(database)
    finally:
        await database.close()
