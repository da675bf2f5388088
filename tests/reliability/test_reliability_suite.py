"""The reliability suite's short form (`benchmarks/reliability.py --short`) passes: every
fault scenario gives the promised outcome, nothing leaks, no usage record is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SUITE = Path(__file__).parents[2] / "benchmarks" / "reliability.py"


def test_reliability_suite_short_form_keeps_every_promise(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SUITE), "--short", "--soak-s", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all " in result.stdout
    assert "scenarios as promised" in result.stdout
    assert "usage records of every answered request" in result.stdout
