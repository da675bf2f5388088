"""Monitoring statistics for the whole deployment: this process's counts merged with the
live snapshots of every other process sharing the state backend, and resets that reach them all.

The bodies (`summary_body`, `detailed_body`) are what `GET /ai-orchestration/stats` and
`GET /ai-orchestration/monitoring/stats` answer; the module docstring of
`stellara.server.routes.monitoring` shows their shapes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from stellara.errors import StateBackendError
from stellara.state.base import Epoch, StatsShare
from stellara.telemetry.stats import (
    SERIES_BUCKETS,
    SERIES_STEP_S,
    Histogram,
    Stats,
    StatsCollector,
)

logger = logging.getLogger(__name__)

TOP_USERS = 10
_SUMMARY_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_DETAILED_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


class MonitoringService:
    """This process's statistics merged with the live snapshots of the others (`shared`),
    and resets that reach every process.

    Args:
        collector: this process's counters.
        shared: the snapshots of every process on the state backend; None: this
            process alone.
        write_interval_s: how often this process's snapshot is written to `shared`.
    """

    def __init__(
        self,
        collector: StatsCollector,
        shared: StatsShare | None = None,
        *,
        write_interval_s: float = 2.0,
    ) -> None:
        self._collector = collector
        self._shared = shared
        self._write_interval_s = write_interval_s
        self._writer: asyncio.Task[None] | None = None
        self._is_write_failing = False
        if shared is not None:
            shared.on_reset(self._follow)

    @property
    def shared(self) -> StatsShare | None:
        """Where this process shares its stats; None when this process is alone."""
        return self._shared

    async def start(self) -> None:
        """Join the deployment's current epoch, listen for resets and start writing this
        process's snapshot (nothing to do without `shared`)."""
        shared = self._shared
        if shared is None or self._writer is not None:
            return
        try:
            epoch = await shared.current_epoch()
        except StateBackendError as exc:
            logger.warning("statistics epoch unknown (the first write will tell): %s", exc)
        else:
            if epoch is not None:  # it began before this process: nothing of ours to clear
                self._collector.adopt(epoch.id)
        if not await shared.start():
            logger.warning("statistics resets of other processes unheard yet; still trying")
        self._writer = asyncio.create_task(self._write_periodically(), name="stellara-stats")

    async def close(self) -> None:
        """Stop writing and withdraw this process's snapshot."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._shared is not None:
            try:
                await self._shared.remove()
            except StateBackendError as exc:
                logger.info("statistics snapshot left to expire: %s", exc)

    async def summary(self) -> dict[str, Any]:
        """The summary body (see the module docstring)."""
        stats, processes = await self._merged()
        return summary_body(stats, processes)

    async def detailed(self) -> dict[str, Any]:
        """The detailed body (see the module docstring)."""
        stats, processes = await self._merged()
        return detailed_body(stats, processes)

    async def reset(self) -> float:
        """Start every process's counts again; returns the reset's time. Raises
        `StateBackendError` when the shared snapshots could not be reset (nothing was)."""
        epoch_id = uuid.uuid4().hex
        if self._shared is None:
            self._collector.reset(epoch=epoch_id)
            return self._collector.since
        epoch = await self._shared.reset(epoch_id)
        self._collector.reset(since=epoch.at, epoch=epoch.id)
        await self._shared.announce(epoch)
        return epoch.at

    async def _merged(self) -> tuple[Stats, int]:
        """Every live process's stats added up, and how many processes that is."""
        others: list[dict[str, Any]] = []
        if self._shared is not None:
            try:
                epoch, others = await self._shared.read()
            except StateBackendError as exc:
                logger.warning("statistics of other processes unavailable: %s", exc)
            else:
                self._follow(epoch)
        own = self._collector.snapshot()
        return Stats.from_snapshots([own, *others]), 1 + len(others)

    def _follow(self, epoch: Epoch | None) -> None:
        """Start again when another process reset the statistics."""
        if epoch is not None and epoch.id != self._collector.epoch:
            self._collector.reset(since=epoch.at, epoch=epoch.id)

    async def _write_periodically(self) -> None:
        while True:
            try:
                await self._write()
            except Exception:  # a background runner outlives a bug
                logger.exception("statistics snapshot not written")
            await asyncio.sleep(self._write_interval_s)

    async def _write(self) -> None:
        assert self._shared is not None  # only started with one
        snapshot = self._collector.snapshot()
        try:
            epoch = await self._shared.write(snapshot["epoch"], snapshot)
        except StateBackendError as exc:
            if not self._is_write_failing:
                self._is_write_failing = True
                logger.warning("statistics snapshot not shared, retrying: %s", exc)
            return
        if self._is_write_failing:
            self._is_write_failing = False
            logger.warning("statistics snapshot shared again")
        self._follow(epoch)


def summary_body(stats: Stats, processes: int) -> dict[str, Any]:
    """The summary of `stats` (see the module docstring)."""
    cache_hits = stats.cache_hits + stats.semantic_hits
    return {
        "since": stats.since,
        "processes": processes,
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": _rate(stats.errors, stats.requests),
        "cache_hits": cache_hits,
        "cache_hit_rate": _rate(cache_hits, stats.requests),
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "cost_usd": _usd(stats.cost_usd),
        "by_provider": {
            pid: {
                "requests": p.requests,
                "errors": p.errors,
                "error_rate": _rate(p.errors, p.requests),
                "prompt_tokens": p.prompt_tokens,
                "completion_tokens": p.completion_tokens,
                "cost_usd": _usd(p.cost_usd),
                "latency_ms": _latency(p.latency, _SUMMARY_QUANTILES),
            }
            for pid, p in sorted(stats.providers.items())
        },
    }


def detailed_body(stats: Stats, processes: int) -> dict[str, Any]:
    """The details of `stats` (see the module docstring)."""
    providers = {
        pid: {
            "requests": p.requests,
            "errors": p.errors,
            "errors_by_type": dict(sorted(p.errors_by_type.items())),
            "latency_ms": _latency(p.latency, _DETAILED_QUANTILES, with_max=True),
            "ttfb_ms": _latency(p.ttfb, _DETAILED_QUANTILES, with_max=True),
            "models": {
                model: {
                    "requests": t.requests,
                    "errors": t.errors,
                    "cost_usd": _usd(t.cost_usd),
                    "latency_ms": _latency(t.latency, _SUMMARY_QUANTILES),
                }
                for model, t in sorted(p.models.items())
            },
        }
        for pid, p in sorted(stats.providers.items())
    }
    models = {
        name: {
            "requests": m.requests,
            "errors": m.errors,
            "fallbacks": m.fallbacks,
            "cost_usd": _usd(m.cost_usd),
        }
        for name, m in sorted(stats.models.items())
    }
    top_users = [
        {
            "user": name,
            "requests": u.requests,
            "cost_usd": _usd(u.cost_usd),
            "rejections": u.rejections,
        }
        for name, u in stats.top_users(TOP_USERS)
    ]
    history = [
        {"at": c.at, "breaker": c.breaker, "from": c.from_state, "to": c.to_state}
        for c in stats.breakers
    ]
    return {
        "since": stats.since,
        "processes": processes,
        "providers": providers,
        "models": models,
        "retries": stats.retries,
        "fallbacks": stats.fallbacks,
        "cache": {
            "hits": stats.cache_hits,
            "semantic_hits": stats.semantic_hits,
            "misses": stats.cache_misses,
        },
        "breakers": {"history": history},
        "limits": {"rejections": dict(stats.rejections), "top_users": top_users},
        "series": _series(stats),
    }


def _series(stats: Stats) -> list[dict[str, Any]]:
    """Every 10-second step of the last 10 minutes up to `stats.at`, empty ones included."""
    buckets = {bucket.at: bucket for bucket in stats.series}
    last = int(stats.at) // SERIES_STEP_S * SERIES_STEP_S
    first = last - (SERIES_BUCKETS - 1) * SERIES_STEP_S
    series = []
    for at in range(first, last + 1, SERIES_STEP_S):
        bucket = buckets.get(at)
        if bucket is None:
            series.append(
                {
                    "at": at,
                    "requests": 0,
                    "errors": 0,
                    "cost_usd": 0.0,
                    "latency_ms_p50": None,
                    "latency_ms_p95": None,
                }
            )
            continue
        p50, p95 = (_ms(v) for v in bucket.latency.percentiles(0.5, 0.95))
        series.append(
            {
                "at": at,
                "requests": bucket.requests,
                "errors": bucket.errors,
                "cost_usd": _usd(bucket.cost_usd),
                "latency_ms_p50": p50,
                "latency_ms_p95": p95,
            }
        )
    return series


def _latency(
    histogram: Histogram, quantiles: dict[str, float], *, with_max: bool = False
) -> dict[str, float | None]:
    values = histogram.percentiles(*quantiles.values())
    out = {name: _ms(value) for name, value in zip(quantiles, values, strict=True)}
    if with_max:
        out["max"] = _ms(histogram.max_ms) if histogram.counts else None
    return out


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _usd(value: float) -> float:
    return round(value, 10)  # float sums show noise past this (0.30000000000000004)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
