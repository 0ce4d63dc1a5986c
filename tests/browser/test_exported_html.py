"""The standalone export (``python -m dashboard.export OUT.html``) opened in chromium with every
network request blocked: it renders, makes no request at all, and its controls still work.

Named ``test_exported_html.py`` rather than ``test_export.py`` so that it cannot clash with
``tests/dashboard/test_export.py`` (the test folders have no ``__init__.py``).
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from _harness import (REPO_ROOT, PageWatch, block_network, click_heatmap_row, clipped_figures,
                      figure_geometry, figure_title, head_count, nudge_slider, slider_value,
                      verdict, wait_for)
from dashboard.playground import AttentionPlayground

pytestmark = pytest.mark.browser

DEFAULTS = AttentionPlayground.param
MAX_EXPORT_BYTES = 6_000_000          # issue 3: under 6 MB at the default size


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default export, written by the CLI into a temporary folder."""
    out = tmp_path_factory.mktemp("export") / "playground.html"
    proc = subprocess.run([sys.executable, "-m", "dashboard.export", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"export failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.fixture
def offline_page(context, exported):
    """The export opened from disk with every other request aborted: (page, watch, attempts)."""
    url = exported.as_uri()
    attempts = block_network(context, url)
    page = context.new_page()
    watch = PageWatch.attach(page)
    page.goto(url)
    page.locator(".ap-head-heatmap").first.wait_for(state="visible")
    return page, watch, attempts


def other_requests(url: str, watch: PageWatch, attempts: list[str]) -> list[str]:
    """Every request or websocket the page tried, other than the file itself and data:/blob:."""
    seen = attempts + watch.requests + watch.websockets
    return sorted({u for u in seen if u != url and not u.startswith(("data:", "blob:"))})


def assert_clean(page, watch, attempts, url) -> None:
    page.wait_for_timeout(200)                 # let late resource loads report
    assert other_requests(url, watch, attempts) == []
    assert watch.errors() == [], f"console errors: {watch.errors()}"


def stat(page, name: str) -> float:
    return float(page.locator(f".ap-stats-pane [data-stat={name}]").inner_text())


def test_export_is_one_file_under_6_mb(exported):
    assert exported.stat().st_size < MAX_EXPORT_BYTES
    assert sorted(p.name for p in exported.parent.iterdir()) == [exported.name]


def test_export_renders_offline_without_requests_or_console_errors(offline_page, exported):
    page, watch, attempts = offline_page
    assert head_count(page) == DEFAULTS.num_heads.default
    assert verdict(page) == "PASS"
    assert page.locator(".ap-query-plot").is_visible()
    assert page.locator(".ap-invariance-chart").is_visible()
    assert_clean(page, watch, attempts, exported.as_uri())


def test_export_draws_every_figure_whole(offline_page):
    page, _, _ = offline_page
    page.wait_for_timeout(300)
    assert figure_geometry(page), "no Bokeh plots found"
    bad = clipped_figures(page)
    assert bad == [], "figures cut off or stretched:\n" + "\n".join(bad)


def test_export_causal_checkbox_turns_pass_into_fail(offline_page, exported):
    page, watch, attempts = offline_page
    box = page.locator(".ap-causal input[type=checkbox]")
    assert box.is_checked() and verdict(page) == "PASS"
    assert stat(page, "max-future") == 0.0

    box.click()
    wait_for(page, lambda: verdict(page) == "FAIL", what="verdict FAIL")
    assert stat(page, "max-future") > 0.0
    assert figure_title(page, ".ap-mask") == "No mask (full attention)"

    box.click()
    wait_for(page, lambda: verdict(page) == "PASS", what="verdict PASS again")
    assert_clean(page, watch, attempts, exported.as_uri())


def test_export_prefix_slider_moves_the_invariance_prefix(offline_page, exported):
    page, watch, attempts = offline_page
    L0 = DEFAULTS.prefix.default
    stats = page.locator(".ap-stats-pane table.ap-stats")
    assert f"positions 0..{L0}" in stats.inner_text()

    nudge_slider(page, ".ap-prefix", "ArrowRight", times=2)
    wait_for(page, lambda: f"positions 0..{L0 + 2}" in stats.inner_text(), what=f"L = {L0 + 2}")
    assert slider_value(page, ".ap-prefix") == str(L0 + 2)
    assert verdict(page) == "PASS"
    assert stat(page, "max-diff") == 0.0

    page.locator(".ap-causal input[type=checkbox]").click()     # no mask: outputs 0..L move
    wait_for(page, lambda: verdict(page) == "FAIL", what="verdict FAIL")
    assert f"positions 0..{L0 + 2}" in stats.inner_text()
    assert stat(page, "max-diff") > 0.0
    assert_clean(page, watch, attempts, exported.as_uri())


def test_export_query_follows_the_slider_and_a_heatmap_click(offline_page, exported):
    page, watch, attempts = offline_page
    q0 = DEFAULTS.query.default

    def title_names(q: int) -> bool:
        return re.match(rf"Query (tok_)?{q}\b", figure_title(page, ".ap-query-plot")) is not None

    assert title_names(q0)
    nudge_slider(page, ".ap-query", "ArrowRight")
    wait_for(page, lambda: title_names(q0 + 1), what=f'title "Query {q0 + 1}"')

    click_heatmap_row(page, 2, 3)
    wait_for(page, lambda: slider_value(page, ".ap-query") == "3", what="query slider at 3")
    wait_for(page, lambda: title_names(3), what='title "Query 3"')
    assert_clean(page, watch, attempts, exported.as_uri())


def test_export_header_band_spans_the_window(offline_page):
    page, _, _ = offline_page
    width = page.evaluate("""() => {
        const find = (root) => { for (const e of root.querySelectorAll('*')) {
            if (e.classList.contains('ap-header')) return e;
            if (e.shadowRoot) { const f = find(e.shadowRoot); if (f) return f; } } return null; };
        return find(document).getBoundingClientRect().width; }""")
    assert width >= 0.95 * page.viewport_size["width"]


def _invariance_bars(page) -> dict:
    """Bar heights of the invariance chart, by fill colour (from the Bokeh document)."""
    return page.evaluate("""() => {
        const out = {};
        for (const m of Bokeh.documents[0].all_models) {
            if (m.type !== 'GlyphRenderer' || m.glyph.type !== 'Quad') continue;
            const c = m.glyph.fill_color; out[typeof c === "string" ? c : (c.value ?? JSON.stringify(c))] = Array.from(m.data_source.data.top);
        }
        return out; }""")


def test_export_draws_outputs_before_L_that_moved_red_when_causal_is_off(offline_page):
    from dashboard.common.style import CHANGED_COLOR, SAME_COLOR, VIOLATION_COLOR
    page, _, _ = offline_page
    L = DEFAULTS.prefix.default
    bars = _invariance_bars(page)
    assert set(bars) >= {VIOLATION_COLOR, SAME_COLOR, CHANGED_COLOR}, sorted(bars)
    assert not any(bars[VIOLATION_COLOR])                    # causal: nothing red
    page.locator(".ap-causal input[type=checkbox]").click()
    wait_for(page, lambda: verdict(page) == "FAIL", what="verdict FAIL")
    bars = _invariance_bars(page)
    red, green, orange = bars[VIOLATION_COLOR], bars[SAME_COLOR], bars[CHANGED_COLOR]
    assert all(v > 0 for v in red[:L + 1]) and not any(red[L + 1:])
    assert not any(green[:L + 1]) and any(orange[L + 1:])


def test_export_hover_on_a_head_map_names_the_tokens(context, tmp_path):
    from _harness import figure_frame_point
    from dashboard.playground.export import export_html
    out = tmp_path / "words.html"
    export_html(dict(text="the cat sat on mats", num_heads=2, prefix=1, query=2), str(out))
    page = context.new_page()
    page.goto(out.as_uri())
    page.locator(".ap-head-heatmap").first.wait_for(state="visible")
    page.wait_for_timeout(300)
    page.mouse.move(*figure_frame_point(page, ".ap-head-1", 1, 3))      # key 1, query 3
    tip = page.locator(".bk-tooltip-content").first
    tip.wait_for(state="visible")
    text = " ".join(tip.inner_text().split())
    assert "3 (on)" in text and "1 (cat)" in text, text
