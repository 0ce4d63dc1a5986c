"""A page that connects late keeps the session it was served with.

Bokeh discards a session nobody is connected to after ``--unused-session-lifetime``, and a page still
loading its scripts counts as nobody: on a busy server (ten pages opening at once) the WebSocket
came after the session was gone, Bokeh built the whole app a second time for it, and the rebuilt
page's stylesheets pointed at cdn.holoviz.org (20 sessions of ``benchmarks/load_test.py``: 160
failed requests). ``dashboard.app.keep_until_connected`` holds each session until its page has
loaded. Here the lifetime is 0.5 s and the page's scripts are held back 4 s: the page must come up
with the session it was served, asking nothing of another host.
"""
from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest

from _harness import AppServer, figure_title, open_app

pytestmark = pytest.mark.browser

SCRIPT_DELAY_S = 4.0


def test_a_page_whose_scripts_arrive_late_keeps_its_session_and_asks_no_other_host(context):
    with AppServer(extra_args=["--check-unused-sessions", "500", "--unused-session-lifetime", "500"]) as server:
        page = context.new_page()

        def late_script(route):
            time.sleep(SCRIPT_DELAY_S)           # past the lifetime and two checks for unused sessions
            route.continue_()

        page.route("**/static/js/bokeh.min.js*", late_script)
        watch = open_app(page, server.url, timeout=120_000)
        host = urlparse(server.url).hostname
        elsewhere = [u for u in watch.requests if urlparse(u).hostname not in (host, None, "")
                     and not u.startswith(("data:", "blob:"))]
        assert elsewhere == [], f"the page asked other hosts (a rebuilt session's stylesheets?): {elsewhere[:5]}"
        assert watch.failed_requests == [], watch.failed_requests[:5]
        assert watch.errors() == [], f"console errors: {watch.errors()}"
        assert figure_title(page, ".ap-query-plot").startswith("Query")
        server.check_log()
