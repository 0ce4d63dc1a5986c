"""A data change lays nothing out again (issue 9, "no layout recomputation on a data change").

In BokehJS any figure whose side panel (an axis, a title) changed size lays out the whole page
again (``LayoutDOMView.compute_layout`` bubbles up to the root): 40-90 ms at T=16, a fifth to a
third of what a seed or heads change cost a user. The y axes whose labels follow the values (the
step-by-step bands, step 5's output, the invariance chart, the query plot's "head N") keep their
width (``Frame.ylabel_chars``), and the heads figure keeps its frame for every H.

Counted in the page: the layouts computed from the root while the Playground answers seed, heads,
causal and query changes at T=16, and while the Leak detector measures six models one after the
other, each change answered before the next (the page consistent with its controls).
"""
from __future__ import annotations

import pytest

import _probe
from _harness import nudge_slider, open_app

pytestmark = pytest.mark.browser

# Counts every layout computed from a layout root (a page relayout), from the moment it is armed.
COUNT_ROOT_LAYOUTS_JS = r"""() => {
  const seen = new Set();
  let proto = null;
  for (const root of Bokeh.index.roots) {
    let p = Object.getPrototypeOf(root);
    while (p && !Object.prototype.hasOwnProperty.call(p, "compute_layout")) p = Object.getPrototypeOf(p);
    if (p && !seen.has(p)) { seen.add(p); proto = p; }
  }
  if (proto === null) return false;
  window.__apLayouts = [];
  if (!proto.__apCounted) {
    const orig = proto.compute_layout;
    proto.compute_layout = function (...args) {
      if (this.is_layout_root && window.__apLayouts)
        window.__apLayouts.push(this.model ? this.model.type : String(this));
      return orig.apply(this, args);
    };
    proto.__apCounted = true;
  }
  return true;
}"""


def _answered(page) -> None:
    _probe.settle(page, quiet_ms=400, timeout_ms=60_000)
    res = _probe.wait_consistent(page, timeout=10.0)
    assert res["problems"] == [], res["problems"]


def _type_seed(page, seed: int) -> None:
    box = page.locator(".ap-seed input").first
    box.focus()
    box.press("Control+a")
    box.type(str(seed))
    box.press("Enter")


def test_seed_heads_causal_and_query_changes_lay_out_nothing_again(context, app_server):
    page = context.new_page()
    watch = open_app(page, app_server.url)
    _probe.install(page)
    _answered(page)
    assert page.evaluate("() => window.__ap.controls().T") == 16
    assert page.evaluate(COUNT_ROOT_LAYOUTS_JS), "no Bokeh layout root on the page"

    done = []
    for seed in (1, 2, 3, 4):               # new weights: every figure's values change
        _type_seed(page, seed)
        _answered(page)
        done.append(f"seed {seed}")
    # H 4 -> 5 -> 3 -> 4 (one row of maps up to 5 heads; from 6 on the figure is two rows high:
    # that one step lays the page out, see dashboard.playground.state.heads_box)
    for key in ("ArrowRight", "ArrowLeft", "ArrowLeft", "ArrowRight"):
        nudge_slider(page, ".ap-num-heads", key)
        _answered(page)
        done.append(f"heads {key}")
    page.locator(".ap-causal input[type=checkbox]").click()
    _answered(page)
    nudge_slider(page, ".ap-query", "ArrowLeft")
    _answered(page)
    done += ["causal", "query"]

    layouts = page.evaluate("() => window.__apLayouts")
    assert layouts == [], (f"{len(layouts)} page layouts during {len(done)} data changes "
                           f"({', '.join(done)}): {layouts}")
    assert watch.errors() == []


def test_leak_detector_model_changes_lay_out_nothing_again(context, app_server):
    """Each ArrowDown in the model list measures another model: its map and sweep are written into
    the figures on the page (``common.figures.copy_drawing``; new figures in the panes laid the
    page out again) and the sweep's y labels keep their width (``steady_yaxis``)."""
    page = context.new_page()
    watch = open_app(page, app_server.url)
    page.locator(".bk-tab", has_text="Leak detector").click()
    page.locator(".ap-leak-map").wait_for(state="visible")
    _probe.install(page)
    _probe.set_relations(page, _probe.leak_relation_names())
    _answered(page)
    assert page.evaluate(COUNT_ROOT_LAYOUTS_JS), "no Bokeh layout root on the page"
    select = page.locator(".ap-leak-model select").first
    shown = []
    for _ in range(6):
        select.focus()
        select.press("ArrowDown")
        _answered(page)
        shown.append(page.evaluate("() => window.__ap.controls().model"))
    assert len(set(shown)) == 6, shown
    layouts = page.evaluate("() => window.__apLayouts")
    assert layouts == [], f"{len(layouts)} page layouts over 6 models ({', '.join(shown)}): {layouts}"
    assert watch.errors() == []
