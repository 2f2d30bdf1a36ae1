"""Headless Chromium for the tests that drive a real browser (selenium + Debian's chromium and
chromium-driver, which `make system-deps` installs). ``chrome()`` skips the calling test, with
the reason, when either is missing."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Where screenshots go: a temporary folder, so a test run leaves the tree clean; set
#: MECHGRAPH_SCREENSHOTS=docs/screenshots to refresh the README's pictures.
SCREENSHOTS = Path(os.environ.get("MECHGRAPH_SCREENSHOTS") or Path(tempfile.gettempdir()) / "mechgraph-screenshots")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,820")


def _find(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@contextmanager
def chrome(*extra_flags: str) -> Iterator[Any]:
    """A headless Chromium with a fresh profile (``extra_flags`` after the usual ones, so a later
    ``--window-size`` wins); skips the test when Chromium is not installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    binary, driver = _find("chromium", "chromium-browser"), _find("chromedriver", "chromium-driver")
    if binary is None or driver is None:
        pytest.skip("Chromium or its driver is not installed (`make system-deps`: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mechgraph-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: Callable[[], Any], timeout: float = 30.0, message: str = "") -> Any:
    """Poll ``what`` until it returns something truthy; fail with ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = what()
        except Exception as e:  # noqa: BLE001 - an element that is not there yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s: {message} (last: {last!r})")


def screenshot(browser: Any, name: str) -> Path:
    """Save the page as ``<SCREENSHOTS>/<name>.png`` (the README shows those in docs/screenshots)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path
