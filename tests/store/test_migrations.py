"""The migrations build exactly the schema `store.tables` describes, on both databases."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

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


def _migrate(connection: Connection, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, step)(config, revision)


def _usage_columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("usage_records")}


async def test_upgrade_keeps_existing_usage_records_as_reported_by_their_provider(
    database_url: str,
) -> None:
    """0002 adds `usage_estimated` to a store that already holds records: they were all
    the providers' numbers; and it can be taken back."""
    database = Database(database_url)
    row = (
        "INSERT INTO usage_records (request_id, started_at, user_id, model, attempts, cache, "
        "stream, prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms, status) "
        "VALUES ('old', 0, 'alice', 'smart', 1, 'miss', false, 10, 20, 0, 0.001, 5, 200)"
    )
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_migrate, "upgrade", "0001")
            await connection.execute(text(row))
        assert await upgrade(database) == ("0001", HEAD_REVISION)
        async with database.engine.begin() as connection:
            flags = await connection.execute(text("SELECT usage_estimated FROM usage_records"))
            assert [bool(flag) for (flag,) in flags] == [False]
            await connection.run_sync(_migrate, "downgrade", "0001")
            assert "usage_estimated" not in await connection.run_sync(_usage_columns)
    finally:
        await database.close()


async def test_upgrade_leaves_the_endpoint_of_existing_usage_records_unknown(
    database_url: str,
) -> None:
    """0003 adds `endpoint` to a store that already holds records: nothing recorded which
    API they came through, so they keep NULL; and it can be taken back."""
    database = Database(database_url)
    row = (
        "INSERT INTO usage_records (request_id, started_at, user_id, model, attempts, cache, "
        "stream, prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms, status) "
        "VALUES ('old', 0, 'alice', 'smart', 1, 'miss', false, 10, 20, 0, 0.001, 5, 200)"
    )
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_migrate, "upgrade", "0002")
            await connection.execute(text(row))
        assert await upgrade(database) == ("0002", HEAD_REVISION)
        async with database.engine.begin() as connection:
            endpoints = await connection.execute(text("SELECT endpoint FROM usage_records"))
            assert list(endpoints) == [(None,)]
            await connection.run_sync(_migrate, "downgrade", "0002")
            assert "endpoint" not in await connection.run_sync(_usage_columns)
            kept = await connection.execute(text("SELECT request_id FROM usage_records"))
            assert list(kept) == [("old",)]
    finally:
        await database.close()


async def test_upgrade_leaves_cache_writes_and_reasoning_of_existing_records_unknown(
    database_url: str,
) -> None:
    """0004 adds `cache_write_tokens` and `reasoning_tokens`: older records never counted
    them, so they keep NULL (and spend sums them as 0); and it can be taken back."""
    database = Database(database_url)
    row = (
        "INSERT INTO usage_records (request_id, started_at, user_id, model, attempts, cache, "
        "stream, prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms, status) "
        "VALUES ('old', 0, 'alice', 'smart', 1, 'miss', false, 10, 20, 0, 0.001, 5, 200)"
    )
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_migrate, "upgrade", "0003")
            await connection.execute(text(row))
        assert await upgrade(database) == ("0003", HEAD_REVISION)
        async with database.engine.begin() as connection:
            counts = await connection.execute(
                text("SELECT cache_write_tokens, reasoning_tokens FROM usage_records")
            )
            assert list(counts) == [(None, None)]
            await connection.run_sync(_migrate, "downgrade", "0003")
            columns = await connection.run_sync(_usage_columns)
            assert not {"cache_write_tokens", "reasoning_tokens"} & columns
            kept = await connection.execute(text("SELECT request_id FROM usage_records"))
            assert list(kept) == [("old",)]
    finally:
        await database.close()


async def test_upgrade_to_experiments_leaves_old_records_and_keys_outside_them(
    database_url: str,
) -> None:
    """0005 adds the experiment and variant of each record (NULL for older ones), the keys'
    permission to pin variants (false for older ones), and the experiments and feedback
    tables; and it can be taken back."""
    database = Database(database_url)
    record = (
        "INSERT INTO usage_records (request_id, started_at, user_id, model, attempts, cache, "
        "stream, prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms, status) "
        "VALUES ('old', 0, 'alice', 'smart', 1, 'miss', false, 10, 20, 0, 0.001, 5, 200)"
    )
    key = (
        "INSERT INTO api_keys (key_id, digest, prefix, user_id, created_at) "
        "VALUES ('key_old', 'd', 'sk-stl-old', 'alice', 0)"
    )
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_migrate, "upgrade", "0004")
            await connection.execute(text(record))
            await connection.execute(text(key))
        assert await upgrade(database) == ("0004", HEAD_REVISION)
        async with database.engine.begin() as connection:
            rows = await connection.execute(text("SELECT experiment, variant FROM usage_records"))
            assert list(rows) == [(None, None)]
            keys = await connection.execute(text("SELECT may_pin_variants FROM api_keys"))
            assert [bool(value) for (value,) in keys] == [False]
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert {"experiments", "feedback"} <= tables
            await connection.run_sync(_migrate, "downgrade", "0004")
            assert not {"experiment", "variant"} & await connection.run_sync(_usage_columns)
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert not {"experiments", "feedback"} & tables
            kept = await connection.execute(text("SELECT request_id FROM usage_records"))
            assert list(kept) == [("old",)]
    finally:
        await database.close()


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
