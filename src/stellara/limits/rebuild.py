"""Rebuild calendar quotas from the usage records after the state backend lost them.

Quota use lives in the state backend (memory or Redis); every model call also leaves a row in
the SQL store, the audit trail. When Redis loses its data (a restart without persistence, a
failover to an empty replica), `rebuild_quotas` sums the rows of the current day and month
and puts that use back, so nobody starts the month over with a fresh budget.

Rebuilt: the daily and monthly quotas of users (`quota:<period>:<dimension>`) and of virtual
keys with quotas of their own (`…@key:<key_id>`, kept in the key's user's scope). A record
counts in the quotas its request was checked against: a request's tier may come from its key,
so records are summed per (user, key) and each sum goes to the quotas of that key's tier.
Not rebuilt: session quotas and sliding rate windows. They span minutes to hours and refill by
themselves, and the records cannot tell which sessions are still open.

Periods begin at local midnight (the 1st for months) in `limits.timezone`, DST included: each
request was counted in the period of its own local date, so that is where the backend's
current period began.

Run it when traffic is low: requests in flight while it runs, and records the usage writer has
not written yet, are missed (the state they were counted in is replaced).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from stellara.config.models import TierConfig
from stellara.limits.policy import DIMENSIONS, UNBOUNDED, LimitsPolicy
from stellara.state.base import Dimension, Limit, LimitStore, PeriodLimit
from stellara.store.keys import KeyRecord, KeyStore
from stellara.store.usage_totals import CallerTotals, PeriodTotals, UsageTotals

Period = Literal["daily", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "monthly")
CALENDAR_NAMES: tuple[str, ...] = tuple(f"quota:{p}:{d}" for p in PERIODS for d in DIMENSIONS)


@dataclass(slots=True)
class UserRebuild:
    """One user's counted records per period, and the use each quota of their scope (their
    keys' own quotas included) holds after the rebuild."""

    daily: PeriodTotals = field(default_factory=PeriodTotals)
    monthly: PeriodTotals = field(default_factory=PeriodTotals)
    quotas: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeyRebuild:
    """A virtual key with quotas of its own: whose scope holds them, and its counted records."""

    user: str
    daily: PeriodTotals
    monthly: PeriodTotals


@dataclass(slots=True)
class RebuildReport:
    """What `rebuild_quotas` did. `blocked` maps users under a burst block (every admission
    refused) to the seconds it still lasts: their quotas were left as they were, so rebuild
    them again after that."""

    now: float
    starts: dict[Period, float]
    users: dict[str, UserRebuild] = field(default_factory=dict)
    keys: dict[str, KeyRebuild] = field(default_factory=dict)
    blocked: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rebuilt_at": _iso(self.now),
            "periods": {
                period: {"start": _iso(start), "start_epoch_s": start}
                for period, start in self.starts.items()
            },
            "users": {user: asdict(rebuilt) for user, rebuilt in self.users.items()},
            "keys": {key_id: asdict(rebuilt) for key_id, rebuilt in self.keys.items()},
            "blocked": self.blocked,
        }


@dataclass(slots=True)
class _Plan:
    """What one scope gets: per (owner, period), each quota and its use. The owner is "" for
    the user's own quotas, else the key id (one admission each: their amounts differ)."""

    uses: dict[tuple[str, str], dict[str, tuple[PeriodLimit, float]]] = field(default_factory=dict)

    def add(self, owner: str, limits: Iterable[Limit], totals: CallerTotals) -> None:
        for limit in limits:
            if not isinstance(limit, PeriodLimit) or limit.period == "session":
                continue
            period_totals = totals.daily if limit.period == "daily" else totals.monthly
            uses = self.uses.setdefault((owner, limit.period), {})
            _, before = uses.get(limit.name, (limit, 0.0))
            uses[limit.name] = (limit, before + _amount(period_totals, limit.dimension))

    def names(self) -> list[str]:
        return [name for uses in self.uses.values() for name in uses]


async def rebuild_quotas(
    policy: LimitsPolicy,
    store: LimitStore,
    totals: UsageTotals,
    keys: KeyStore,
    *,
    now: float,
    users: Sequence[str] | None = None,
) -> RebuildReport:
    """Replace the current periods' quota use in `store` with the sums of the usage records.

    Touches every user with counted records this month (or only `users`, each of them even
    without records: their quotas are then reset to zero). Raises `StoreUnavailableError`
    when the SQL store fails and `StateBackendError` when the state backend does; a failure
    midway leaves the users before it rebuilt, so running it again is always safe.
    """
    starts = {period: period_start(policy, period, now) for period in PERIODS}
    rows = await totals.calendar(
        day_start=starts["daily"],
        month_start=starts["monthly"],
        until=_next_month_start(policy, now),
        users=users,
    )
    by_key: dict[str, list[CallerTotals]] = defaultdict(list)
    for row in rows:
        if row.key_id:
            by_key[row.key_id].append(row)
    records = await _virtual_keys(keys, by_key)
    requested = set(users or ())
    planner = _Planner(policy, now, RebuildReport(now, starts), {u: _Plan() for u in requested})
    for row in rows:
        planner.add_user_row(row, records.get(row.key_id or ""))
    for key_id, record in records.items():
        if users is None or record.user in requested:
            planner.add_key(key_id, record, by_key[key_id])
    for scope, plan in planner.plans.items():
        if plan.uses or scope in requested:  # a user without quotas has nothing to rebuild
            await _apply(store, scope, plan, planner.report)
    return planner.report


@dataclass(slots=True)
class _Planner:
    """Turns summed records into each scope's `_Plan`, and fills the report's sums."""

    policy: LimitsPolicy
    now: float
    report: RebuildReport
    plans: dict[str, _Plan]

    def add_user_row(self, row: CallerTotals, key: KeyRecord | None) -> None:
        """A (user, key) sum, in the user's quotas of the tier the key gave its requests."""
        tier = key.tier if key is not None else None
        resolved = self.policy.resolve(row.user, tier, session_id=None, now=self.now)
        if resolved is not None:
            self.plans.setdefault(row.user, _Plan()).add("", resolved.limits, row)
        rebuilt = self.report.users.setdefault(row.user, UserRebuild())
        rebuilt.daily += row.daily
        rebuilt.monthly += row.monthly

    def add_key(self, key_id: str, record: KeyRecord, rows: Sequence[CallerTotals]) -> None:
        """A key's sums in its own quotas, in its user's scope (as requests count them)."""
        own = _own_quotas(record, self.now)
        if own is None:
            return
        resolved = self.policy.resolve(
            record.user, record.tier, session_id=None, now=self.now, key_id=key_id, key_limits=own
        )
        assert resolved is not None  # a key with quotas of its own is always limited
        # LimitsPolicy.resolve names a key's own limits `<name>@key:<key_id>`.
        limits = [limit for limit in resolved.limits if limit.name.endswith(f"@key:{key_id}")]
        plan = self.plans.setdefault(record.user, _Plan())
        for row in rows:
            plan.add(key_id, limits, row)
        daily = sum((row.daily for row in rows), PeriodTotals())
        monthly = sum((row.monthly for row in rows), PeriodTotals())
        self.report.keys[key_id] = KeyRebuild(record.user, daily, monthly)


def period_start(policy: LimitsPolicy, period: Period, now: float) -> float:
    """When the daily or monthly period holding `now` began: local midnight (of the 1st)."""
    local = datetime.fromtimestamp(now + policy.utc_offset_s(now), UTC)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "monthly":
        midnight = midnight.replace(day=1)
    return _instant(policy, midnight)


def _next_month_start(policy: LimitsPolicy, now: float) -> float:
    local = datetime.fromtimestamp(now + policy.utc_offset_s(now), UTC)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return _instant(policy, datetime(year, month, 1, tzinfo=UTC))


def _instant(policy: LimitsPolicy, wall: datetime) -> float:
    """When the zone's clocks show `wall` (a wall time held as UTC). The offset is the one in
    force then, which may not be now's (DST): two steps find it."""
    naive = wall.timestamp()
    guess = naive - policy.utc_offset_s(naive)
    return naive - policy.utc_offset_s(guess)


async def _virtual_keys(keys: KeyStore, key_ids: Iterable[str]) -> dict[str, KeyRecord]:
    """The stored keys among `key_ids`, revoked ones too (their tier still decided which
    quotas their records counted in). Static keys from the config are not stored."""
    records = {}
    for key_id in key_ids:  # one at a time: a pool of a few connections would queue them
        record = await keys.get(key_id)
        if record is not None:
            records[key_id] = record
    return records


def _own_quotas(record: KeyRecord, now: float) -> TierConfig | None:
    """The key's own limits when they hold a calendar quota and the key can still be used."""
    if not record.limits or not record.is_active(now):
        return None
    try:
        own = TierConfig.model_validate(record.limits)
    except ValidationError:  # the authenticator ignores such limits too
        return None
    quota = own.quota
    if quota is None or (quota.daily is None and quota.monthly is None):
        return None
    return own


async def _apply(store: LimitStore, scope: str, plan: _Plan, report: RebuildReport) -> None:
    """Reset the scope's calendar quotas and record the plan's use in them.

    The use is admitted against unbounded limits (as shadow mode does), so nothing refuses
    it; only a burst block does, which is why the scope is probed first (an admission of no
    limits records nothing): a blocked scope is left alone.
    """
    probe = await store.admit(scope, (), {}, f"rebuild:{scope}:probe")
    if not probe.admitted:
        report.blocked[scope] = probe.retry_after_s
        return
    await store.reset(scope, [*CALENDAR_NAMES, *plan.names()])
    quotas = report.users.setdefault(scope, UserRebuild()).quotas
    for (owner, period), uses in plan.uses.items():
        limits = [replace(limit, limit=UNBOUNDED) for limit, _ in uses.values()]
        amounts: dict[Dimension, float] = {
            limit.dimension: amount for limit, amount in uses.values()
        }
        admission = await store.admit(scope, limits, amounts, f"rebuild:{owner or scope}:{period}")
        if not admission.admitted:  # a block began since the probe
            report.blocked[scope] = admission.retry_after_s
            return
        quotas.update((state.name, state.used) for state in admission.states)


def _amount(totals: PeriodTotals, dimension: Dimension) -> float:
    if dimension == "requests":
        return float(totals.requests)
    if dimension == "tokens":
        return float(totals.tokens)
    return totals.cost_usd


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
