"""Reading usage records back: filtered lists, exports and spend totals for the admin API."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from stellara.errors import StoreUnavailableError
from stellara.store.db import Database
from stellara.store.tables import usage_records

GroupBy = Literal["user", "team", "model", "provider", "key", "endpoint", "day"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)
SECONDS_PER_DAY = 86_400

# The API's names for the columns whose names differ.
_API_NAMES = {"user_id": "user", "error_type": "error"}
RECORD_FIELDS: tuple[str, ...] = tuple(_API_NAMES.get(c.name, c.name) for c in usage_records.c)
_t = usage_records.c


@dataclass(frozen=True, slots=True)
class UsageFilters:
    """Which records: every field set must match; `since` ≤ started_at < `until` (epoch s)."""

    user: str | None = None
    team: str | None = None
    model: str | None = None
    provider: str | None = None
    key_id: str | None = None
    endpoint: str | None = None
    since: float | None = None
    until: float | None = None
    status: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        equal = {
            _t.user_id: self.user,
            _t.team: self.team,
            _t.model: self.model,
            _t.provider: self.provider,
            _t.key_id: self.key_id,
            _t.endpoint: self.endpoint,
            _t.status: self.status,
        }
        out = [column == value for column, value in equal.items() if value is not None]
        if self.since is not None:
            out.append(_t.started_at >= self.since)
        if self.until is not None:
            out.append(_t.started_at < self.until)
        return out


class UsageQuery:
    """Queries on `usage_records`; every database failure raises `StoreUnavailableError`."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def records(
        self, filters: UsageFilters, limit: int, after_id: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to `limit` records with ids above `after_id`, oldest first, and the cursor for
        the next page (None on the last). Keyset pagination: a page costs the same however
        deep it is."""
        query = select(usage_records).where(*filters.conditions()).order_by(_t.id).limit(limit + 1)
        if after_id is not None:
            query = query.where(_t.id > after_id)
        rows = await self._all(query)
        records = [
            {_API_NAMES.get(name, name): value for name, value in row.items()}
            for row in rows[:limit]
        ]
        next_after = records[-1]["id"] if len(rows) > limit else None
        return records, next_after

    async def iter_records(
        self, filters: UsageFilters, chunk: int = 1000
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every matching record, `chunk` at a time, one short query each: an export of
        millions holds no transaction open and at most one chunk in memory."""
        after_id: int | None = None
        while True:
            records, after_id = await self.records(filters, chunk, after_id)
            if records:
                yield records
            if after_id is None:
                return

    async def spend(self, filters: UsageFilters, group_by: GroupBy) -> list[dict[str, Any]]:
        """Requests, tokens, cost and errors (status ≥ 400) per group: by day (UTC) in day
        order, otherwise the costliest group first."""
        group = self._group_column(group_by)
        cost = func.coalesce(func.sum(_t.cost_usd), 0.0)
        query = (
            select(
                group.label("group"),
                func.count().label("requests"),
                func.coalesce(func.sum(_t.prompt_tokens), 0).label("prompt_tokens"),
                func.coalesce(func.sum(_t.completion_tokens), 0).label("completion_tokens"),
                func.coalesce(func.sum(_t.cached_tokens), 0).label("cached_tokens"),
                func.coalesce(func.sum(_t.cache_write_tokens), 0).label("cache_write_tokens"),
                func.coalesce(func.sum(_t.reasoning_tokens), 0).label("reasoning_tokens"),
                cost.label("cost_usd"),
                func.coalesce(func.sum(case((_t.status >= 400, 1), else_=0)), 0).label("errors"),
            )
            .where(*filters.conditions())
            .group_by(group)
        )
        order = (group,) if group_by == "day" else (cost.desc(), group)
        query = query.order_by(*order)
        rows = await self._all(query)
        if group_by == "day":
            for row in rows:
                day = datetime.fromtimestamp(int(row["group"]) * SECONDS_PER_DAY, UTC)
                row["group"] = day.date().isoformat()
        return rows

    def _group_column(self, group_by: GroupBy) -> ColumnElement[Any]:
        if group_by == "day":
            days = _t.started_at / literal_column(str(SECONDS_PER_DAY))
            # SQLite has no floor() without its math extension, and PostgreSQL's integer
            # cast rounds: each its own way to the same UTC day number.
            return cast(days, Integer) if self._db.is_sqlite else func.floor(days)
        columns: dict[str, ColumnElement[Any]] = {
            "user": _t.user_id,
            "team": _t.team,
            "model": _t.model,
            "provider": _t.provider,
            "key": _t.key_id,
            "endpoint": _t.endpoint,
        }
        return columns[group_by]

    async def _all(self, query: Select[Any]) -> list[dict[str, Any]]:
        try:
            async with self._db.engine.connect() as connection:
                result = await connection.execute(query)
                # Column names are `quoted_name`s: plain strings for JSON encoders.
                return [{str(k): v for k, v in row.items()} for row in result.mappings()]
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            reason = type(exc.__cause__ or exc).__name__
            raise StoreUnavailableError(
                f"The usage store ({self._db.where}) is unavailable: {reason}."
            ) from exc
