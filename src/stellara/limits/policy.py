"""Which limits apply to a caller: tier resolution, user overrides, and the list of limits.

A user's tier is `limits.users.<user>.tier`, else their key's `tier`, else
`limits.default_tier`. The user's `overrides` are deep-merged onto that tier.
The result is a flat list of `WindowLimit` / `PeriodLimit` for the state backend, named
`rate:<dimension>`, `burst:requests`, `quota:<daily|monthly|session>:<dimension>`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from stellara.config.models import (
    BurstConfig,
    LimitsConfig,
    QuotaAmountsConfig,
    RateLimitConfig,
    TierConfig,
)
from stellara.state.base import Dimension, Limit, PeriodLimit, WindowLimit

DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
# A window that only counts, for spike detection, or a limit evaluated in shadow mode: large
# enough never to refuse, finite so every backend (Lua numbers included) handles it.
UNBOUNDED = 1e15
# The baseline rate of spike detection when the tier sets no `rate` window.
DEFAULT_BASELINE_WINDOW_S = 60.0
BURST_REQUESTS = "burst:requests"
BURST_BASELINE = "burst:baseline"
RATE_PREFIX = "rate:"
QUOTA_PREFIX = "quota:"
RATE_LIMIT_NAMES: tuple[str, ...] = (
    *(f"rate:{d}" for d in DIMENSIONS),
    BURST_REQUESTS,
    BURST_BASELINE,
)
QUOTA_NAMES: tuple[str, ...] = tuple(
    f"quota:{period}:{d}" for period in ("daily", "monthly", "session") for d in DIMENSIONS
)


def is_tracking(limit: Limit) -> bool:
    """Whether `limit` only counts (never refuses, never reported as a limit)."""
    return limit.limit >= UNBOUNDED


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """The limits of one request.

    `limits` carry the configured values (for reports and decisions); `store_limits` are what
    the state backend enforces, the same but unbounded in shadow mode, so that a shadow
    request over a limit is still recorded and the reported use stays true.
    """

    user: str
    tier: str
    limits: tuple[Limit, ...]
    store_limits: tuple[Limit, ...]
    is_shadow: bool
    burst: BurstConfig | None
    needs_estimate: bool  # a token or cost limit applies, so the prompt must be counted

    def tightest(self, dimension: Dimension) -> Limit | None:
        """The configured limit on `dimension` with the smallest whole size (a request larger
        than it can never pass, however long it waits); None when no limit bounds it. A limit
        of 0 is no size but a refusal of the dimension altogether: it is left to the store,
        which refuses as it always does."""
        tightest: Limit | None = None
        for limit in self.limits:  # a loop, not min(): this runs on every limited request
            if limit.dimension != dimension or not 0 < limit.limit < UNBOUNDED:
                continue
            if tightest is None or limit.limit < tightest.limit:
                tightest = limit
        return tightest


class LimitsPolicy:
    """Resolves callers to their limits; built once per app from `limits:`.

    Use `resolve` on the request path (it returns None when nothing limits the caller, so the
    state backend is not called at all) and `limits_for` for status reports.
    """

    def __init__(self, config: LimitsConfig, key_tiers: Mapping[str, str] | None = None) -> None:
        """`key_tiers` maps users to the tier of their configured key, for status reports
        about a user other than the caller."""
        self._config = config
        self._zone = ZoneInfo(config.timezone)
        self._key_tiers = dict(key_tiers or {})
        # (user, tier) → merged tier; only users with overrides get entries, so it is bounded
        # by the config.
        self._merged: dict[tuple[str, str], TierConfig] = {}
        # Built per request, these showed in profiles; both change only with the UTC offset.
        # (tier config's id, offset) → its limits without a session; bounded by the config
        # (each config object is kept alive by `_config` or `_merged`) times the offsets.
        self._tier_limits: dict[tuple[int, int], tuple[Limit, ...]] = {}
        self._offset_minute = -1
        self._offset_s = 0

    @property
    def is_enabled(self) -> bool:
        return bool(self._config.tiers)

    @property
    def warn_at(self) -> float:
        return self._config.warn_at

    @property
    def default_max_tokens_reserve(self) -> int:
        return self._config.default_max_tokens_reserve

    def tier_of(self, user: str, key_tier: str | None = None) -> str:
        """The user's tier name: `limits.users.<user>.tier`, else `key_tier`, else the default."""
        entry = self._config.users.get(user)
        if entry is not None and entry.tier is not None:
            return entry.tier
        return key_tier or self._key_tiers.get(user) or self._config.default_tier

    def tier_config(self, user: str, tier: str) -> TierConfig | None:
        """The tier with the user's overrides merged in; None when the tier is undefined."""
        base = self._config.tiers.get(tier)
        if base is None:
            return None
        entry = self._config.users.get(user)
        if entry is None or entry.overrides is None:
            return base
        merged = self._merged.get((user, tier))
        if merged is None:
            raw = _deep_merge(base.model_dump(), entry.overrides.model_dump(exclude_unset=True))
            merged = self._merged[user, tier] = TierConfig.model_validate(raw)
        return merged

    def resolve(
        self,
        user: str,
        key_tier: str | None,
        *,
        session_id: str | None,
        now: float,
        key_id: str = "",
        key_limits: TierConfig | None = None,
    ) -> EffectivePolicy | None:
        """The limits of a request by `user` at `now`, or None when none apply.

        `key_limits` (a virtual key's own `rate` and `quota`) are checked in addition to the
        user's tier, counted per key: their names end in `@key:<key_id>`.
        """
        if not self._config.tiers and key_limits is None:
            return None
        tier = self.tier_of(user, key_tier)
        config = self.tier_config(user, tier)
        offset_s = self.utc_offset_s(now)
        limits = self._limits_of(config, session_id, offset_s) if config is not None else ()
        if key_limits is not None:
            own = TierConfig(rate=key_limits.rate, quota=key_limits.quota)
            limits += tuple(
                replace(limit, name=f"{limit.name}@key:{key_id}")
                for limit in _limits(own, session_id, offset_s)
            )
        if not limits:
            return None
        shadow = config is not None and config.shadow
        store_limits = (
            tuple(replace(limit, limit=UNBOUNDED) for limit in limits) if shadow else limits
        )
        needs_estimate = any(limit.dimension != "requests" for limit in limits)
        burst = config.burst if config is not None else None
        return EffectivePolicy(user, tier, limits, store_limits, shadow, burst, needs_estimate)

    def _limits_of(
        self, config: TierConfig, session_id: str | None, offset_s: int
    ) -> tuple[Limit, ...]:
        if session_id:  # session limits name the session: not shared between requests
            return tuple(_limits(config, session_id, offset_s))
        key = (id(config), offset_s)
        limits = self._tier_limits.get(key)
        if limits is None:
            limits = self._tier_limits[key] = tuple(_limits(config, None, offset_s))
        return limits

    def utc_offset_s(self, now: float) -> int:
        """The configured zone's offset from UTC at `now` (DST included).

        Computed once a minute: time zones change their offset on whole minutes.
        """
        minute = int(now // 60)
        if minute != self._offset_minute:
            offset = datetime.fromtimestamp(minute * 60, self._zone).utcoffset()
            self._offset_s = int(offset.total_seconds()) if offset is not None else 0
            self._offset_minute = minute
        return self._offset_s


def _limits(config: TierConfig, session_id: str | None, utc_offset_s: int) -> Iterator[Limit]:
    if config.rate is not None:
        yield from _windows("rate", config.rate, config.rate.window_s)
    yield from _burst_windows(config)
    quota = config.quota
    if quota is None:
        return
    calendar: tuple[tuple[Literal["daily", "monthly"], QuotaAmountsConfig | None], ...] = (
        ("daily", quota.daily),
        ("monthly", quota.monthly),
    )
    for period, amounts in calendar:
        for dimension, value in _amounts(amounts):
            name = f"quota:{period}:{dimension}"
            yield PeriodLimit(name, dimension, period, value, utc_offset_s=utc_offset_s)
    if quota.session is not None and session_id:  # no session id: no session to count in
        for dimension, value in _amounts(quota.session):
            yield PeriodLimit(
                f"quota:session:{dimension}",
                dimension,
                "session",
                value,
                session_id=session_id,
                idle_s=quota.session.idle_s,
            )


def _burst_windows(config: TierConfig) -> Iterator[WindowLimit]:
    burst = config.burst
    if burst is None:
        return
    if burst.requests is not None:
        yield WindowLimit(BURST_REQUESTS, "requests", burst.window_s, burst.requests)
    elif burst.spike_factor is not None:
        yield WindowLimit(BURST_REQUESTS, "requests", burst.window_s, UNBOUNDED)
    has_rate_requests = config.rate is not None and config.rate.requests is not None
    if burst.spike_factor is not None and not has_rate_requests:
        # Spike detection compares with the user's rate over the rate window, so count it.
        window_s = config.rate.window_s if config.rate else DEFAULT_BASELINE_WINDOW_S
        yield WindowLimit(BURST_BASELINE, "requests", window_s, UNBOUNDED)


def _windows(prefix: str, rate: RateLimitConfig, window_s: float) -> Iterator[WindowLimit]:
    for dimension, value in _amounts(rate):
        yield WindowLimit(f"{prefix}:{dimension}", dimension, window_s, value)


def _amounts(
    config: RateLimitConfig | QuotaAmountsConfig | None,
) -> Iterator[tuple[Dimension, float]]:
    if config is None:
        return
    for dimension in DIMENSIONS:
        value = getattr(config, dimension)
        if value is not None:
            yield dimension, float(value)


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` onto `base`, mapping by mapping; any other value (None too) replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged
