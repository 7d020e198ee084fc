"""Fixtures of the tests that drive the service in a real Chromium (Debian's package)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI") == "true"
BROWSER_TESTS = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not IN_CI,
        reason="no /usr/bin/chromium (make browser installs it)",
    ),
]
"""Every browser test module's marks: outside CI a machine without Chromium skips them; in CI
the `browser` fixture fails instead, so CI cannot pass without running them."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    if not CHROMIUM.exists():
        pytest.fail("CI must install Chromium before the tests: make browser")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()
