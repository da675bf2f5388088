"""Usage records summed over the current quota periods: what a quota rebuild reads.

Only records of requests the limits stage admitted count, as only those were counted in the
state backend: a request refused by a rate limit or quota (429, `rate_limit_exceeded` or
`insufficient_quota`), or because the state backend was down (503,
`state_backend_unavailable`, with `on_failure: closed`) reserved nothing. Every other record
counts one request with the tokens and cost it used: a call that failed after admission
(with whatever usage it had), a cache hit (no tokens, no cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from stellara.errors import StoreUnavailableError
from stellara.store.db import Database
from stellara.store.tables import usage_records

# The `error` codes of requests refused before anything was reserved (errors.py's codes).
NOT_ADMITTED = ("rate_limit_exceeded", "insufficient_quota", "state_backend_unavailable")
_t = usage_records.c


@dataclass(frozen=True, slots=True)
class PeriodTotals:
    """Counted requests, their prompt + completion tokens and their cost."""

    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: PeriodTotals) -> PeriodTotals:
        return PeriodTotals(
            self.requests + other.requests,
            self.tokens + other.tokens,
            self.cost_usd + other.cost_usd,
        )


@dataclass(frozen=True, slots=True)
class CallerTotals:
    """One (user, key) pair's counted records since the day's start and since the month's."""

    user: str
    key_id: str | None
    daily: PeriodTotals
    monthly: PeriodTotals


class UsageTotals:
    """Sums over `usage_records`; every database failure raises `StoreUnavailableError`."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def calendar(
        self,
        *,
        day_start: float,
        month_start: float,
        until: float,
        users: Sequence[str] | None = None,
    ) -> list[CallerTotals]:
        """Counted records with `month_start` ≤ started_at < `until` per (user, key), those
        from `day_start` on also summed apart; of `users` only, or of everyone (None).

        Grouped by key as well as by user: a virtual key's own quotas count its records, and
        the key's tier may decide which of its user's quotas a record counted in.
        """
        tokens = _t.prompt_tokens + _t.completion_tokens
        today = _t.started_at >= day_start
        query = (
            select(
                _t.user_id,
                _t.key_id,
                func.sum(case((today, 1), else_=0)),
                func.sum(case((today, tokens), else_=0)),
                func.sum(case((today, _t.cost_usd), else_=0.0)),
                func.count(),
                func.sum(tokens),
                func.sum(_t.cost_usd),
            )
            .where(
                _t.started_at >= month_start,
                _t.started_at < until,
                or_(_t.error_type.is_(None), _t.error_type.not_in(NOT_ADMITTED)),
            )
            .group_by(_t.user_id, _t.key_id)
            .order_by(_t.user_id, _t.key_id)
        )
        if users is not None:
            query = query.where(_t.user_id.in_(users))
        try:
            async with self._db.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            reason = type(exc.__cause__ or exc).__name__
            raise StoreUnavailableError(
                f"The usage store ({self._db.where}) is unavailable: {reason}."
            ) from exc
        return [
            CallerTotals(
                user,
                key_id,
                PeriodTotals(int(d_requests), int(d_tokens), float(d_cost)),
                PeriodTotals(int(m_requests), int(m_tokens), float(m_cost)),
            )
            for user, key_id, d_requests, d_tokens, d_cost, m_requests, m_tokens, m_cost in rows
        ]
