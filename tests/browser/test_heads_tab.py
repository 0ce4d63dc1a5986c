"""The "Model heads" tab of the served app in chromium: opening it starts loading all-MiniLM-L6-v2
in the server (before any pick), the overview (one figure for every head), the metrics table, a click
on a map that opens it in the main view, and all-MiniLM-L6-v2 reading a typed sentence (72 maps, its
tokens on the axes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from _harness import AppServer, clipped_figures, figure_frame_point, figure_title, open_app, wait_for

pytestmark = pytest.mark.browser

_AXIS_LABELS_JS = """(el, side) => {
    const view = [...Bokeh.index.all_views()].find(v => v.el === el && v.frame !== undefined);
    const axis = view.model[side][0];
    const o = axis.major_label_overrides;
    return (o instanceof Map ? [...o.values()] : Object.values(o)).map(String);
}"""


def open_model_heads(page) -> None:
    page.locator(".ap-tabs .bk-tab", has_text="Model heads").first.click()
    page.locator(".ap-th-main").first.wait_for(state="visible", timeout=60_000)


def axis_labels(page, css: str, side: str = "below") -> list[str]:
    """The tick labels of a figure's x (``below``) or y (``left``) axis, as the browser has them."""
    return page.locator(css).first.evaluate(_AXIS_LABELS_JS, side)


def selected_row(page) -> tuple[int, int]:
    row = page.locator(".ap-th-metrics tr.ap-th-selected")
    return int(row.get_attribute("data-layer")), int(row.get_attribute("data-head"))


def flagged_row(page, role: str) -> tuple[int, int]:
    row = page.locator(".ap-th-metrics tr", has=page.locator(f".ap-th-best[data-role={role}]"))
    return int(row.get_attribute("data-layer")), int(row.get_attribute("data-head"))


def _server_loaded_transformers(pid: int) -> bool:
    """Whether the server process has imported transformers: its import loads the ``tokenizers``
    extension (nothing else in the app does), seen as a mapped shared object in /proc."""
    return "tokenizers" in Path(f"/proc/{pid}/maps").read_text()


# First in this module: the module's server is fresh, no session has opened the tab yet.
def test_opening_the_tab_starts_loading_minilm_in_the_server_before_it_is_picked(context, app_server):
    from attention.hf import minilm_available

    if not minilm_available():
        pytest.skip("all-MiniLM-L6-v2 is not installed here")
    page = context.new_page()
    watch = open_app(page, app_server.url)
    pid = app_server.proc.pid
    assert not _server_loaded_transformers(pid), "the app loaded transformers before the tab was opened"
    open_model_heads(page)
    wait_for(page, lambda: _server_loaded_transformers(pid), timeout=240,
             what="the server importing transformers for MiniLM after the tab was opened, with no pick")
    assert figure_title(page, ".ap-th-overview").startswith("2 layers × 4 heads")   # still the trained model
    assert watch.errors() == [], f"console errors: {watch.errors()}"
    app_server.check_log()


def test_a_served_app_preloads_minilm_after_its_first_page_without_the_tab_being_opened(context):
    """As served by default (no ``AP_PRELOAD=0``), the first page of a process starts the load, so
    a visitor who gets to the tab later finds MiniLM ready."""
    from attention.hf import minilm_available

    if not minilm_available():
        pytest.skip("all-MiniLM-L6-v2 is not installed here")
    with AppServer(env={"AP_PRELOAD": "1"}) as server:
        pid = server.proc.pid
        assert not _server_loaded_transformers(pid), "transformers was loaded before any page"
        page = context.new_page()
        watch = open_app(page, server.url)                          # the Playground only
        wait_for(page, lambda: _server_loaded_transformers(pid), timeout=240,
                 what="the server importing transformers after the first page, with no tab opened")
        assert page.locator(".ap-th-main").count() == 0, "the Model heads tab was built"
        assert watch.errors() == [], f"console errors: {watch.errors()}"
        server.check_log()


def test_clicking_a_map_in_the_overview_opens_that_head_in_the_main_view(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)
    open_model_heads(page)

    assert figure_title(page, ".ap-th-overview").startswith("2 layers × 4 heads = 8 maps")
    assert axis_labels(page, ".ap-th-overview") == ["H0", "H1", "H2", "H3"]
    assert page.locator(".ap-th-metrics tr[data-layer]").count() == 8
    assert flagged_row(page, "previous-token")[0] == 0
    induction = flagged_row(page, "induction")
    assert induction[0] == 1
    assert selected_row(page) == induction          # opens on the induction head
    assert figure_title(page, ".ap-th-main").startswith(f"Layer {induction[0]} · head {induction[1]}")

    stride = 33                                      # 32 positions + a 1-pixel gap per map
    px, py = figure_frame_point(page, ".ap-th-overview", 2 * stride + 10, 20)
    page.mouse.click(px, py)
    wait_for(page, lambda: figure_title(page, ".ap-th-main").startswith("Layer 0 · head 2"),
             what="main map title 'Layer 0 · head 2'")
    assert selected_row(page) == (0, 2)
    assert page.locator(".ap-th-head .bk-btn.bk-active").inner_text().strip() == "2"

    assert clipped_figures(page) == []
    assert watch.errors() == [], f"console errors: {watch.errors()}"
    app_server.check_log()


def test_minilm_reads_a_typed_sentence_with_72_maps_and_its_tokens_on_the_axes(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)
    open_model_heads(page)

    if page.locator(".ap-th-model .bk-btn", has_text="not installed").count():
        pytest.skip("all-MiniLM-L6-v2 is not installed here")
    page.locator(".ap-th-model .bk-btn", has_text="all-MiniLM-L6-v2").first.click()
    # the first load in the server process imports transformers and reads the weights
    wait_for(page, lambda: figure_title(page, ".ap-th-overview").startswith("6 layers × 12 heads = 72 maps"),
             timeout=240, what="the overview of 72 MiniLM maps")
    box = page.locator(".ap-th-text input").first
    box.fill("The cat sat on the mat.")
    box.press("Enter")
    want = ["0:[CLS]", "1:the", "2:cat", "3:sat", "4:on", "5:the", "6:mat", "7:.", "8:[SEP]"]
    wait_for(page, lambda: axis_labels(page, ".ap-th-main") == want, timeout=60,
             what=f"the sentence's tokens on the main map's x axis ({want})")
    assert axis_labels(page, ".ap-th-main", "left") == want
    assert figure_title(page, ".ap-th-overview").startswith("6 layers × 12 heads = 72 maps")
    assert axis_labels(page, ".ap-th-overview") == [f"H{h}" for h in range(12)]
    assert axis_labels(page, ".ap-th-overview", "left") == [f"L{l}" for l in range(6)]
    assert page.locator(".ap-th-metrics tr[data-layer]").count() == 72
    assert "9 tokens" in page.locator(".ap-th-summary .ap-th-line").first.inner_text()

    assert clipped_figures(page) == []
    assert watch.errors() == [], f"console errors: {watch.errors()}"
    app_server.check_log()


_VISIBLE_TOOLTIPS_JS = """() => {
    const out = [];
    const walk = (root) => {
        for (const el of root.querySelectorAll("*")) {
            if (el.classList && el.classList.contains("bk-Tooltip")) {
                const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
                if (r.width > 0 && cs.display !== "none" && cs.visibility !== "hidden")
                    out.push({x: r.x, y: r.y, right: r.right, bottom: r.bottom,
                              text: (el.shadowRoot || el).textContent});
            }
            if (el.shadowRoot) walk(el.shadowRoot);
        }
    };
    walk(document);
    return out;
}"""


def _overlaps(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["right"] and \
        a["y"] < b["y"] + b["height"] and b["y"] < a["bottom"]


def test_the_input_buttons_tooltip_stays_in_the_sidebar_and_closes_when_the_pointer_leaves(
        context, app_server):
    """The "Repeated random tokens" / "My own token ids" group's doc opens on hover under the
    buttons, inside the sidebar (it used to be one 900-pixel line over the overview's title), and
    closes once the pointer is on the maps."""
    page = context.new_page()
    watch = open_app(page, app_server.url)
    open_model_heads(page)
    button = page.locator(".ap-th-input .bk-btn", has_text="Repeated random tokens").first
    box = button.bounding_box()
    page.mouse.move(box["x"] + 10, box["y"] + box["height"] / 2)
    wait_for(page, lambda: page.evaluate(_VISIBLE_TOOLTIPS_JS), what="the input group's tooltip")
    (tip,) = page.evaluate(_VISIBLE_TOOLTIPS_JS)
    assert "induction head" in tip["text"]
    sidebar = page.locator(".ap-th-sidebar").first.bounding_box()
    assert tip["right"] <= sidebar["x"] + sidebar["width"], (tip, sidebar)
    for css in (".ap-th-overview", ".ap-th-main"):
        figure = page.locator(css).first.bounding_box()
        assert not _overlaps(tip, figure), f"the tooltip {tip} covers {css} {figure}"

    overview = page.locator(".ap-th-overview").first.bounding_box()
    page.mouse.move(overview["x"] + overview["width"] / 2, overview["y"] + 10, steps=5)
    wait_for(page, lambda: page.evaluate(_VISIBLE_TOOLTIPS_JS) == [], timeout=5.0,
             what="the tooltip closed once the pointer left the buttons")
    assert watch.errors() == [], f"console errors: {watch.errors()}"
