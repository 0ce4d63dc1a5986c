"""The served app (``panel serve dashboard/app.py``) in a real browser: it loads clean, its
controls drive the plots over the live session, and two visitors do not share state.

Named ``test_served_app.py`` rather than ``test_app.py``: the test folders have no
``__init__.py``, so two test files with one basename (``tests/dashboard/test_app.py``) would stop
pytest's collection.
"""
from __future__ import annotations

import re

import pytest

from _harness import (click_heatmap_row, clipped_figures, figure_geometry, figure_title,
                      head_count, nudge_slider, open_app, shown_heads, slider_value, verdict,
                      wait_for)
from dashboard.playground import AttentionPlayground

pytestmark = pytest.mark.browser

DEFAULT_H = AttentionPlayground.param.num_heads.default
DEFAULT_QUERY = AttentionPlayground.param.query.default


def query_title_names(page, query: int) -> bool:
    """The per-query plot's title reads "Query <query> ..." (or "Query tok_<query> ...")."""
    return re.match(rf"Query (tok_)?{query}\b", figure_title(page, ".ap-query-plot")) is not None


def assert_clean(watch, server) -> None:
    assert watch.errors() == [], f"console errors: {watch.errors()}"
    server.check_log()


def test_app_loads_one_heatmap_per_head_without_console_errors(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)

    assert head_count(page) == DEFAULT_H
    assert shown_heads(page) == list(range(DEFAULT_H))
    assert verdict(page) == "PASS"
    assert slider_value(page, ".ap-query") == str(DEFAULT_QUERY)
    assert query_title_names(page, DEFAULT_QUERY)
    assert page.locator(".ap-single-token").is_visible()
    assert page.locator(".ap-caveat").is_visible()
    assert_clean(watch, app_server)


def test_served_page_requests_nothing_from_other_hosts(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)
    origin = f"http://localhost:{app_server.port}/"
    outside = [u for u in watch.requests
               if not u.startswith((origin, f"ws://localhost:{app_server.port}/", "data:", "blob:"))]
    assert outside == []


def test_heatmap_count_follows_the_heads_slider(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)

    assert shown_heads(page) == list(range(DEFAULT_H))
    nudge_slider(page, ".ap-num-heads", "ArrowRight")
    wait_for(page, lambda: head_count(page) == DEFAULT_H + 1, what=f"{DEFAULT_H + 1} head maps")
    assert slider_value(page, ".ap-num-heads") == str(DEFAULT_H + 1)
    assert shown_heads(page) == list(range(DEFAULT_H + 1))

    nudge_slider(page, ".ap-num-heads", "ArrowLeft", times=3)
    wait_for(page, lambda: head_count(page) == DEFAULT_H - 2, what=f"{DEFAULT_H - 2} head maps")
    assert shown_heads(page) == list(range(DEFAULT_H - 2))

    nudge_slider(page, ".ap-num-heads", "ArrowRight", times=2)     # hidden maps come back
    wait_for(page, lambda: head_count(page) == DEFAULT_H, what=f"{DEFAULT_H} head maps again")
    assert shown_heads(page) == list(range(DEFAULT_H))
    assert_clean(watch, app_server)


def test_turning_causal_off_turns_pass_into_fail(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)
    assert verdict(page) == "PASS"
    future = page.locator(".ap-stats-pane [data-stat=max-future]")
    assert float(future.inner_text()) == 0.0

    page.locator(".ap-causal input[type=checkbox]").click()
    wait_for(page, lambda: verdict(page) == "FAIL", what="verdict FAIL")
    assert page.locator(".ap-verdict-pane .ap-badge").inner_text().strip() == "FAIL"
    assert float(future.inner_text()) > 0.0

    page.locator(".ap-causal input[type=checkbox]").click()
    wait_for(page, lambda: verdict(page) == "PASS", what="verdict PASS again")
    assert_clean(watch, app_server)


@pytest.mark.parametrize(("head", "row"), [(1, 3), (0, 12)])
def test_clicking_a_heatmap_row_selects_that_query(context, app_server, head, row):
    assert row != DEFAULT_QUERY
    page = context.new_page()
    watch = open_app(page, app_server.url)

    click_heatmap_row(page, head, row)
    wait_for(page, lambda: slider_value(page, ".ap-query") == str(row), what=f"query {row}")
    wait_for(page, lambda: query_title_names(page, row), what=f'title "Query {row}"')
    assert_clean(watch, app_server)


def test_two_sessions_keep_independent_state(browser, app_server):
    ctx_a = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx_b = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        a, b = ctx_a.new_page(), ctx_b.new_page()
        watch_a, watch_b = open_app(a, app_server.url), open_app(b, app_server.url)

        a.locator(".ap-causal input[type=checkbox]").click()
        nudge_slider(a, ".ap-num-heads", "ArrowRight")
        wait_for(a, lambda: verdict(a) == "FAIL" and head_count(a) == DEFAULT_H + 1,
                 what="session A: FAIL with one more head")
        click_heatmap_row(b, 0, 2)
        wait_for(b, lambda: slider_value(b, ".ap-query") == "2", what="session B: query 2")
        b.wait_for_timeout(500)              # time for any stray update to arrive

        assert (verdict(b), head_count(b)) == ("PASS", DEFAULT_H)
        assert b.locator(".ap-causal input[type=checkbox]").is_checked()
        assert slider_value(a, ".ap-query") == str(DEFAULT_QUERY)
        assert query_title_names(a, DEFAULT_QUERY)
        assert (verdict(a), head_count(a)) == ("FAIL", DEFAULT_H + 1)
        assert_clean(watch_a, app_server)
        assert_clean(watch_b, app_server)
    finally:
        ctx_a.close()
        ctx_b.close()


def test_every_figure_is_drawn_whole(context, app_server):
    """Each plot's frame fits inside its canvas and keeps its fixed size (no figure is cut off
    or stretched by the page layout), before and after the head grid changes."""
    page = context.new_page()
    watch = open_app(page, app_server.url)
    page.wait_for_timeout(500)                # the layout settles after the first paint
    assert figure_geometry(page), "no Bokeh plots found"
    bad = clipped_figures(page)
    assert bad == [], "figures cut off or stretched:\n" + "\n".join(bad)

    nudge_slider(page, ".ap-num-heads", "ArrowRight")
    wait_for(page, lambda: head_count(page) == DEFAULT_H + 1, what=f"{DEFAULT_H + 1} head maps")
    page.wait_for_timeout(500)
    bad = clipped_figures(page)
    assert bad == [], "figures cut off or stretched after adding a head:\n" + "\n".join(bad)
    assert_clean(watch, app_server)
