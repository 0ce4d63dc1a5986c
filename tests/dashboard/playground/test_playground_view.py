"""The live view rendered headless into a Bokeh Document, as a served session would hold it."""
from __future__ import annotations

import io
import os

import numpy as np
import panel as pn
import pytest
import torch
from bokeh.events import Tap

from attention import make_causal_mask
from dashboard.app import TABS, build_app, serve_app
from harness import image_of, models_with_class, rendered
from harness import only_model_with_class as only
from dashboard.playground.state import single_token_steps
from dashboard.playground import AttentionPlayground
from dashboard.playground import PlaygroundView, plots


def heads_fig(doc):
    """The one figure holding every head's map."""
    return only(doc, "ap-heads-map")


def head_map(fig, pg, head: int) -> np.ndarray:
    """Head ``head``'s map as drawn in the heads figure (row ``head`` of its image glyph), checked
    to sit at its cell of the mosaic."""
    g = plots.HeadGrid.of(pg.result.seq_len, pg.result.num_heads)
    data = fig.renderers[0].data_source.data
    x0, y0 = g.origin(head)
    assert (data["x"][head], data["y"][head]) == (x0 - 0.5, y0 - 0.5)
    assert (data["dw"][head], data["dh"][head]) == (g.cell, g.cell)
    return np.asarray(data["image"][head])[:pg.seq_len, :pg.seq_len]


def labels_of(fig) -> list[str]:
    return [str(t) for t in [r for r in fig.renderers if type(r.glyph).__name__ == "Text"][0].data_source.data["Label"]]


def test_one_figure_holds_every_head_and_follows_num_heads():
    pg = AttentionPlayground(seq_len=6, num_heads=4)
    with rendered(pn.panel(pg)) as page:
        fig = heads_fig(page.doc)
        height = fig.frame_height
        assert labels_of(fig) == [f"head {h}" for h in range(4)]
        pg.num_heads = 3
        assert heads_fig(page.doc) is fig and fig.frame_height == height
        assert labels_of(fig) == ["head 0", "head 1", "head 2"]
        pg.num_heads = 6                          # a second row of maps: the same figure, taller
        assert heads_fig(page.doc) is fig and fig.frame_height == 2 * height
        assert labels_of(fig) == [f"head {h}" for h in range(6)]
        for h in range(6):
            np.testing.assert_array_equal(head_map(fig, pg, h), pg.result.weights[h].numpy())
        assert "ap-heads:H=6 T=6" in " ".join(fig.tags)


def test_every_head_map_sits_in_its_cell_with_gaps_between():
    pg = AttentionPlayground(seq_len=5, num_heads=6)
    with rendered(pn.panel(pg)) as page:
        fig = heads_fig(page.doc)
        g = plots.HeadGrid.of(5, 6)
        data = fig.renderers[0].data_source.data
        assert len(data["image"]) == 6                       # one image per head, nothing for cells 6..7
        assert g.gap >= 1 and g.origin(1) == (g.stride, 0) and g.origin(4) == (0, g.stride)
        for h in range(6):
            np.testing.assert_array_equal(head_map(fig, pg, h), pg.result.weights[h].numpy())
        assert g.locate(g.cell + (g.gap - 1) / 2, 2) is None     # in a gap: no head
        assert g.locate(g.origin(4)[0] + 1, g.origin(4)[1] + 3) == (4, 3, 1)


def test_new_weights_reach_the_existing_figure():
    pg = AttentionPlayground(seq_len=6)
    with rendered(pn.panel(pg)) as page:
        fig = heads_fig(page.doc)
        pg.seed = 5
        assert heads_fig(page.doc) is fig
        np.testing.assert_array_equal(head_map(fig, pg, 2), pg.result.weights[2].numpy())
        pg.seq_len = 9
        np.testing.assert_array_equal(head_map(fig, pg, 2), pg.result.weights[2].numpy())
        g = plots.HeadGrid.of(9, pg.num_heads)
        assert (fig.x_range.start, fig.x_range.end) == pytest.approx(g.limits()[0])
        assert fig.x_range.end >= g.width - 0.5
        assert page.events, "the changes were dispatched as document patches"


def test_a_heads_step_changes_no_figure_size_so_the_page_is_not_laid_out_again():
    """A figure whose size changes makes the browser lay out the whole page and repaint every
    figure (~45% of a heads step at T=256): the heads figure has two frame sizes, one row of maps
    up to 5 heads and two rows from 6 on, the maps arranged to fit; the query plot keeps one size;
    the whole mosaic stays in view."""
    pg = AttentionPlayground(seq_len=12, num_heads=4)
    sizes = {}
    with rendered(pn.panel(pg)) as page:
        for H in (4, 5, 6, 8, 9, 16, 1, 3, 12, 2):
            pg.num_heads = H
            heads, query = heads_fig(page.doc), only(page.doc, "ap-query-plot")
            sizes.setdefault(H <= plots.HEADS_ONE_ROW, set()).add(
                ((heads.frame_width, heads.frame_height), (query.frame_width, query.frame_height)))
            g = plots.HeadGrid.of(12, H)
            assert heads.x_range.start <= -0.5 and heads.x_range.end >= g.width - 0.5, H
            y = sorted((heads.y_range.start, heads.y_range.end))       # drawn top-down: inverted
            assert y[0] <= -0.5 - g.gap and y[1] >= g.height - 0.5, H
            assert len(heads.renderers[0].data_source.data["image"]) == H
    assert {k: len(v) for k, v in sizes.items()} == {True: 1, False: 1}, sizes
    (one_row,), (more,) = sizes[True], sizes[False]
    assert one_row[0] == (706, 182) and more[0] == (706, 364) and one_row[1] == more[1]


@pytest.mark.parametrize("H", range(1, 9))
def test_the_heads_maps_fill_their_figure_without_an_empty_row(H):
    """At the default 4 heads the figure was two rows high with the maps in the first: half of the
    page's main figure empty and its key axis far below the maps. Up to 8 heads the mosaic, with
    the head labels above it, now takes the frame's height (all of it but 37 px at 5 heads, whose
    one row of maps is 123 px high)."""
    g = plots.HeadGrid.of(16, H)
    fw, fh = g.frame_size()
    (x0, x1), (y0, y1) = g.limits()
    px_per_unit = fh / (y1 - y0)
    assert (g.height + g.gap) * px_per_unit >= fh - 40, (H, g.frame_size())
    assert g.nrows == (1 if H <= 5 else 2) and g.cell_px == (123 if H == 5 else 160)


def test_long_sequences_are_max_pooled_in_one_image_and_the_title_says_so():
    pg = AttentionPlayground(seq_len=1024, num_heads=16)
    with rendered(pn.panel(pg)) as page:
        fig = heads_fig(page.doc)
        g = plots.HeadGrid.of(1024, 16)
        assert g.f > 1 and f"max of {g.f}×{g.f}" in fig.title.text
        from dashboard.common.frames import MAX_PIXELS, pooled
        assert sum(np.asarray(a).size for a in fig.renderers[0].data_source.data["image"]) <= MAX_PIXELS
        cell = np.asarray(fig.renderers[0].data_source.data["image"][7])
        assert pg.result.weights is None                 # pooled where computed, never held whole
        with torch.no_grad():
            w = pg.model(pg.result.x, mask=make_causal_mask(1024, dtype=torch.bool))[1][7].numpy()
        np.testing.assert_allclose(cell, pooled(w, g.f), rtol=1e-5, atol=1e-7)


def test_a_query_change_moves_the_line_and_the_query_plot_without_recompute():
    pg = AttentionPlayground(seq_len=10, num_heads=3, query=2)
    with rendered(pn.panel(pg)) as page:
        n = pg.n_computes
        fig = heads_fig(page.doc)
        image = image_of(fig)
        page.clear()
        pg.query = 7
        assert pg.n_computes == n
        query_fig = only(page.doc, "ap-query-plot")
        assert query_fig.title.text.startswith("Query 7")
        np.testing.assert_array_equal(image_of(query_fig), pg.result.weights[:, 7, :].numpy())
        assert image_of(fig) is image                            # head maps not resent
        lines = [r for r in fig.renderers if type(r.glyph).__name__ == "Segment"][0].data_source.data
        g = plots.HeadGrid.of(10, 3)
        np.testing.assert_array_equal(lines["y0"], [g.origin(h)[1] + 7 for h in range(3)])
        assert 0 < page.patch_bytes() < 20_000


def test_the_step_by_step_view_follows_query_and_head():
    pg = AttentionPlayground(seq_len=8, num_heads=3)
    with rendered(pn.panel(pg)) as page:
        pg.param.update(query=4, view_head=2)
        data = only(page.doc, "ap-steps").renderers[0].data_source.data
        band = np.asarray([str(s).startswith("4 ") for s in data["step"]])
        np.testing.assert_allclose(np.asarray(data["value"])[band], pg.result.weights[2, 4].numpy(),
                                   rtol=1e-5, atol=1e-7)
        assert only(page.doc, "ap-steps").title.text == "Query 4 in head 2, step by step"
        np.testing.assert_allclose(only(page.doc, "ap-step-output").renderers[0].data_source.data["top"],
                                   single_token_steps(pg.result, 2, 4).output.numpy(), rtol=1e-6)


def test_turning_the_causal_mask_off_turns_pass_into_fail():
    pg = AttentionPlayground(seq_len=8)
    view = PlaygroundView(pg)
    with rendered(view.layout):
        assert 'data-verdict="PASS"' in view.verdict.object
        pg.causal = False
        assert 'data-verdict="FAIL"' in view.verdict.object
        assert view.mask_plot.figure.title.text.startswith("No mask")
        pg.causal = True
        assert 'data-verdict="PASS"' in view.verdict.object


def test_moving_the_prefix_updates_only_the_invariance_views():
    pg = AttentionPlayground(seq_len=10, prefix=2)
    view = PlaygroundView(pg)
    with rendered(view.layout):
        counts = [p.n_updates for p in (view.heads_plot, view.query_plot)]
        pg.prefix = 6
        assert [p.n_updates for p in (view.heads_plot, view.query_plot)] == counts
        span = view.invariance_plot.leaves[3].handles["glyph"]
        assert span.location == 6.5 and "0..6" in view.stats.object


@pytest.mark.parametrize("head, y, expected", [(1, 3.2, 3), (0, 9.4, 9), (5, 6.0, 6), (2, -0.4, 0)])
def test_a_tap_on_a_head_map_selects_that_row(head, y, expected):
    pg = AttentionPlayground(seq_len=10, num_heads=6, query=1)
    with rendered(pn.panel(pg)) as page:
        fig = heads_fig(page.doc)
        x0, y0 = plots.HeadGrid.of(10, 6).origin(head)
        fig._trigger_event(Tap(fig, x=x0 + 2.0, y=y0 + y))
        assert pg.query == expected


def test_a_tap_between_maps_or_on_a_blank_cell_selects_nothing():
    pg = AttentionPlayground(seq_len=10, num_heads=6, query=1)
    with rendered(pn.panel(pg)) as page:
        fig = heads_fig(page.doc)
        g = plots.HeadGrid.of(10, 6)
        fig._trigger_event(Tap(fig, x=g.cell + (g.gap - 1) / 2, y=3.0))  # the gap after head 0
        fig._trigger_event(Tap(fig, x=g.origin(7)[0] + 2, y=g.stride + 3))   # head 7 does not exist
        assert pg.query == 1


def test_a_tap_on_the_query_plot_selects_the_head_of_the_step_by_step_view():
    pg = AttentionPlayground(seq_len=10, num_heads=4)
    with rendered(pn.panel(pg)) as page:
        fig = only(page.doc, "ap-query-plot")
        fig._trigger_event(Tap(fig, x=2.0, y=2.1))
        assert pg.view_head == 2


def test_two_sessions_keep_independent_state():
    a, b = AttentionPlayground(seq_len=6), AttentionPlayground(seq_len=6)
    with rendered(pn.panel(a)) as page_a, rendered(pn.panel(b)) as page_b:
        fig_b = heads_fig(page_b.doc)
        before = image_of(fig_b).copy()
        a.causal = False
        a.query = 1
        assert b.causal and b.query == 5
        np.testing.assert_array_equal(image_of(fig_b), before)
        assert not np.array_equal(image_of(heads_fig(page_a.doc)), before, equal_nan=True)


def test_widgets_are_generated_from_the_parameters_with_hooks():
    pg = AttentionPlayground(seq_len=6)
    view = PlaygroundView(pg)
    widgets = view.widgets
    assert widgets["causal"].css_classes == ["ap-causal"]
    assert widgets["num_heads"].end == 16 and view.seq_len_slider.end == 4096
    assert widgets["seq_len"].end is None           # typed values reach the server, which clamps and says so
    assert view.seq_len_slider.value == widgets["seq_len"].value == 6
    assert widgets["query"].end == 5
    pg.seq_len = 12
    assert widgets["query"].end == 11 and widgets["prefix"].end == 11
    pg.text = "a b c"
    assert widgets["seq_len"].disabled and view.seq_len_slider.disabled and widgets["query"].end == 2
    tips = [w.value for w in view.controls.select(pn.widgets.TooltipIcon)]
    assert any("attention heads" in t for t in tips) and any("Block every key" in t for t in tips)
    assert "Seeds the untrained" in widgets["seed"].description


def test_the_download_button_builds_the_export_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pg = AttentionPlayground(seq_len=5, num_heads=2)
    view = PlaygroundView(pg)
    buf = view._download_html()
    assert isinstance(buf, io.BytesIO)
    page = buf.getvalue().decode("utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and "ap-head-heatmap" in page
    assert os.listdir(tmp_path) == []


def test_the_app_is_tabs_with_the_playground_first():
    tabs = build_app()
    assert isinstance(tabs, pn.Tabs) and tabs._names[0] == TABS[0][0] == "Playground"
    with rendered(tabs[0]) as page:                # each tab builds its view when first shown
        assert models_with_class(page.doc, "ap-playground")
    template = serve_app()
    assert isinstance(template, pn.template.BaseTemplate)


@pytest.mark.parametrize("typed, used", [(5000, 4096), (0, 1), (-3, 1)])
def test_a_typed_length_outside_the_bounds_is_clamped_and_said_on_the_page(typed, used):
    pg = AttentionPlayground(seq_len=16)
    view = PlaygroundView(pg)
    widget = view.widgets["seq_len"]
    widget.value = typed                            # what the editable slider sends when typed
    assert pg.seq_len == used and widget.value == used
    assert f"{typed} is outside 1..4096" in view.message.object and f"{used} is used" in view.message.object
    widget.value = 12                               # a fine value clears the message
    assert pg.seq_len == 12 and view.message.object == ""


def test_a_seed_outside_its_range_and_a_too_long_text_are_said_on_the_page():
    pg = AttentionPlayground(seq_len=8)
    view = PlaygroundView(pg)
    view.widgets["seed"].value = -5
    assert pg.seed == 0 and view.widgets["seed"].value == 0 and "-5 is outside" in view.message.object
    pg.text = " ".join(["w"] * 4200)
    assert pg.seq_len == 4096 and "4200 words: the first 4096 are used" in view.message.object
    assert view.widgets["seq_len"].disabled              # T follows the text
    pg.text = ""
    assert not view.widgets["seq_len"].disabled and view.message.object == ""


def test_the_view_pools_the_maps_for_the_browsers_pixel_ratio(monkeypatch):
    """A page's ``devicePixelRatio`` (Panel's ``BrowserInfo``, known after the page loaded)
    reaches the state: a HiDPI screen gets every weight of a T=256 map as a pixel, the other screens
    the 2 x 2 max (the map is drawn 160 px a side)."""
    from panel.io.browser import BrowserInfo

    info = BrowserInfo()
    monkeypatch.setattr(type(pn.state), "browser_info", property(lambda self: info))
    pg = AttentionPlayground(seq_len=256, num_heads=8)
    view = PlaygroundView(pg)
    with rendered(view.layout) as page:
        heads = only(page.doc, "ap-heads-map")
        assert pg.result.maps.factor == 2 and heads.renderers[0].data_source.data["image"][0].shape == (128, 128)
        info.device_pixel_ratio = 2.0
        assert pg.pixel_ratio == 2.0 and pg.result.maps.factor == 1
        assert heads.renderers[0].data_source.data["image"][0].shape == (256, 256)
        assert "max of" not in heads.title.text
