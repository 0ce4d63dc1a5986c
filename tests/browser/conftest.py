"""Fixtures for the browser tests: one app server per module (the session's chromium, ``browser``,
is in tests/conftest.py, shared with the notebook tests).

The browser is Debian's ``/usr/bin/chromium`` driven by playwright's sync API; when it is missing
the tests fail with an install hint (CI installs it with apt-get through ``./dev test``).
Helpers live in ``_harness.py`` (shared with ``scripts/make_screenshots.py``).
"""
from __future__ import annotations

import pytest

from _harness import AppServer, serving

VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def app_server():
    """``python -m panel serve dashboard/app.py`` on a free port, stopped after the module."""
    server = AppServer()
    yield from serving(server)


@pytest.fixture
def context(browser):
    """A fresh browser context (its own cookies and storage: a separate visitor)."""
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()

