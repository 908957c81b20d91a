"""Headless Chromium for browser tests: Debian's `chromium` (`make browser` installs it, and `.ci/run` calls that),
driven by Playwright (never `playwright install`, which downloads a browser build from the internet)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]


def chromium_path() -> Path:
    """The system's Chromium; the test is skipped, saying how to get it, where there is none."""
    found = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if found is None:
        pytest.skip("browser tests need Debian's chromium: run `make browser` (apt-get install chromium)")
    return Path(found)
