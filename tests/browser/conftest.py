"""Browser tests drive pages in headless Chromium through Playwright, never downloading a
browser: they use the system's Chromium (`scripts/browser` installs it as root)."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a page in headless Chromium (Playwright)")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The system Chromium. Missing, it skips the test only for a user who cannot install it:
    as root (CI, which runs scripts/browser first) a missing browser is a failure."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is not None:
        return path
    if os.geteuid() == 0:
        pytest.fail("chromium not found: run scripts/browser to install it")
    pytest.skip("chromium not installed and not root: run scripts/browser as root to install it")
