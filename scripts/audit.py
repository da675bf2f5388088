"""Audit requirements/dev.lock for known vulnerabilities; CI runs it through scripts/supply.

The dev lock holds every pin of the runtime lock, so one audit covers the image and CI alike.
pip-audit asks PyPI's vulnerability service about each pinned version. Where that service
cannot answer (on our machines the registry serves installs but not its per-version API, and
with no network at all the request fails), pip-audit either stops with a connection error or
marks every package "could not be audited" and still prints "No known vulnerabilities found".
Neither is an audit: this prints one line saying the audit was skipped and why, and exits 0.
A known vulnerability fails the run, unless its ID is in requirements/audit-ignore.txt.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "dev.lock"
IGNORED = ROOT / "requirements" / "audit-ignore.txt"
PIP_AUDIT = ROOT / ".venv" / "bin" / "pip-audit"


def ignored_ids(text: str) -> list[str]:
    """The accepted vulnerability IDs: each line's first word; `#` starts a comment."""
    return [line.split()[0] for line in text.splitlines() if line.split("#")[0].strip()]


def verdict(report: dict[str, Any]) -> tuple[int, list[str]]:
    """The exit code and the lines to print for pip-audit's JSON report."""
    dependencies = report["dependencies"]
    skipped = [dependency for dependency in dependencies if "skip_reason" in dependency]
    if dependencies and len(skipped) == len(dependencies):
        reason = skipped[0]["skip_reason"]
        return 0, [
            f"audit: skipped: no vulnerability database answered for any of the "
            f"{len(dependencies)} pins (the first answer: {reason})"
        ]
    found = [
        f"audit: {dependency['name']} {dependency['version']}: {vuln['id']} "
        f"(fixed in {', '.join(vuln['fix_versions']) or 'no release yet'})"
        for dependency in dependencies
        for vuln in dependency.get("vulns", [])
    ]
    lines = [f"audit: not audited: {dependency['skip_reason']}" for dependency in skipped]
    if found:
        return 1, [
            *lines,
            *found,
            f"audit: {len(found)} known vulnerabilities; upgrade (scripts/lock --upgrade) or "
            f"accept each in {IGNORED.relative_to(ROOT)} with the reason",
        ]
    audited = len(dependencies) - len(skipped)
    return 0, [*lines, f"audit: no known vulnerabilities in {audited} pins"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    ignores = ignored_ids(IGNORED.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "audit.json"
        command = [str(PIP_AUDIT), "--disable-pip", "--require-hashes", "--progress-spinner=off"]
        command += ["--timeout=15", "--format=json", f"--output={output}", f"-r={args.lock}"]
        command += [f"--ignore-vuln={vuln_id}" for vuln_id in ignores]
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        if not output.exists():
            if "ConnectionError" in run.stderr:
                cause = run.stderr.strip().splitlines()[-1]
                print(f"audit: skipped: the vulnerability database is unreachable ({cause})")
                return 0
            print(run.stderr, file=sys.stderr)
            return run.returncode or 1
        code, lines = verdict(json.loads(output.read_text(encoding="utf-8")))
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
