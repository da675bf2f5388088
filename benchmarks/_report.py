"""The suite's report: one row per scenario, printed as one table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    scenario: str
    outcome: str
    requests: int
    server_errors: int = 0  # 5xx the scenario did not promise
    lost_records: int | None = None
    growth: str = ""
    is_ok: bool = True


def table(rows: list[Row]) -> str:
    header = ("scenario", "outcome", "requests", "5xx!", "lost", "growth", "ok")
    cells = [
        (
            r.scenario,
            r.outcome,
            str(r.requests),
            str(r.server_errors),
            "" if r.lost_records is None else str(r.lost_records),
            r.growth,
            "yes" if r.is_ok else "NO",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)
