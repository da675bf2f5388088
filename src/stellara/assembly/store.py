"""Bringing the SQL store's schema up to date at start-up.

A gateway starts even when its database is down (requests need no SQL): the schema is then
brought up to date in the background, retrying, while usage records wait in the writer's
buffer. With `usage_store.required: true` the operator chose the other way: start-up waits for
the schema and fails, with one line, when it cannot be had in time.
"""

from __future__ import annotations

import asyncio
import logging

from stellara._tasks import BackgroundTasks
from stellara.errors import StoreUnavailableError
from stellara.store.db import Database
from stellara.store.migrate import upgrade

logger = logging.getLogger(__name__)

MIGRATION_TIMEOUT_S = 15.0
MIGRATION_RETRY_FIRST_S = 0.1  # doubling: gateways racing to create one SQLite schema
MIGRATION_RETRY_MAX_S = 5.0  # settle in a few tries; a database that is down is retried
MIGRATION_STARTUP_WAIT_S = 3.0  # usually quick: the first requests then find the tables


class SchemaMigration:
    """The start-up migration of one gateway's database, as a lifecycle part."""

    def __init__(self, database: Database, *, required: bool, wait_s: float) -> None:
        """`wait_s` is how long start-up waits for the schema (`required`: at most, then fails)."""
        self._database = database
        self._required = required
        self._wait_s = wait_s
        self._background = BackgroundTasks()

    async def start(self) -> None:
        if self._required:
            await self._migrate_required()
            return
        migration = asyncio.ensure_future(self._migrate_until_done())
        try:
            await asyncio.wait_for(asyncio.shield(migration), self._wait_s)
        except TimeoutError:
            self._background.run(_awaited(migration))

    async def stop(self) -> None:
        await self._background.cancel()

    async def _migrate_required(self) -> None:
        try:
            await asyncio.wait_for(upgrade(self._database), self._wait_s)
        except TimeoutError:
            raise StoreUnavailableError(
                f"usage store {self._database.where}: no answer within {self._wait_s:g} s "
                "(usage_store.required is true)"
            ) from None
        except StoreUnavailableError:
            raise
        except Exception as exc:  # a driver's error: the database is unusable
            raise StoreUnavailableError(
                f"usage store {self._database.where}: {_first_line(exc)} "
                "(usage_store.required is true)"
            ) from exc

    async def _migrate_until_done(self) -> None:
        delay_s = MIGRATION_RETRY_FIRST_S
        while True:
            try:
                await asyncio.wait_for(upgrade(self._database), MIGRATION_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure: the database is not ready
                log = logger.error if delay_s >= MIGRATION_RETRY_MAX_S else logger.info
                log(
                    "usage store %s not ready (%s); retrying in %.1f s",
                    self._database.where,
                    _first_line(exc),
                    delay_s,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, MIGRATION_RETRY_MAX_S)
            else:
                return


async def _awaited(migration: asyncio.Future[None]) -> None:
    """Hold a migration that outlived the start-up wait until it ends (or is cancelled)."""
    try:
        await migration
    except asyncio.CancelledError:
        migration.cancel()
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
