"""Bring a database's schema to the newest migration (Alembic, run programmatically)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from stellara.store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Gateways starting together on PostgreSQL take turns migrating (a transaction-scoped lock).
_PG_MIGRATION_LOCK = 0x5354_4C41


async def upgrade(database: Database) -> None:
    """Apply every migration the database lacks; a no-op when it is up to date."""
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade, database.is_sqlite)


def _upgrade(connection: Connection, is_sqlite: bool) -> None:
    if not is_sqlite:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _PG_MIGRATION_LOCK}
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
