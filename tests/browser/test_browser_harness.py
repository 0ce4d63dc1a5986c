"""The harness itself: a missing chromium is a clear failure, and a served script that raises is
caught even though the server still answers HTTP 200."""
from __future__ import annotations

import pytest

import _harness
from _harness import AppServer, BrowserSetupError, launch_chromium

pytestmark = pytest.mark.browser


def test_missing_chromium_fails_with_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(_harness, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(BrowserSetupError, match=r"no-chromium not found.*apt-get install chromium"):
        launch_chromium(playwright=None)


def test_a_served_script_that_raises_is_reported(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import panel as pn\nraise ValueError('broken on purpose')\n")
    server = AppServer(str(script))
    try:
        with pytest.raises(AssertionError, match=r"(?s)the served app raised.*Error running "
                                                 r"application handler.*broken on purpose"):
            server.start()
        assert server.proc.poll() is not None      # start() stopped the server when it raised
    finally:
        server.stop()
        server.remove_log()
