"""The documentation site builds with `mkdocs build --strict` and not one warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.docs import ROOT

# The pages every engineer links to (the shared nav); each must come out of the build.
PAGES = (
    "index.html",
    "quickstart/index.html",
    "migration/index.html",
    "reference/config/index.html",
    "reference/api/index.html",
    "reference/cli/index.html",
    "reference/metrics/index.html",
)


def test_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    assert (ROOT / "mkdocs.yml").is_file(), "mkdocs.yml is missing at the repository root"
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        # Material prints an end-of-life notice on every run; it is not about this site.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, output
    assert not warnings, output
    missing = [page for page in PAGES if not (site / page).is_file()]
    assert not missing, f"not built: {missing}\n{output}"
