"""Long contexts in the served app (issue 12): at T=2048 the heads mosaic is pooled; a wheel zoom
into head 0's top-left corner brings a finer image of that window (exact weights once it fits the
pixel budget), and hover names the exact weight of the cell under the cursor, computed by the
server (not read from the pooled pixel)."""
from __future__ import annotations

import math
import re

import pytest

from _harness import figure_frame_point, figure_images, figure_ranges, figure_title, open_app, shown_tooltip, wait_for
from dashboard.playground import AttentionPlayground

pytestmark = pytest.mark.browser

T = 2048


def state(page) -> str:
    return page.locator(".ap-state-id").first.get_attribute("data-state") or ""


def images(page):
    """``[overview, refined]``: per image of each image glyph of the heads figure, its size in
    pixels and in positions."""
    return figure_images(page, ".ap-heads-map")


def test_a_wheel_zoom_sharpens_the_pooled_map_and_hover_names_the_exact_weight(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url, timeout=240_000)
    box = page.locator(".ap-seq-len input").first
    box.fill(str(T))
    box.press("Enter")
    wait_for(page, lambda: state(page).startswith(f"T={T} ") and "max of" in figure_title(page, ".ap-heads-map"),
             timeout=120, what=f"the pooled mosaic at T={T}")
    overview, refined = images(page)
    f = overview[0]["dw"] / overview[0]["cols"]
    assert f > 1 and refined == [], (overview[0], refined)

    # wheel-zoom with the pointer near head 0's top-left corner until the window is exact
    px, py = figure_frame_point(page, ".ap-heads-map", 3, 300)
    page.mouse.move(px, py)
    for _ in range(60):
        if "zoom: exact weights" in figure_title(page, ".ap-heads-map"):
            break
        page.mouse.wheel(0, -200)
        page.wait_for_timeout(150)
    wait_for(page, lambda: "zoom: exact weights" in figure_title(page, ".ap-heads-map"), timeout=30,
             what="the zoomed window at full resolution")
    wait_for(page, lambda: images(page)[1], timeout=30, what="the refined image")
    _, refined = images(page)
    assert len(refined) == 1
    assert refined[0]["dw"] == refined[0]["cols"] and refined[0]["dh"] == refined[0]["rows"]  # 1 px = 1 weight
    assert refined[0]["cols"] < T                         # just the visible window
    x0, x1, y0, y1 = figure_ranges(page, ".ap-heads-map")
    ya, yb = sorted((y0, y1))
    assert -0.5 <= x0 < x1 < T / 2 and yb < T / 2, (x0, x1, y0, y1)   # in head 0's top-left quarter

    # hover: the server computes the weight of the cell under the cursor; the cell is read from the
    # tooltip itself (the lower-left of the window: keys before their query are kept)
    tx, ty = x0 + 0.15 * (x1 - x0), yb - 0.15 * (yb - ya)
    result = AttentionPlayground(seq_len=T).result

    def exact_in_tooltip():
        x, y = figure_frame_point(page, ".ap-heads-map", tx, ty)
        page.mouse.move(x + 0.3, y)
        page.wait_for_timeout(150)
        page.mouse.move(x, y + 0.3)
        seen.append(shown_tooltip(page))
        m = re.search(r"head:?\s*0\b.*query:?\s*(\d+).*key:?\s*(\d+).*weight \(exact\):?\s*([0-9.eE+-]+)",
                      seen[-1])
        return m and (int(m.group(1)), int(m.group(2)), float(m.group(3)))

    seen: list[str] = []
    try:
        query, key, shown = wait_for(page, exact_in_tooltip, timeout=30,
                                     what="the exact weight in the tooltip")
    except AssertionError as e:
        raise AssertionError(f"{e}; tooltips seen: {seen[-3:]}") from None
    assert shown == pytest.approx(result.weight(0, query, key), abs=2e-6), seen[-1]
    assert math.floor(x0) <= key <= math.ceil(x1) and math.floor(ya) <= query <= math.ceil(yb)
    assert watch.errors() == [], watch.errors()
    app_server.check_log()
