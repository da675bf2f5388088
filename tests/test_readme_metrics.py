"""The README's metric table lists exactly the metrics the gateway exports."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from stellara.telemetry.metrics import GatewayMetrics

README = Path(__file__).parents[1] / "README.md"


def test_readme_lists_every_exported_metric_and_no_other() -> None:
    registry = CollectorRegistry()
    GatewayMetrics(registry=registry, providers=["p"])
    exported = set()
    for family in registry.collect():
        if family.name.startswith("stellara_"):
            suffix = "_total" if family.type == "counter" else ""
            exported.add(family.name + suffix)
    table = README.read_text().split("**Metrics**", 1)[1].split("**Events**", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `stellara_")]
    listed: set[str] = set()
    for row in rows:
        names = re.findall(r"`(stellara_\w+|…_\w+)`", row.split("|")[1])
        first = names[0]
        stem = first.rsplit("_", 2)[0]  # stellara_cache_hits_total → stellara_cache
        listed.update(name.replace("…", stem) for name in names)
    assert listed == exported
