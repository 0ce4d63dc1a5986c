"""The "Model heads" tab headless with the tiny models: state, caching, input validation, and the
rendered figures (MiniLM and served models: test_model_heads_hf.py)."""
from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import pytest
import torch
from bokeh.events import Tap

import dashboard.heads.state as heads_state
import dashboard.heads.view as heads_view
from attention.head_metrics import preset_induction_input
from attention.models import TinyTransformer, load_induction_model
from dashboard.heads import plots as heads_plots
from dashboard.app import TABS
from harness import image_of, models_with_class, rendered
from harness import only_model_with_class as only
from dashboard.heads import (TrainedHeads, TrainedHeadsView, model_metrics, parse_token_ids,
                                  query_reading, random_model)
from dashboard.heads.plots import Mosaic
from dashboard.heads.view import cell_px


def cell_image(page, th, l: int, h: int) -> np.ndarray:
    """Head (l, h)'s map as drawn in the overview figure (one figure for every head)."""
    r = th.result
    mosaic = Mosaic.of(r.num_layers, r.num_heads, r.seq_len, cell_px(r.num_heads))
    return mosaic.cell(image_of(only(page.doc, "ap-th-overview")), l, h)


def outlined(page, th) -> tuple[int, int]:
    """The (layer, head) the overview's selection outline surrounds."""
    r = th.result
    m = Mosaic.of(r.num_layers, r.num_heads, r.seq_len, cell_px(r.num_heads))
    data = only(page.doc, "ap-th-overview").renderers[1].data_source.data
    return m.cell_at(float(data["left"][0]) + 1, float(data["bottom"][0]) + 1)


def reference_weights(model: TinyTransformer, tokens) -> np.ndarray:
    """(L, H, T, T) from a forward pass of our own, for comparison."""
    with torch.no_grad():
        _, weights = model(torch.tensor(tokens)[None])
    return torch.stack([w[0] for w in weights]).numpy()


def flagged(th: TrainedHeads, flag: str) -> tuple[int, int]:
    (m,) = [m for m in th.metrics if getattr(m, flag)]
    return m.layer, m.head


@pytest.fixture
def count_forwards(monkeypatch):
    """Counts every TinyTransformer forward pass."""
    calls = []
    original = TinyTransformer.forward

    def counting(self, *args, **kw):
        calls.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(TinyTransformer, "forward", counting)
    return calls


# -- state --------------------------------------------------------------------------------------
def test_the_default_is_the_trained_model_on_the_preset_input():
    th = TrainedHeads()
    preset = tuple(preset_induction_input(64, 32, seed=0)[0].tolist())
    assert th.model == "trained" and th.input_kind == "preset"
    assert th.result.tokens == preset and th.result.period == 16
    np.testing.assert_allclose(th.result.weights, reference_weights(load_induction_model(), preset),
                               rtol=1e-5, atol=1e-6)


def test_the_metrics_flag_a_previous_token_head_in_layer_0_and_an_induction_head_in_layer_1():
    th = TrainedHeads()
    assert flagged(th, "is_previous_token_head")[0] == 0
    assert flagged(th, "is_induction_head")[0] == 1
    prev = next(m for m in th.metrics if m.is_previous_token_head)
    ind = next(m for m in th.metrics if m.is_induction_head)
    assert prev.previous_token >= 0.7 and ind.induction >= 0.6


def test_the_tab_opens_on_the_flagged_induction_head_in_the_second_copy():
    th = TrainedHeads()
    assert (th.layer, th.head) == flagged(th, "is_induction_head")
    assert th.result.period <= th.query < th.result.seq_len


def test_selecting_a_layer_head_or_query_reruns_nothing(count_forwards):
    th = TrainedHeads()
    n, calls = th.n_forward, len(count_forwards)
    th.param.update(layer=0, head=2)
    th.head = 1
    th.query = 5
    assert th.n_forward == n and len(count_forwards) == calls


def test_the_forward_pass_runs_once_per_model_and_input_then_comes_from_the_cache(count_forwards):
    th = TrainedHeads()
    n = th.n_forward
    th.seed = 3
    assert th.n_forward == n + 1
    assert th.result.tokens == tuple(preset_induction_input(64, 32, seed=3)[0].tolist())
    th.model = "random"
    assert th.n_forward == n + 2
    calls = len(count_forwards)
    th.model = "trained"
    th.seed = 0
    assert th.n_forward == n + 2 and len(count_forwards) == calls   # both cached


def test_head_metrics_are_computed_once_per_model(monkeypatch):
    runs = []
    real = heads_state.head_metrics
    monkeypatch.setattr(heads_state, "head_metrics", lambda model: runs.append(1) or real(model))
    model_metrics.cache_clear()
    try:
        th = TrainedHeads()
        for kind in ("random", "trained", "random", "trained"):
            th.model = kind
        th.seed = 4                                          # a new input: metrics do not depend on it
        assert len(runs) == 2
        th.random_seed = 1
        th.model = "random"
        assert len(runs) == 3
    finally:
        model_metrics.cache_clear()


def test_the_random_model_has_the_trained_architecture_and_no_flagged_heads():
    th = TrainedHeads(model="random")
    assert random_model(0).config == load_induction_model().config
    assert not any(m.is_previous_token_head or m.is_induction_head for m in th.metrics)
    np.testing.assert_allclose(th.result.weights, reference_weights(random_model(0), th.result.tokens),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(th.result.weights, TrainedHeads().result.weights, atol=1e-2)
    assert np.abs(th.result.weights.sum(-1) - 1).max() < 1e-5          # rows are still distributions


def test_random_weights_follow_their_seed_and_leave_the_global_rng_alone():
    before = torch.get_rng_state()
    random_model.cache_clear()
    try:
        a = random_model(7).state_dict()
        random_model.cache_clear()
        b = random_model(7).state_dict()
        c = random_model(8).state_dict()
    finally:
        random_model.cache_clear()
    assert torch.equal(torch.get_rng_state(), before)
    w = "blocks.0.attn.q_proj.weight"
    assert torch.equal(a[w], b[w]) and not torch.equal(a[w], c[w])
    assert abs(float(a[w].std()) - heads_state.RANDOM_STD) < 0.02


def test_query_reading_finds_the_induction_target_and_the_previous_token():
    th = TrainedHeads()
    r, p = th.result, th.result.period
    li, hi = flagged(th, "is_induction_head")
    for q in range(p, r.seq_len):                    # every query of the second copy
        rd = query_reading(r, li, hi, q)
        assert (rd["key"], rd["relation"], rd["occurrence"]) == (q - p + 1, "after-previous-occurrence", q - p)
    lp, hp = flagged(th, "is_previous_token_head")
    previous = [query_reading(r, lp, hp, q)["relation"] == "previous" for q in range(1, r.seq_len)]
    assert np.mean(previous) >= 0.7


# -- custom input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, ids", [("1 2 3", (1, 2, 3)), ("5,9, 2 ;7", (5, 9, 2, 7)), (" 63 ", (63,)),
                                       (" ".join(["0"] * 32), (0,) * 32)])
def test_token_ids_parse_from_spaces_or_commas(text, ids):
    assert parse_token_ids(text, 64, 32) == ids


@pytest.mark.parametrize("text, match", [
    ("", r"Type 1 to 32 token ids"),
    ("   ", r"Type 1 to 32 token ids"),
    ("1 2 x", r"'x' is not a token id: expected whole numbers 0\.\.63"),
    ("1.5", r"'1\.5' is not a token id"),
    ("64", r"token id 64 is out of range: the model knows ids 0\.\.63"),
    ("3 -1", r"token id -1 is out of range"),
    (" ".join(["1"] * 33), r"33 token ids is too many: the model reads at most 32"),
])
def test_bad_token_ids_are_a_value_error_with_a_sentence(text, match):
    with pytest.raises(ValueError, match=match):
        parse_token_ids(text, 64, 32)


def test_switching_to_custom_input_starts_from_the_tokens_shown():
    th = TrainedHeads()
    n = th.n_forward
    th.input_kind = "custom"
    assert parse_token_ids(th.custom_tokens, 64, 32) == th.result.tokens
    assert th.result.period is None and th.input_error == "" and th.n_forward == n + 1


def test_bad_custom_input_keeps_the_last_result_and_says_why():
    th = TrainedHeads(input_kind="custom", custom_tokens="5 9 2 7 5 9 2")
    view = TrainedHeadsView(th)
    good, n = th.result, th.n_forward
    th.custom_tokens = "5 9 banana"
    assert th.result is good and "'banana' is not a token id" in th.input_error
    assert th.n_forward == n
    assert "ap-th-error" in view.message.object and "banana" in view.message.object
    th.custom_tokens = "1 2 3"
    assert th.input_error == "" and th.result.tokens == (1, 2, 3)
    assert "ap-th-error" not in view.message.object


def test_a_shorter_input_clamps_the_query_and_resizes_the_maps():
    th = TrainedHeads()
    view = TrainedHeadsView(th)
    with rendered(view.layout) as page:
        th.param.update(input_kind="custom", custom_tokens="4 8 15 16 23")
        assert th.query == 4 and th.param.query.bounds == (0, 4)
        main = only(page.doc, "ap-th-main")
        np.testing.assert_array_equal(image_of(main), th.result.weights[th.layer, th.head])
        assert (main.x_range.start, main.x_range.end) == (-0.5, 4.5)
        assert list(main.xaxis[0].major_label_overrides.values()) == ["0:4", "1:8", "2:15", "3:16", "4:23"]
        assert cell_image(page, th, 0, 1).shape == (5, 5)
        np.testing.assert_array_equal(cell_image(page, th, 0, 1), th.result.weights[0, 1])


# -- the rendered view ------------------------------------------------------------------------------
def test_figures_are_drawn_only_when_the_view_is_rendered(monkeypatch):
    built = []
    original = heads_view.TrainedHeadsView.__init__
    monkeypatch.setattr(heads_view.TrainedHeadsView, "__init__",
                        lambda self, th: built.append(1) or original(self, th))
    panel = pn.panel(TrainedHeads())
    assert built == []
    with rendered(panel) as page:
        assert built == [1]
        assert only(page.doc, "ap-th-overview").title.text.startswith("2 layers × 4 heads = 8 maps")


def test_rendered_figures_carry_every_heads_weights():
    th = TrainedHeads()
    with rendered(pn.panel(th)) as page:
        for l in range(2):
            for h in range(4):
                np.testing.assert_array_equal(cell_image(page, th, l, h), th.result.weights[l, h])
        overview = only(page.doc, "ap-th-overview")
        assert list(overview.xaxis[0].major_label_overrides.values()) == ["H0", "H1", "H2", "H3"]
        assert list(overview.yaxis[0].major_label_overrides.values()) == ["L0", "L1"]
        main = only(page.doc, "ap-th-main")
        np.testing.assert_array_equal(image_of(main), th.result.weights[th.layer, th.head])
        assert main.title.text.startswith(f"Layer {th.layer} · head {th.head}")
        assert "induction head" in main.title.text
        labels = main.yaxis[0].major_label_overrides
        assert [labels[i] for i in range(th.result.seq_len)] == [f"{i}:{t}" for i, t in
                                                                  enumerate(th.result.tokens)]


def test_a_tap_on_an_overview_map_opens_it_in_the_main_view_without_rerunning(count_forwards):
    th = TrainedHeads()
    with rendered(pn.panel(th)) as page:
        calls, n = len(count_forwards), th.n_forward
        page.clear()
        overview = only(page.doc, "ap-th-overview")
        stride = th.result.seq_len + 1                               # 1-pixel gaps between maps
        overview._trigger_event(Tap(overview, x=2 * stride + 3.0, y=7.0))
        assert (th.layer, th.head) == (0, 2)
        main = only(page.doc, "ap-th-main")
        np.testing.assert_array_equal(image_of(main), th.result.weights[0, 2])
        assert main.title.text.startswith("Layer 0 · head 2")
        assert outlined(page, th) == (0, 2)
        overview._trigger_event(Tap(overview, x=stride - 1.0, y=7.0))    # in a gap: nothing
        assert (th.layer, th.head) == (0, 2)
        assert len(count_forwards) == calls and th.n_forward == n
        assert page.events, "the change was sent to the browser as document patches"


def test_the_selectors_move_the_main_view_and_the_table_highlight():
    th = TrainedHeads()
    view = TrainedHeadsView(th)
    with rendered(view.layout) as page:
        view.widgets["layer"].value = 0
        view.widgets["head"].value = 0
        assert (th.layer, th.head) == (0, 0)
        np.testing.assert_array_equal(image_of(only(page.doc, "ap-th-main")), th.result.weights[0, 0])
        assert "ap-th-row ap-th-selected ap-th-flagged' data-layer='0' data-head='0'" in view.table.object
        assert outlined(page, th) == (0, 0)


@pytest.mark.parametrize("y, expected", [(20.3, 20), (-5.0, 0), (99.0, 31)])
def test_a_tap_on_the_main_map_selects_that_query_clamped(y, expected):
    th = TrainedHeads()
    view = TrainedHeadsView(th)
    with rendered(view.layout) as page:
        main = only(page.doc, "ap-th-main")
        main._trigger_event(Tap(main, x=1.0, y=y))
        assert th.query == expected
        assert f"data-query='{expected}'" in view.reading.object


def test_switching_to_random_weights_updates_every_map_and_the_table():
    th = TrainedHeads()
    view = TrainedHeadsView(th)
    with rendered(view.layout) as page:
        th.model = "random"
        for (l, h) in [(0, 0), (1, 3)]:
            np.testing.assert_array_equal(cell_image(page, th, l, h),
                                          reference_weights(random_model(0), th.result.tokens)[l, h])
        assert "ap-th-best" not in view.table.object
        assert view.widgets["random_seed"].visible and view.random_note.visible
        assert "random model" in view.summary.object


def test_the_metrics_table_marks_the_previous_token_and_induction_heads():
    th = TrainedHeads()
    html = heads_plots.metrics_table_html(th.metrics, selected=(th.layer, th.head))
    lp, hp = flagged(th, "is_previous_token_head")
    li, hi = flagged(th, "is_induction_head")
    for (l, h), role in (((lp, hp), "previous-token"), ((li, hi), "induction")):
        row = html.split(f"data-layer='{l}' data-head='{h}'>")[1].split("</tr>")[0]
        assert f"ap-th-badge ap-th-best' data-role='{role}'" in row
    assert html.count("ap-th-best") == 2 and html.count("ap-th-selected") == 1


def test_the_prediction_summary_counts_the_models_correct_next_tokens():
    th = TrainedHeads()
    view = TrainedHeadsView(th)
    r = th.result
    model = load_induction_model()
    with torch.no_grad():
        logits, _ = model(torch.tensor(r.tokens)[None])
    pred = logits[0].argmax(-1).numpy()
    second = int((pred[16:-1] == np.array(r.tokens[17:])).sum())
    assert f"<b>{second} of 15</b> positions of the second copy" in view.summary.object


def test_the_widgets_shown_follow_the_model_and_input_choices():
    th = TrainedHeads()
    w = TrainedHeadsView(th).widgets
    assert not w["random_seed"].visible and w["seed"].visible and not w["custom_tokens"].visible
    th.param.update(model="random", input_kind="custom")
    assert w["random_seed"].visible and not w["seed"].visible and w["custom_tokens"].visible
    assert list(w["layer"].options.values()) == [0, 1]
    assert list(w["head"].options.values()) == [0, 1, 2, 3]


# -- plots ------------------------------------------------------------------------------------------
def test_the_main_map_has_query_on_y_from_the_top_and_key_on_x():
    A = np.zeros((4, 4), dtype=np.float32)
    A[3, 0] = 1.0                              # query 3 reads key 0 only
    A[1, 0], A[1, 1] = 0.25, 0.75
    el = heads_plots.main_heatmap(A, [9, 8, 7, 6], 0, 0)
    assert isinstance(el, hv.Image)
    for q in range(4):
        for k in range(4):
            assert el[k, q] == pytest.approx(A[q, k])
    opts = hv.Store.lookup_options("bokeh", el, "plot").kwargs
    assert opts["invert_yaxis"] is True and opts["clim"] == (0, 1)


@pytest.mark.parametrize("shape", [(3,), (3, 4), (2, 3, 3)])
def test_a_map_that_is_not_square_is_a_value_error(shape):
    with pytest.raises(ValueError, match=r"expected one head's weights of shape \(T, T\)"):
        heads_plots.cell_frame(np.zeros(shape), 0, 0)


def test_the_overview_grid_is_layers_by_heads():
    th = TrainedHeads()
    grid = heads_plots.overview_grid(th.result.weights, th.metrics)
    assert len(grid) == 8 and grid._max_cols == 4


def test_the_app_has_a_model_heads_tab():
    factory = dict(TABS)["Model heads"]
    component = factory()
    with rendered(component) as page:
        assert models_with_class(page.doc, "ap-model-heads")
        assert [c.name for c in component.select(pn.widgets.RadioButtonGroup)][:2] == ["Model", "Input"]


def test_a_single_token_input_still_draws_every_view():
    th = TrainedHeads()
    view = TrainedHeadsView(th)
    with rendered(view.layout) as page:
        th.param.update(input_kind="custom", custom_tokens="42")
        assert th.input_error == "" and th.query == 0
        assert image_of(only(page.doc, "ap-th-main")).shape == (1, 1)
        assert cell_image(page, th, 1, 1)[0, 0] == pytest.approx(1.0)
        assert "After your one token" in view.summary.object
        assert "data-query='0'" in view.reading.object


def test_a_bad_input_then_a_model_switch_shows_the_last_valid_tokens_in_the_other_model():
    th = TrainedHeads()
    preset = th.result
    th.input_kind = "custom"
    th.custom_tokens = "99"
    th.model = "random"
    assert th.result.tokens == preset.tokens and th.result.model == "random"
    assert "token id 99 is out of range" in th.input_error
