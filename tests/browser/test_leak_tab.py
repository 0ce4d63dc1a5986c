"""The "Leak detector" tab of the served app in a real browser: a buggy zoo model reads FAIL with
its leaks marked, a correct one reads PASS (and FAIL against a stricter relation), over the live
session.
"""
from __future__ import annotations

import pytest

from _harness import clipped_figures, figure_title, open_app, wait_for
from attention.zoo import ZOO

pytestmark = pytest.mark.browser

BUGGY = "causal_conv_padded_both_sides"       # not the default model: the page must change
CORRECT = "causal_conv_left_padded"


def leak_verdict(page) -> str | None:
    return page.locator(".ap-leak-verdict .ap-leak-badge").get_attribute("data-verdict")


def leak_sentence(page) -> str:
    """The largest leak in words (or why there is none)."""
    return page.locator(".ap-leak-first .ap-leak-sentence").inner_text()


def map_title(page) -> str:
    """The dependency map's title, or "" while a new figure replaces the old one."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        return figure_title(page, ".ap-leak-map")
    except PlaywrightError:                         # "no Bokeh plot view on this element" mid-swap
        return ""


def describes(page, name: str) -> bool:
    """The description card shows zoo entry ``name``'s sentence (its start: the text may wrap)."""
    return ZOO[name].description[:40] in page.locator(".ap-leak-description .ap-leak-card").inner_text()


def heading_size(page, css: str) -> str:
    """Computed font size of the first ``h3`` inside the Markdown pane with class ``css``."""
    return page.locator(f"{css} h3").first.evaluate("el => getComputedStyle(el).fontSize")


def test_leak_tab_fails_a_buggy_model_and_passes_a_correct_one(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)
    playground_h3 = heading_size(page, ".ap-text-heads")

    page.locator(".bk-tab", has_text="Leak detector").click()
    page.locator(".ap-leak-verdict .ap-leak-badge").wait_for(state="visible")
    page.locator(".ap-leak-map").wait_for(state="visible")
    # the tab is built when first shown, and styled like the rest of the app all the same
    assert heading_size(page, ".ap-leak-text-map") == playground_h3

    page.locator(".ap-leak-model select").select_option(BUGGY)
    wait_for(page, lambda: describes(page, BUGGY), what=f"the description of {BUGGY}")
    wait_for(page, lambda: leak_verdict(page) == "FAIL", what="FAIL")
    title = wait_for(page, lambda: map_title(page).endswith("leaks") and map_title(page),
                     what="a map title naming the leaks")
    assert title.startswith("Dependency map · causal outlined · ")
    n_leaks = int(title.rsplit("·", 1)[1].split()[0])
    assert n_leaks > 0
    assert "which the relation (causal) forbids" in leak_sentence(page)

    page.locator(".ap-leak-model select").select_option(CORRECT)
    wait_for(page, lambda: leak_verdict(page) == "PASS", what="PASS")
    wait_for(page, lambda: map_title(page).endswith("no leak"), what="a map titled 'no leak'")
    assert describes(page, CORRECT)
    assert leak_sentence(page).startswith("No output depends on an input")

    # a stricter relation for the same model: re-checked from the cached map, figures patched
    page.locator(".ap-leak-allowed select").select_option(label="sliding window, 2 keys")
    wait_for(page, lambda: leak_verdict(page) == "FAIL", what="FAIL against sliding_window(2)")
    wait_for(page, lambda: map_title(page).startswith("Dependency map · sliding_window(2) outlined"),
             what="the map titled with the new relation")
    assert "which the relation (sliding_window(2)) forbids" in leak_sentence(page)

    assert clipped_figures(page) == []
    assert watch.errors() == [], f"console errors: {watch.errors()}"
    app_server.check_log()
