"""Fixtures for the notebook browser tests: chromium (shared helpers from tests/browser/_harness.py)
and JupyterLab / Notebook 7 servers from ``_jupyter.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))

from _harness import BrowserSetupError, launch_chromium  # noqa: E402

VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="session")
def nb_browser():
    """Headless Debian chromium for the notebook tests."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        try:
            b = launch_chromium(pw)
        except (BrowserSetupError, PlaywrightError) as exc:
            pytest.fail(f"cannot start chromium for the notebook tests: {exc}", pytrace=False)
        yield b
        b.close()
