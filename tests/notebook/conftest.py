"""Fixtures for the notebook browser tests: chromium (shared helpers from tests/browser/_harness.py)
and JupyterLab / Notebook 7 servers from ``_jupyter.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))


VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="session")
def nb_browser(browser):
    """The session's chromium (tests/conftest.py): one playwright instance per process."""
    return browser
