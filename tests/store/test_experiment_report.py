"""The experiment report's queries on SQLite and PostgreSQL: totals per variant, feedback
joined to its requests (only the requesting user's), and latency percentiles computed the
same way by both databases, from the newest answered requests only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert

from stellara.errors import StoreUnavailableError
from stellara.events import RequestEnded
from stellara.store.db import Database
from stellara.store.experiment_report import (
    ExperimentReportQuery,
    FeedbackSums,
    Percentiles,
    VariantLatency,
    VariantTotals,
)
from stellara.store.tables import feedback
from tests.dbs import seed
from tests.store.test_usage_writer import completed, failed

EXPERIMENT = "cheap-vs-smart"


async def rate(database: Database, *ratings: tuple[str, str, float, str]) -> None:
    """Feedback rows: (request id, metric, value, user)."""
    rows = [
        {"request_id": r, "metric": m, "value": v, "user_id": u, "created_at": 0.0}
        for r, m, v, u in ratings
    ]
    async with database.engine.begin() as connection:
        await connection.execute(insert(feedback), rows)


def percentiles(found: Percentiles) -> tuple[float | None, float | None]:
    return found.p50, found.p95


def served(request_id: str, variant: str, **facts: Any) -> RequestEnded:
    return completed(request_id, experiment=EXPERIMENT, variant=variant, **facts)


async def test_totals_sum_each_variants_counted_requests(database: Database) -> None:
    await seed(
        database,
        served("a1", "control", prompt_tokens=100, completion_tokens=10, cost_usd=0.25),
        served("a2", "control", prompt_tokens=50, completion_tokens=30, cost_usd=0.5),
        failed("a3", experiment=EXPERIMENT, variant="control", status=502, cost_usd=0.0),
        served("b1", "mini", prompt_tokens=7, completion_tokens=3, cost_usd=0.01),
        completed("x1", experiment="other", variant="control", cost_usd=9.0),
        completed("x2", cost_usd=9.0),  # outside any experiment, or pinned
    )
    totals = await ExperimentReportQuery(database).totals(EXPERIMENT)
    assert set(totals) == {"control", "mini"}
    control, mini = totals["control"], totals["mini"]
    assert control == VariantTotals(3, 1, 160, 60, control.cost_usd)
    assert control.cost_usd == pytest.approx(0.75)
    assert mini == VariantTotals(1, 0, 7, 3, mini.cost_usd)
    assert mini.cost_usd == pytest.approx(0.01)


async def test_feedback_counts_only_the_requesting_users_values(database: Database) -> None:
    await seed(
        database,
        served("a1", "control"),
        served("a2", "control"),
        served("b1", "mini"),
        served("b2", "mini", user="bob"),
        completed("x1", experiment="other", variant="control"),
    )
    await rate(
        database,
        ("a1", "thumbs_up", 1.0, "alice"),
        ("a2", "thumbs_up", 0.0, "alice"),
        ("a1", "rating", 4.0, "alice"),
        ("a2", "rating", 2.0, "alice"),
        ("b1", "thumbs_up", 1.0, "alice"),
        ("b2", "thumbs_up", 1.0, "mallory"),  # not bob's own: left out
        ("x1", "thumbs_up", 1.0, "alice"),  # another experiment's request
        ("zz", "thumbs_up", 1.0, "alice"),  # no such request
    )
    sums = await ExperimentReportQuery(database).feedback(EXPERIMENT)
    assert sums == {
        ("control", "thumbs_up"): FeedbackSums(2, 1.0, 1.0),
        ("control", "rating"): FeedbackSums(2, 6.0, 20.0),
        ("mini", "thumbs_up"): FeedbackSums(1, 1.0, 1.0),
    }


async def test_latency_percentiles_interpolate_like_percentile_cont(database: Database) -> None:
    latencies = [float(ms) for ms in range(1, 101)]
    await seed(
        database,
        *(
            served(f"a{i}", "control", latency_ms=ms, ttfb_ms=ms / 10 if i % 2 else None)
            for i, ms in enumerate(latencies)
        ),
        failed("e1", experiment=EXPERIMENT, variant="control", latency_ms=9_999.0),
        served("b1", "mini", latency_ms=5.0),
    )
    query = ExperimentReportQuery(database)
    control = await query.latency(EXPERIMENT, "control")
    ttfbs = [ms / 10 for i, ms in enumerate(latencies) if i % 2]
    assert percentiles(control.latency_ms) == pytest.approx((50.5, 95.05))
    assert percentiles(control.ttfb_ms) == pytest.approx(tuple(np.percentile(ttfbs, [50, 95])))
    mini = await query.latency(EXPERIMENT, "mini")
    assert mini == VariantLatency(Percentiles(5.0, 5.0), Percentiles(None, None))
    nothing = await query.latency(EXPERIMENT, "brief")
    assert nothing == VariantLatency(Percentiles(None, None), Percentiles(None, None))


async def test_latency_reads_only_the_newest_rows(database: Database) -> None:
    # Ten slow old answers, then ten fast new ones: a bound of ten sees only the new.
    await seed(database, *(served(f"old{i}", "control", latency_ms=1000.0) for i in range(10)))
    await seed(database, *(served(f"new{i}", "control", latency_ms=float(i)) for i in range(10)))
    query = ExperimentReportQuery(database)
    newest = await query.latency(EXPERIMENT, "control", rows=10)
    assert percentiles(newest.latency_ms) == pytest.approx((4.5, 8.55))
    every = await query.latency(EXPERIMENT, "control")
    assert every.latency_ms.p95 == pytest.approx(1000.0)


async def test_queries_without_the_schema_raise_store_unavailable(database_url: str) -> None:
    database = Database(database_url)  # never migrated: no tables
    query = ExperimentReportQuery(database)
    try:
        with pytest.raises(StoreUnavailableError) as error:
            await query.totals(EXPERIMENT)
        assert error.value.status_code == 503
        with pytest.raises(StoreUnavailableError):
            await query.feedback(EXPERIMENT)
        with pytest.raises(StoreUnavailableError):
            await query.latency(EXPERIMENT, "control")
    finally:
        await database.close()
