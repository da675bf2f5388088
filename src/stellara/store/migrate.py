"""Bring a database's schema to the newest migration (Alembic, run programmatically)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from stellara.store.db import Database

logger = logging.getLogger(__name__)
# Alembic narrates every start-up at INFO; `upgrade` logs one line when something changed.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).parent / "migrations"
# Gateways starting together on PostgreSQL take turns migrating (a transaction-scoped lock).
_PG_MIGRATION_LOCK = 0x5354_4C41


async def upgrade(database: Database) -> tuple[str | None, str | None]:
    """Apply every migration the database lacks (a no-op when it is up to date); the schema
    revision before and after (None: an empty database)."""
    async with database.engine.begin() as connection:
        before, after = await connection.run_sync(_upgrade, database.is_sqlite)
    if before != after:
        logger.info("usage store %s: schema %s → %s", database.where, before or "empty", after)
    return before, after


def _upgrade(connection: Connection, is_sqlite: bool) -> tuple[str | None, str | None]:
    if not is_sqlite:
        lock = {"lock": _PG_MIGRATION_LOCK}
        connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), lock)
    before = MigrationContext.configure(connection).get_current_revision()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return before, MigrationContext.configure(connection).get_current_revision()
