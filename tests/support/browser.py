"""Headless Chromium for the browser tests: Debian's `chromium` package, driven by
Playwright for Python, which is told where that browser is (Playwright never downloads
one here). `.ci/run` installs the package; elsewhere the tests skip, saying why, unless
REQUIRE_BROWSER=1 makes a missing browser a failure.
"""

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a small /dev/shm in containers crashes tabs
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "apt-get install chromium chromium-driver; pip install -r requirements-dev.txt"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} ({INSTALL_HINT})"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright for Python is not installed ({INSTALL_HINT})"
    return None


def require_browser() -> None:
    """Skip the calling test when there is no browser, or fail under REQUIRE_BROWSER=1."""
    reason = missing_browser()
    if reason is None:
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)
