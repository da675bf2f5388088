"""Feedback in SQL: what clients report on answers, one value per request and metric.

A feedback row names its request; the request's usage record says whose it was and which
experiment variant served it. A later report of the same metric on the same request replaces
the earlier one (a user changing a thumbs-up to a thumbs-down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from stellara.errors import StoreUnavailableError
from stellara.store.db import Database
from stellara.store.tables import feedback, usage_records


@dataclass(frozen=True, slots=True)
class RatedRequest:
    """What feedback needs of the request it rates (its usage record)."""

    request_id: str
    user: str
    experiment: str | None
    variant: str | None
    cost_usd: float
    model: str
    provider: str | None
    provider_model: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RatedRequest:
        """From a usage record's columns (a stored row or one still waiting to be written)."""
        return cls(
            row["request_id"],
            row["user_id"],
            row["experiment"],
            row["variant"],
            row["cost_usd"],
            row["model"],
            row["provider"],
            row["provider_model"],
        )


@dataclass(frozen=True, slots=True)
class FeedbackValue:
    request_id: str
    metric: str
    value: float
    user: str
    key_id: str | None
    at: float  # epoch s


class FeedbackStore:
    """Feedback on one `Database`; a failing database raises `StoreUnavailableError`."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert = sqlite.insert if database.is_sqlite else postgresql.insert

    async def rated_request(self, request_id: str) -> RatedRequest | None:
        """The stored usage record of `request_id`, or None."""
        columns = [
            usage_records.c[name]
            for name in (
                "request_id",
                "user_id",
                "experiment",
                "variant",
                "cost_usd",
                "model",
                "provider",
                "provider_model",
            )
        ]
        query = select(*columns).where(usage_records.c.request_id == request_id)
        try:
            async with self._db.engine.connect() as connection:
                row = (await connection.execute(query)).first()
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return RatedRequest.from_row(dict(row._mapping)) if row is not None else None

    async def put(self, value: FeedbackValue) -> bool:
        """Store `value`, replacing an earlier one of the same request and metric; True when
        it is the first of its request and metric."""
        row = {
            "request_id": value.request_id,
            "metric": value.metric,
            "value": value.value,
            "user_id": value.user,
            "key_id": value.key_id,
            "created_at": value.at,
        }
        statement = self._insert(feedback).values(row)
        upsert = statement.on_conflict_do_update(
            index_elements=["request_id", "metric"],
            set_={"value": statement.excluded.value, "created_at": statement.excluded.created_at},
        )
        earlier = select(feedback.c.id).where(
            feedback.c.request_id == value.request_id, feedback.c.metric == value.metric
        )
        try:
            async with self._db.engine.begin() as connection:
                is_first = (await connection.execute(earlier)).first() is None
                await connection.execute(upsert)
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return is_first

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        reason = type(exc.__cause__ or exc).__name__
        return StoreUnavailableError(
            f"The feedback store ({self._db.where}) is unavailable: {reason}."
        )
