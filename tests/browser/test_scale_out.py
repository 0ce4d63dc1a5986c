"""Scale-out is Panel's own ``--num-procs N``: ``./dev serve --num-procs 2`` forks two server
processes, and sessions opened on either are independent and live."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _harness import AppServer, open_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _state(page) -> str:
    return page.locator(".ap-state-id").first.get_attribute("data-state")


def _wait_state(page, pattern: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = _state(page)
        if re.search(pattern, s):
            return s
        time.sleep(0.1)
    raise AssertionError(f"state never matched {pattern!r}: still {_state(page)!r}")


def test_two_processes_serve_independent_live_sessions(browser):
    with AppServer(extra_args=["--num-procs", "2"]) as server:
        pages = []
        for _ in range(2):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            open_app(page, server.url, timeout=240_000)
            pages.append(page)
        a, b = pages
        seed = a.locator(".ap-seed input").first
        seed.fill("11")
        seed.press("Enter")
        _wait_state(a, r"seed=11 ")
        assert "seed=0 " in _state(b)                      # the other session did not move
        box = b.locator(".ap-seq-len input").first
        box.fill("9")
        box.press("Enter")
        _wait_state(b, r"^T=9 ")
        assert _state(a).startswith("T=16 ")
        server.check_log()
        assert len(_children(server.proc.pid)) >= 2        # tornado forked two serving processes
        for page in pages:
            page.context.close()
