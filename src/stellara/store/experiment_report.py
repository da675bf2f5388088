"""What an experiment's report is computed from: SQL aggregates of its usage records and of
the feedback on them, per variant, on SQLite and PostgreSQL alike.

Only counted requests carry an experiment (a pinned variant's do not), so every record with
`experiment = id` counts. Feedback counts when the user who gave it made the request (the
feedback route refuses any other, and the join holds that for rows written some other way).

Latency percentiles read the newest `PERCENTILE_ROWS` answered requests (status < 400) of each
variant: a report stays as cheap after a year of traffic as after a day. PostgreSQL computes
them (`percentile_cont`); SQLite has no such aggregate, so the rows come back and numpy's
linear interpolation, the same definition, computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from stellara.errors import StoreUnavailableError
from stellara.store.db import Database
from stellara.store.tables import feedback, usage_records

PERCENTILE_ROWS = 100_000
"""Answered requests per variant that latency percentiles are computed from (the newest)."""

_t = usage_records.c
_f = feedback.c


@dataclass(frozen=True, slots=True)
class VariantTotals:
    """One variant's requests (errors: status ≥ 400), tokens and cost, summed."""

    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class FeedbackSums:
    """One variant's values of one feedback metric, as running sums."""

    n: int
    total: float
    total_sq: float


@dataclass(frozen=True, slots=True)
class Percentiles:
    """The median and 95th percentile of a duration in milliseconds; None without values."""

    p50: float | None
    p95: float | None


@dataclass(frozen=True, slots=True)
class VariantLatency:
    """Latency (request to answer) and time to first byte of a variant's answered requests."""

    latency_ms: Percentiles
    ttfb_ms: Percentiles


_NO_VALUES = Percentiles(None, None)


class ExperimentReportQuery:
    """The report's queries; a failing database raises `StoreUnavailableError`."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def totals(self, experiment_id: str) -> dict[str, VariantTotals]:
        """Per variant that served a counted request."""
        query = (
            select(
                _t.variant,
                func.count().label("requests"),
                func.sum(case((_t.status >= 400, 1), else_=0)).label("errors"),
                func.sum(_t.prompt_tokens).label("prompt_tokens"),
                func.sum(_t.completion_tokens).label("completion_tokens"),
                func.sum(_t.cost_usd).label("cost_usd"),
            )
            .where(_t.experiment == experiment_id)
            .group_by(_t.variant)
        )
        return {
            row["variant"]: VariantTotals(
                requests=int(row["requests"]),
                errors=int(row["errors"]),
                prompt_tokens=int(row["prompt_tokens"]),
                completion_tokens=int(row["completion_tokens"]),
                cost_usd=float(row["cost_usd"]),
            )
            for row in await self._all(query)
        }

    async def feedback(self, experiment_id: str) -> dict[tuple[str, str], FeedbackSums]:
        """Per (variant, metric): the feedback its requests' own users gave."""
        value = _f.value
        query = (
            select(
                _t.variant,
                _f.metric,
                func.count(value).label("n"),
                func.sum(value).label("total"),
                func.sum(value * value).label("total_sq"),
            )
            .select_from(
                usage_records.join(
                    feedback, and_(_f.request_id == _t.request_id, _f.user_id == _t.user_id)
                )
            )
            .where(_t.experiment == experiment_id)
            .group_by(_t.variant, _f.metric)
        )
        return {
            (row["variant"], row["metric"]): FeedbackSums(
                int(row["n"]), float(row["total"]), float(row["total_sq"])
            )
            for row in await self._all(query)
        }

    async def latency(
        self, experiment_id: str, variant: str, rows: int = PERCENTILE_ROWS
    ) -> VariantLatency:
        """Percentiles of the newest `rows` answered requests of `variant`."""
        newest = (
            select(_t.latency_ms, _t.ttfb_ms)
            .where(_t.experiment == experiment_id, _t.variant == variant, _t.status < 400)
            .order_by(_t.id.desc())
            .limit(rows)
            .subquery()
        )
        if self._db.is_sqlite:
            found = await self._all(select(newest.c.latency_ms, newest.c.ttfb_ms))
            return VariantLatency(
                _percentiles([row["latency_ms"] for row in found]),
                _percentiles([row["ttfb_ms"] for row in found if row["ttfb_ms"] is not None]),
            )
        exact = [
            func.percentile_cont(share).within_group(column).label(f"{column.name}_{label}")
            for column in (newest.c.latency_ms, newest.c.ttfb_ms)
            for share, label in ((0.5, "p50"), (0.95, "p95"))
        ]
        [row] = await self._all(select(*exact))
        return VariantLatency(
            Percentiles(_float(row["latency_ms_p50"]), _float(row["latency_ms_p95"])),
            Percentiles(_float(row["ttfb_ms_p50"]), _float(row["ttfb_ms_p95"])),
        )

    async def _all(self, query: Select[Any]) -> list[dict[str, Any]]:
        try:
            async with self._db.engine.connect() as connection:
                result = await connection.execute(query)
                return [dict(row) for row in result.mappings()]
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            reason = type(exc.__cause__ or exc).__name__
            raise StoreUnavailableError(
                f"The usage store ({self._db.where}) is unavailable: {reason}."
            ) from exc


def _percentiles(values: Sequence[float]) -> Percentiles:
    """`percentile_cont`'s definition: linear interpolation between the closest ranks."""
    if not values:
        return _NO_VALUES
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50.0, 95.0])
    return Percentiles(float(p50), float(p95))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
