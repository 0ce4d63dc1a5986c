"""The live view rendered headless into a Bokeh Document, as a served session would hold it."""
from __future__ import annotations

import io
import os

import numpy as np
import panel as pn
import pytest
from bokeh.events import Tap
from bokeh.models import Span

from dashboard.app import TABS, build_app, serve_app
from harness import image_of, models_with_class, rendered
from harness import only_model_with_class as only
from dashboard.playground import AttentionPlayground
from dashboard.playground import PlaygroundView


def heads_in(doc) -> list:
    return sorted(models_with_class(doc, "ap-head-heatmap"),
                  key=lambda m: [c for c in m.css_classes if c.startswith("ap-head-") and
                                 c[8:].isdigit()][0])


def test_one_figure_per_head_and_the_grid_follows_num_heads():
    pg = AttentionPlayground(seq_len=6, num_heads=4)
    with rendered(pn.panel(pg)) as page:
        figs = heads_in(page.doc)
        assert len(figs) == 4
        pg.num_heads = 6
        after = heads_in(page.doc)
        assert len(after) == 6 and after[:4] == figs            # old figures kept, two added
        pg.num_heads = 2
        assert heads_in(page.doc) == figs[:2]
        for h, fig in enumerate(heads_in(page.doc)):
            np.testing.assert_array_equal(image_of(fig), pg.result.weights[h].numpy())


def test_new_weights_reach_the_existing_figures():
    pg = AttentionPlayground(seq_len=6)
    with rendered(pn.panel(pg)) as page:
        fig = heads_in(page.doc)[2]
        pg.seed = 5
        assert heads_in(page.doc)[2] is fig
        np.testing.assert_array_equal(image_of(fig), pg.result.weights[2].numpy())
        pg.seq_len = 9
        np.testing.assert_array_equal(image_of(fig), pg.result.weights[2].numpy())
        assert (fig.x_range.start, fig.x_range.end) == (-0.5, 8.5)
        assert page.events, "the changes were dispatched as document patches"


def test_a_query_change_moves_the_line_and_the_query_plot_without_recompute():
    pg = AttentionPlayground(seq_len=10, num_heads=3, query=2)
    with rendered(pn.panel(pg)) as page:
        n = pg.n_computes
        images = [image_of(f) for f in heads_in(page.doc)]
        page.clear()
        pg.query = 7
        assert pg.n_computes == n
        query_fig = only(page.doc, "ap-query-plot")
        assert query_fig.title.text.startswith("Query 7")
        np.testing.assert_array_equal(image_of(query_fig), pg.result.weights[:, 7, :].numpy())
        for fig, img in zip(heads_in(page.doc), images):
            assert image_of(fig) is img                           # head images not resent
            line = fig.select_one({"type": Span})
            assert line.location == 7
        assert 0 < page.patch_bytes() < 20_000


def test_the_step_by_step_view_follows_query_and_head():
    pg = AttentionPlayground(seq_len=8, num_heads=3)
    with rendered(pn.panel(pg)) as page:
        pg.param.update(query=4, view_head=2)
        weights = only(page.doc, "ap-step-4").renderers[0].data_source.data["top"]
        np.testing.assert_allclose(weights, pg.result.weights[2, 4].numpy(), rtol=1e-5, atol=1e-7)


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
        counts = [p.n_updates for p in view.head_plots + [view.query_plot]]
        pg.prefix = 6
        assert [p.n_updates for p in view.head_plots + [view.query_plot]] == counts
        span = view.invariance_plot.leaves[3].handles["glyph"]
        assert span.location == 6.5 and "0..6" in view.stats.object


@pytest.mark.parametrize("y, expected", [(3.2, 3), (-4.0, 0), (99.0, 9)])
def test_a_tap_on_a_head_map_selects_that_row_clamped(y, expected):
    pg = AttentionPlayground(seq_len=10)
    with rendered(pn.panel(pg)) as page:
        fig = heads_in(page.doc)[1]
        fig._trigger_event(Tap(fig, x=1.0, y=y))
        assert pg.query == expected


def test_a_tap_on_the_query_plot_selects_the_head_of_the_step_by_step_view():
    pg = AttentionPlayground(seq_len=10, num_heads=4)
    with rendered(pn.panel(pg)) as page:
        fig = only(page.doc, "ap-query-plot")
        fig._trigger_event(Tap(fig, x=2.0, y=2.1))
        assert pg.view_head == 2


def test_two_sessions_keep_independent_state():
    a, b = AttentionPlayground(seq_len=6), AttentionPlayground(seq_len=6)
    with rendered(pn.panel(a)) as page_a, rendered(pn.panel(b)) as page_b:
        fig_b = heads_in(page_b.doc)[0]
        before = image_of(fig_b).copy()
        a.causal = False
        a.query = 1
        assert b.causal and b.query == 5
        np.testing.assert_array_equal(image_of(fig_b), before)
        assert not np.array_equal(image_of(heads_in(page_a.doc)[0]), before)


def test_widgets_are_generated_from_the_parameters_with_hooks():
    pg = AttentionPlayground(seq_len=6)
    view = PlaygroundView(pg)
    widgets = view.widgets
    assert widgets["causal"].css_classes == ["ap-causal"]
    assert widgets["num_heads"].end == 16 and view.seq_len_slider.end == 1024
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


@pytest.mark.parametrize("typed, used", [(5000, 1024), (0, 1), (-3, 1)])
def test_a_typed_length_outside_the_bounds_is_clamped_and_said_on_the_page(typed, used):
    pg = AttentionPlayground(seq_len=16)
    view = PlaygroundView(pg)
    widget = view.widgets["seq_len"]
    widget.value = typed                            # what the editable slider sends when typed
    assert pg.seq_len == used and widget.value == used
    assert f"{typed} is outside 1..1024" in view.message.object and f"{used} is used" in view.message.object
    widget.value = 12                               # a fine value clears the message
    assert pg.seq_len == 12 and view.message.object == ""


def test_a_seed_outside_its_range_and_a_too_long_text_are_said_on_the_page():
    pg = AttentionPlayground(seq_len=8)
    view = PlaygroundView(pg)
    view.widgets["seed"].value = -5
    assert pg.seed == 0 and view.widgets["seed"].value == 0 and "-5 is outside" in view.message.object
    pg.text = " ".join(["w"] * 1100)
    assert pg.seq_len == 1024 and "1100 words: the first 1024 are used" in view.message.object
    assert view.widgets["seq_len"].disabled              # T follows the text
    pg.text = ""
    assert not view.widgets["seq_len"].disabled and view.message.object == ""
