"""The "Trained heads" tab of the served app in chromium: the overview grid, the metrics table and
a click on a small map that opens it in the main view."""
from __future__ import annotations

import re

import pytest

from _harness import clipped_figures, figure_frame_point, figure_title, open_app, wait_for

pytestmark = pytest.mark.browser


def open_trained_heads(page) -> None:
    page.locator(".ap-tabs .bk-tab", has_text="Trained heads").first.click()
    page.locator(".ap-th-main").first.wait_for(state="visible", timeout=60_000)


def selected_cell(page) -> tuple[int, int]:
    cls = page.locator(".ap-th-cell.ap-th-selected").first.get_attribute("class") or ""
    layer, head = re.search(r"\bap-th-cell-(\d+)-(\d+)\b", cls).groups()
    return int(layer), int(head)


def flagged_row(page, role: str) -> tuple[int, int]:
    row = page.locator(".ap-th-metrics tr", has=page.locator(f".ap-th-best[data-role={role}]"))
    return int(row.get_attribute("data-layer")), int(row.get_attribute("data-head"))


def test_clicking_a_small_map_opens_that_head_in_the_main_view(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)
    open_trained_heads(page)

    cells = page.locator(".ap-th-cell")
    wait_for(page, lambda: cells.count() == 8, what="8 overview maps (2 layers x 4 heads)")
    assert page.locator(".ap-th-metrics tr[data-layer]").count() == 8
    assert flagged_row(page, "previous-token")[0] == 0
    induction = flagged_row(page, "induction")
    assert induction[0] == 1
    assert selected_cell(page) == induction          # opens on the induction head
    assert figure_title(page, ".ap-th-main").startswith(f"Layer {induction[0]} · head {induction[1]}")

    px, py = figure_frame_point(page, ".ap-th-cell-0-2", 10, 20)
    page.mouse.click(px, py)
    wait_for(page, lambda: figure_title(page, ".ap-th-main").startswith("Layer 0 · head 2"),
             what="main map title 'Layer 0 · head 2'")
    assert selected_cell(page) == (0, 2)
    row = page.locator(".ap-th-metrics tr.ap-th-selected")
    assert (row.get_attribute("data-layer"), row.get_attribute("data-head")) == ("0", "2")
    assert page.locator(".ap-th-head .bk-btn.bk-active").inner_text().strip() == "2"

    assert clipped_figures(page) == []
    assert watch.errors() == [], f"console errors: {watch.errors()}"
    app_server.check_log()
