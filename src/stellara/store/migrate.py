"""Bring a database's schema to the newest migration (Alembic, run programmatically).

Alembic (with Mako and Pygments) is imported only when a migration is due: a gateway whose
database is up to date, the usual start, checks the revision with one query and spares the
memory and start-up time.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from stellara.store.db import Database

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD_REVISION = "0005"
"""The newest migration's revision; a test keeps it equal to the scripts' head."""
# Gateways starting together on PostgreSQL take turns migrating (a transaction-scoped lock).
_PG_MIGRATION_LOCK = 0x5354_4C41


class MigrationError(Exception):
    """Alembic could not bring the schema up to date (e.g. a revision it does not know)."""


async def upgrade(database: Database) -> tuple[str | None, str | None]:
    """Apply every migration the database lacks (a no-op when it is up to date); the schema
    revision before and after (None: an empty database). Raises `MigrationError` when Alembic
    fails, SQLAlchemy's errors when the database does."""
    async with database.engine.begin() as connection:
        before, after = await connection.run_sync(_upgrade, database.is_sqlite)
    if before != after:
        logger.info("usage store %s: schema %s → %s", database.where, before or "empty", after)
    return before, after


def _current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(connection: Connection, is_sqlite: bool) -> tuple[str | None, str | None]:
    if not is_sqlite:
        lock = {"lock": _PG_MIGRATION_LOCK}
        connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), lock)
    before = _current_revision(connection)
    if before == HEAD_REVISION:
        return before, before
    # Alembic narrates its import and every migration at INFO; `upgrade` logs one line when
    # something changed.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise MigrationError(str(exc)) from exc
    return before, _current_revision(connection)
