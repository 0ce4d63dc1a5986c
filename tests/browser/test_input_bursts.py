"""Fast input never breaks the page (issue 9, items 1, 3 and 4): after a keyboard burst on the
heads slider, fast clicks on a slider's track and fast arrow keys through the Leak detector's
model list, the page ends on the controls' final values, every figure shows that state, and
neither the page nor the server reported an error.

"Shows that state" is checked two ways:

- the state-id contract (``tests/browser/_probe.py``): the ``.ap-state`` id equals the id the
  controls imply, and every live figure carries the tag ``ap-state:<that id>`` (or the part of
  it the figure draws);
- what a user sees, without the contract: as many head maps as the heads control says,
  the query plot titled with the selected query, the Leak detector's card, map title, verdict and
  sentence all for the selected model.

Input timings are fixed sequences (no randomness): each run presses the same keys at the same
pace.
"""
from __future__ import annotations

import re

import pytest

import _probe
from _harness import figure_title, open_app
from attention.zoo import ZOO

pytestmark = pytest.mark.browser

# 40 presses within 2 s after Home, ArrowRight x3 (H=4): net +4, so H ends at 8
BURST = ("RRLRRLLRLR" "RLRRLLRRLR" "LRRLRLLRRL" "RLLRRLRLRL")
BURST_GAP_MS = 50
SETTLE_MS = 120_000
TRACK_CLICKS = [3, 12, 5, 10, 2, 14, 9]        # query positions at T=16, clicked 150 ms apart
TRACK_GAP_MS = 150
LIST_GAPS_MS = [100, 300, 150, 250, 120, 280, 200, 180]   # between ArrowDown presses in the list


def _open(context, server):
    page = context.new_page()
    watch = open_app(page, server.url)
    _probe.install(page)
    return page, watch, len(server.log())


def _query_title_ok(page, q: int) -> bool:
    return re.match(rf"Query (tok_)?{q}\b", figure_title(page, ".ap-query-plot")) is not None


def _final_problems(page, watch, server, log_from: int, extra=()) -> list[str]:
    """Everything wrong once the page has settled; [] when it is consistent and clean."""
    # The page must come to rest on its controls' state; how fast is the benchmark's business
    # (benchmarks/bench_browser.py), so the bound is generous for a loaded 2-core machine.
    settled = _probe.settle(page, quiet_ms=500, timeout_ms=SETTLE_MS)
    res = _probe.wait_consistent(page, timeout=5.0 if settled else 0.0)
    problems = [] if settled else [
        f"the page did not settle within {SETTLE_MS // 1000} s (document changes or a spinner kept "
        "coming: the "
        "inputs are worked off one by one instead of the latest one)"]
    problems += [p for check in extra for p in check()]
    problems += res["problems"]
    problems += [f"page: {e}" for e in watch.errors()]
    problems += [f"server: {line}" for line in _probe.server_problems(server.log()[log_from:])]
    if problems:
        snap = res["snapshot"]
        problems.append(f"(controls {snap['controls']}, state ids {snap['states']}, "
                        f"{snap['heads']} head maps)")
    return problems


def test_heads_keyboard_burst_ends_on_the_final_value_everywhere(context, app_server):
    page, watch, log_from = _open(context, app_server)
    handle = page.locator(".ap-num-heads .noUi-handle").first
    handle.focus()
    handle.press("Home")
    for _ in range(3):
        handle.press("ArrowRight")
    H = 4
    for key in BURST:
        page.keyboard.press("ArrowRight" if key == "R" else "ArrowLeft")
        H += 1 if key == "R" else -1
        page.wait_for_timeout(BURST_GAP_MS)

    def user_view():
        out = []
        shown_h = page.evaluate("() => window.__ap.controls().H")
        if shown_h != H:
            out.append(f"the heads slider shows H={shown_h} after keys that lead to H={H} "
                       "(key presses lost, or the server moved the slider back)")
        if not _query_title_ok(page, page.evaluate("() => window.__ap.controls().q")):
            out.append(f"query plot title {figure_title(page, '.ap-query-plot')!r} is not the "
                       "selected query")
        return out

    problems = _final_problems(page, watch, app_server, log_from, extra=[user_view])
    assert problems == [], f"after the heads burst (keys lead to H={H}):\n" + "\n".join(problems)


def test_fast_clicks_on_a_slider_track_keep_the_last_one(context, app_server):
    page, watch, log_from = _open(context, app_server)
    # noUiSlider ignores presses for 300 ms after a track click; the page's script lifts that
    assert page.evaluate("() => window.__apSliderTaps === true"), "common.panes.SLIDER_TAPS_JS missing (LiveView.page_scripts)"
    base = page.locator(".ap-query .noUi-base").first
    base.scroll_into_view_if_needed()
    box = base.bounding_box()
    T = page.evaluate("() => window.__ap.controls().T")
    y = box["y"] + box["height"] / 2
    for q in TRACK_CLICKS:
        page.mouse.click(box["x"] + box["width"] * q / (T - 1), y)
        page.wait_for_timeout(TRACK_GAP_MS)
    last = TRACK_CLICKS[-1]
    assert page.evaluate("() => window.__ap.controls().q") == last, "the slider missed a click"

    def user_view():
        if _query_title_ok(page, last):
            return []
        return [f"the query plot shows {figure_title(page, '.ap-query-plot')!r} after the last "
                f"click on query {last}: a click was dropped"]

    problems = _final_problems(page, watch, app_server, log_from, extra=[user_view])
    assert problems == [], f"after {len(TRACK_CLICKS)} clicks {TRACK_GAP_MS} ms apart:\n" + \
        "\n".join(problems)


def _leak_map_title(page) -> str:
    from playwright.sync_api import Error as PlaywrightError
    try:
        return figure_title(page, ".ap-leak-map")
    except PlaywrightError:
        return ""


def test_fast_arrow_keys_through_the_model_list_end_on_the_ninth_model(context, app_server):
    from attention.verify import check_entry
    from dashboard.leaks.plots import first_leak_sentence, map_title
    from dashboard.leaks import LeakDetector
    from dashboard.leaks.state import BATCH, DIM

    page, watch, log_from = _open(context, app_server)
    page.locator(".bk-tab", has_text="Leak detector").click()
    page.locator(".ap-leak-map").wait_for(state="visible")
    _probe.install(page)
    _probe.set_relations(page, _probe.leak_relation_names())
    _probe.settle(page, quiet_ms=500)
    select = page.locator(".ap-leak-model select").first
    options = select.evaluate("s => [...s.options].map(o => o.value)")
    start = select.evaluate("s => s.selectedIndex")
    assert start + len(LIST_GAPS_MS) < len(options)
    want = options[start + len(LIST_GAPS_MS)]
    select.focus()
    for gap in LIST_GAPS_MS:
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(gap)
    assert select.evaluate("s => s.value") == want, "the list itself did not move 8 steps"

    seq_len = LeakDetector.param.seq_len.default
    report = check_entry(want, seq_len=seq_len, dim=DIM, batch=BATCH, seed=0)   # what the page must show

    def user_view():
        out = []
        shown_model = page.evaluate("() => window.__ap.controls().model")
        if shown_model != want:
            out.append(f"the select's model value is {shown_model!r}, the list shows {want!r}")
        card = page.locator(".ap-leak-description .ap-leak-card").inner_text()
        if ZOO[want].description[:40] not in card:
            out.append(f"the card describes another model: {card[:80]!r}")
        title = _leak_map_title(page)
        if title != map_title(report):
            out.append(f"map title {title!r}, {want} has {map_title(report)!r}")
        verdict = page.locator(".ap-leak-verdict .ap-leak-badge").get_attribute("data-verdict")
        if verdict != ("PASS" if report.passed else "FAIL"):
            out.append(f"verdict {verdict} for {want} ({len(report.leaks)} leaks)")
        sentence = page.locator(".ap-leak-first .ap-leak-sentence").inner_text().strip()
        if sentence != first_leak_sentence(report).strip():
            out.append(f"the sentence {sentence!r} is not {want}'s")
        return out

    problems = _final_problems(page, watch, app_server, log_from, extra=[user_view])
    assert problems == [], f"after ArrowDown x{len(LIST_GAPS_MS)} (expected {want}):\n" + \
        "\n".join(problems)


def test_the_probe_flags_a_figure_whose_part_of_the_state_is_stale(context, app_server):
    """The contract is what the tests above lean on: a figure that carries only part of the state
    id (the mask: T, causal, text) passes while those pairs agree and fails as soon as one is
    stale, names a key the state lacks, or is empty."""
    page, watch, log_from = _open(context, app_server)
    _probe.settle(page, quiet_ms=500)
    assert _probe.wait_consistent(page)["problems"] == []
    set_mask_tag = """tag => {
        const v = [...Bokeh.index.all_views()].find(v => v.frame !== undefined
                                                  && v.el.classList.contains("ap-mask"));
        v.model.tags = [tag];
    }"""
    for tag, ok in (("ap-state:T=16 causal=1 text=-", True), ("ap-state:T=16 causal=0 text=-", False),
                    ("ap-state:T=16 causal=1 text=- zoom=2", False), ("ap-state:", False)):
        page.evaluate(set_mask_tag, tag)
        problems = _probe.check(page)["problems"]
        assert (problems == []) is ok, (tag, problems)
        if not ok:
            assert any("ap-mask" in p for p in problems), problems
