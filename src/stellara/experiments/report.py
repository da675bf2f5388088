"""An experiment's report: per variant what it served, what it cost, and how its users rated
it, each feedback metric compared with the control by an always-valid interval (`stats`).

Shares are percentages: the current allocation (adaptive allocation's latest) when this
process runs the experiment, else the configured one. Tokens and cost are per request, so
variants that served different numbers of requests compare directly. Latency and time to first
byte are of answered requests (status < 400), from the newest `PERCENTILE_ROWS` of each
variant; errors count in `error_rate` instead. Every configured feedback metric is shown for
every variant, with `n = 0` where it has none; `vs_control` is empty on the control itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from stellara.config.experiments import (
    ExperimentStatus,
    FeedbackMetricConfig,
)
from stellara.experiments.live import LiveExperiment
from stellara.experiments.stats import Sample, Verdict, compare, mean_interval
from stellara.store.experiment_report import (
    PERCENTILE_ROWS,
    ExperimentReportQuery,
    FeedbackSums,
    Percentiles,
    VariantLatency,
    VariantTotals,
)
from stellara.store.experiments import ExperimentRecord

_NO_SUMS = FeedbackSums(0, 0.0, 0.0)
_NO_TOTALS = VariantTotals(0, 0, 0, 0, 0.0)


class Durations(msgspec.Struct, frozen=True):
    """Median and 95th percentile in milliseconds; null without answered requests."""

    p50: float | None
    p95: float | None


class TokensPerRequest(msgspec.Struct, frozen=True):
    prompt: float | None
    completion: float | None


class MetricEstimate(msgspec.Struct, frozen=True):
    """A feedback metric's mean over `n` values and its always-valid 95 % interval (null
    below two values)."""

    n: int
    mean: float | None
    ci95: tuple[float, float] | None


class ControlDifference(msgspec.Struct, frozen=True):
    """This variant's mean minus the control's, its always-valid 95 % interval, and the
    verdict: `better` / `worse` once the interval excludes 0 (read through the metric's
    `higher_is_better`) with at least 30 values on each side."""

    diff: float | None
    ci95: tuple[float, float] | None
    verdict: Verdict


class VariantReport(msgspec.Struct, frozen=True):
    name: str
    share: float  # percent
    requests: int
    errors: int
    error_rate: float | None
    latency_ms: Durations
    ttfb_ms: Durations
    tokens: TokensPerRequest
    cost_usd: float
    cost_usd_per_request: float | None
    metrics: dict[str, MetricEstimate]
    vs_control: dict[str, ControlDifference]


class ExperimentReport(msgspec.Struct, frozen=True):
    """`percentile_rows`: how many of each variant's newest answered requests the latency
    percentiles read."""

    experiment: str
    model: str
    status: ExperimentStatus
    winner: str | None
    control: str
    allocation: Literal["fixed", "adaptive"]
    metric: str | None
    percentile_rows: int
    variants: list[VariantReport]


async def experiment_report(
    record: ExperimentRecord,
    live: LiveExperiment | None,
    metrics: Mapping[str, FeedbackMetricConfig],
    query: ExperimentReportQuery,
    *,
    with_latency: bool = True,
) -> ExperimentReport:
    """`record`'s report from its stored records and feedback. `live` is the experiment as
    this process runs it (its current shares), None when not loaded. Without `with_latency`
    the percentiles are left null, which saves a query per variant (the dashboard's summary)."""
    experiment_id = record.config.id
    totals = await query.totals(experiment_id)
    sums = await query.feedback(experiment_id)
    latency: dict[str, VariantLatency] = {}
    if with_latency:
        for variant in record.config.variants:
            latency[variant.name] = await query.latency(experiment_id, variant.name)
    return build_report(
        record,
        shares=current_shares(record, live),
        metrics=metrics,
        totals=totals,
        sums=sums,
        latency=latency,
    )


def current_shares(record: ExperimentRecord, live: LiveExperiment | None) -> dict[str, float]:
    """Each variant's share in percent: `live`'s allocation, else the configured shares."""
    if live is not None:
        return {name: round(share * 100.0, 4) for name, share in live.shares.items()}
    return {v.name: v.share for v in record.config.variants}


def build_report(
    record: ExperimentRecord,
    *,
    shares: Mapping[str, float],
    metrics: Mapping[str, FeedbackMetricConfig],
    totals: Mapping[str, VariantTotals],
    sums: Mapping[tuple[str, str], FeedbackSums],
    latency: Mapping[str, VariantLatency],
) -> ExperimentReport:
    """The report of what the queries found (see the module docstring)."""
    config = record.config
    control = config.control_name

    def sample(variant: str, metric: str) -> Sample:
        found = sums.get((variant, metric), _NO_SUMS)
        return Sample(found.n, found.total, found.total_sq)

    variants = []
    for variant in config.variants:
        name = variant.name
        estimates = {
            metric: _estimate(sample(name, metric), spec) for metric, spec in metrics.items()
        }
        differences = {}
        if name != control:
            differences = {
                metric: _difference(sample(name, metric), sample(control, metric), spec)
                for metric, spec in metrics.items()
            }
        variants.append(
            _variant(
                name,
                shares.get(name, 0.0),
                totals.get(name, _NO_TOTALS),
                latency.get(name),
                estimates,
                differences,
            )
        )
    return ExperimentReport(
        experiment=config.id,
        model=config.model,
        status=record.status,
        winner=record.winner,
        control=control,
        allocation=config.allocation,
        metric=config.metric,
        percentile_rows=PERCENTILE_ROWS,
        variants=variants,
    )


def _variant(
    name: str,
    share: float,
    totals: VariantTotals,
    latency: VariantLatency | None,
    metrics: dict[str, MetricEstimate],
    vs_control: dict[str, ControlDifference],
) -> VariantReport:
    requests = totals.requests

    def per_request(value: float) -> float | None:
        return value / requests if requests else None

    return VariantReport(
        name=name,
        share=share,
        requests=requests,
        errors=totals.errors,
        error_rate=per_request(totals.errors),
        latency_ms=_durations(latency.latency_ms if latency else None),
        ttfb_ms=_durations(latency.ttfb_ms if latency else None),
        tokens=TokensPerRequest(
            per_request(totals.prompt_tokens), per_request(totals.completion_tokens)
        ),
        cost_usd=totals.cost_usd,
        cost_usd_per_request=per_request(totals.cost_usd),
        metrics=metrics,
        vs_control=vs_control,
    )


def _durations(percentiles: Percentiles | None) -> Durations:
    if percentiles is None:
        return Durations(None, None)
    return Durations(percentiles.p50, percentiles.p95)


def _estimate(sample: Sample, spec: FeedbackMetricConfig) -> MetricEstimate:
    interval = mean_interval(sample, boolean=spec.type == "boolean")
    return MetricEstimate(sample.n, sample.mean, interval)


def _difference(
    treatment: Sample, control: Sample, spec: FeedbackMetricConfig
) -> ControlDifference:
    found = compare(
        treatment,
        control,
        higher_is_better=spec.higher_is_better,
        boolean=spec.type == "boolean",
    )
    return ControlDifference(found.diff, found.ci95, found.verdict)
