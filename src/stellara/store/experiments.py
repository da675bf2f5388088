"""Experiments in SQL: what every gateway process loads, and what the admin API changes.

The config's experiments are written at start-up (`sync_config`); those made through the admin
API live only here. A row's `status` and `winner` are what runs: the admin API changes them
without a restart, and every process reloads the table every few seconds. A config
experiment's status in the file applies when the file's value changes (the stored definition
keeps the file's last one), so a restart never resumes an experiment stopped through the API,
and editing the file still can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from stellara.config.experiments import ExperimentConfig, ExperimentStatus
from stellara.errors import ConflictError, StoreUnavailableError
from stellara.store.db import Database
from stellara.store.tables import experiments

Source = Literal["config", "api"]


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    """One stored experiment. `config.status` / `config.winner` are the definition's (the
    file's, for config experiments); `status` and `winner` are what runs."""

    config: ExperimentConfig
    status: ExperimentStatus
    winner: str | None
    source: Source
    created_at: float
    updated_at: float


class ExperimentStore:
    """Experiments on one `Database`; a failing database raises `StoreUnavailableError`."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def sync_config(self, configs: Sequence[ExperimentConfig], now: float) -> None:
        """Write the config's experiments: new ones as they are, known ones with the file's
        definition, and the file's status and winner only where the file changed them."""
        stored = {record.config.id: record for record in await self.list()}
        try:
            async with self._db.engine.begin() as connection:
                for config in configs:
                    known = stored.get(config.id)
                    if known is None:
                        await connection.execute(insert(experiments).values(_row(config, now)))
                        continue
                    values: dict[str, Any] = {"definition": _definition(config)}
                    if known.config.status != config.status:
                        values["status"] = config.status
                    if known.config.winner != config.winner:
                        values["winner"] = config.winner
                    if known.config != config or known.source != "config":
                        values.update(source="config", updated_at=now)
                        await connection.execute(
                            update(experiments)
                            .where(experiments.c.id == config.id)
                            .values(**values)
                        )
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def list(self) -> list[ExperimentRecord]:
        """Every experiment, oldest first; rows whose definition no longer validates (a hand
        edit) are left out rather than stop every process from loading the rest."""
        query = select(experiments).order_by(experiments.c.created_at, experiments.c.id)
        try:
            async with self._db.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return [record for row in rows if (record := _record(row)) is not None]

    async def get(self, experiment_id: str) -> ExperimentRecord | None:
        query = select(experiments).where(experiments.c.id == experiment_id)
        try:
            async with self._db.engine.connect() as connection:
                row = (await connection.execute(query)).first()
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return _record(row) if row is not None else None

    async def create(self, config: ExperimentConfig, now: float) -> ExperimentRecord:
        """Store a new experiment made through the admin API; 409 if the id is taken."""
        try:
            async with self._db.engine.begin() as connection:
                await connection.execute(insert(experiments).values(_row(config, now, "api")))
        except IntegrityError as exc:
            raise ConflictError(
                f"An experiment with the id {config.id!r} exists already.", param="id"
            ) from exc
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return ExperimentRecord(config, config.status, config.winner, "api", now, now)

    async def set_status(
        self, experiment_id: str, status: ExperimentStatus, winner: str | None, now: float
    ) -> ExperimentRecord | None:
        """Change what runs; None when no such experiment."""
        try:
            async with self._db.engine.begin() as connection:
                await connection.execute(
                    update(experiments)
                    .where(experiments.c.id == experiment_id)
                    .values(status=status, winner=winner, updated_at=now)
                )
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return await self.get(experiment_id)

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        reason = type(exc.__cause__ or exc).__name__
        return StoreUnavailableError(
            f"The experiment store ({self._db.where}) is unavailable: {reason}."
        )


def _definition(config: ExperimentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_none=True)


def _row(config: ExperimentConfig, now: float, source: Source = "config") -> dict[str, Any]:
    return {
        "id": config.id,
        "definition": _definition(config),
        "status": config.status,
        "winner": config.winner,
        "source": source,
        "created_at": now,
        "updated_at": now,
    }


def _record(row: Row[Any]) -> ExperimentRecord | None:
    mapping = row._mapping
    try:
        config = ExperimentConfig.model_validate(mapping["definition"])
    except ValidationError:
        return None
    return ExperimentRecord(
        config,
        mapping["status"],
        mapping["winner"],
        mapping["source"],
        mapping["created_at"],
        mapping["updated_at"],
    )
