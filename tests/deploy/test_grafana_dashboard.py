"""The Grafana dashboard (`deploy/grafana/dashboards/stellara.json`) charts what the gateway
exports: every query names series and labels the metric registry has, every metric is on it,
and the JSON is what Grafana's file provisioning loads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import Histogram, MetricWrapperBase

from stellara.telemetry.metrics import GatewayMetrics

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "stellara.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
TARGET_LABELS = frozenset(("instance", "job"))  # Prometheus adds them to every scraped series
_METRIC = re.compile(r"\b(stellara_\w+)(\{[^}]*\})?")
_MATCHER_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class Series(NamedTuple):
    family: str
    labels: frozenset[str]


@cache
def exported_series() -> dict[str, Series]:
    """Every series name `/metrics` can carry under `stellara_`, with its labels: counters as
    `_total`, histograms as `_bucket` (with `le`), `_sum` and `_count`."""
    registry = CollectorRegistry()
    GatewayMetrics(registry=registry, providers=["p"])
    series: dict[str, Series] = {}
    for collector in registry._collector_to_names:
        if not isinstance(collector, MetricWrapperBase):
            continue
        name, labels = collector._name, frozenset(collector._labelnames) | TARGET_LABELS
        if not name.startswith("stellara_"):
            continue
        if isinstance(collector, Histogram):
            series[f"{name}_bucket"] = Series(name, labels | {"le"})
            series[f"{name}_sum"] = Series(name, labels)
            series[f"{name}_count"] = Series(name, labels)
        elif collector._type == "counter":
            series[f"{name}_total"] = Series(name, labels)
        else:
            series[name] = Series(name, labels)
    return series


def query_problems(expr: str, legend: str = "") -> list[str]:
    """What in a PromQL expression (and its legend) the registry does not export: unknown
    series names, label matchers or groupings on labels none of its series has, legend
    placeholders for labels the grouping drops."""
    known = exported_series()
    problems = []
    labels: set[str] = set()
    for name, matchers in _METRIC.findall(expr):
        series = known.get(name)
        if series is None:
            problems.append(f"unknown series {name}")
            continue
        labels |= series.labels
        problems += [
            f"{name} has no label {label}"
            for label in _MATCHER_LABEL.findall(matchers)
            if label not in series.labels
        ]
    grouped: set[str] = set()
    for clause in _GROUPING.findall(expr):
        grouped.update(label.strip() for label in clause.split(",") if label.strip())
    problems += [f"grouping by unknown label {label}" for label in sorted(grouped - labels)]
    problems += [
        f"legend names {label}, which the query does not keep"
        for label in _LEGEND_LABEL.findall(legend)
        if label not in grouped
    ]
    return problems


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return loaded


def charts() -> Iterator[dict[str, Any]]:
    """The panels that query (rows only group them)."""
    return (panel for panel in dashboard()["panels"] if panel["type"] != "row")


def queries() -> Iterator[tuple[str, str, str]]:
    """(where, expression, legend) of every query: the panels' and the variables'."""
    for panel in charts():
        for target in panel["targets"]:
            yield f"{panel['title']} {target['refId']}", target["expr"], target["legendFormat"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            yield f"${variable['name']}", variable["query"]["query"], ""


def test_query_problems_names_what_the_registry_lacks() -> None:
    assert query_problems("sum(rate(stellara_requests[5m]))") == [
        "unknown series stellara_requests"
    ]
    assert query_problems('stellara_in_flight_requests{provider="a"}') == [
        "stellara_in_flight_requests has no label provider"
    ]
    assert query_problems("sum by (stauts) (rate(stellara_requests_total[5m]))") == [
        "grouping by unknown label stauts"
    ]
    assert query_problems("sum(stellara_usage_records_pending)", "{{instance}}") == [
        "legend names instance, which the query does not keep"
    ]
    bucket = (
        "histogram_quantile(0.5, sum by (le) (rate(stellara_request_duration_seconds_bucket[5m])))"
    )
    assert query_problems(bucket) == []


def test_grafana_dashboard_queries_name_only_exported_metrics() -> None:
    problems = [
        f"{where}: {problem}"
        for where, expr, legend in queries()
        for problem in query_problems(expr, legend)
    ]

    assert problems == []


def test_grafana_dashboard_charts_every_exported_metric() -> None:
    exported = exported_series()
    exprs = " ".join(expr for _, expr, _ in queries())
    charted = {exported[name].family for name, _ in _METRIC.findall(exprs) if name in exported}

    assert charted == {series.family for series in exported.values()}


def test_grafana_dashboard_is_provisionable() -> None:
    board = dashboard()
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    expected = {"type": datasource["type"], "uid": datasource["uid"]}
    panel_ids = [panel["id"] for panel in board["panels"]]

    assert board["uid"]
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    assert len(panel_ids) == len(set(panel_ids))
    for panel in board["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    for panel in charts():
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert panel["datasource"] == expected, panel["title"]
        assert ref_ids, panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == expected, variable["name"]


def test_grafana_dashboard_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]
