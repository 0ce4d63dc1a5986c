"""plots.py: frames and HoloViews elements, checked on the Bokeh models HoloViews renders."""
from __future__ import annotations

import holoviews as hv
import numpy as np
import pytest
import torch
from bokeh.models import HoverTool

from attention import make_causal_mask
from dashboard.common import frames
from dashboard.common.style import BLOCKED_COLOR, KEEP_COLOR, VIOLATION_COLOR
from dashboard.playground import plots
from dashboard.playground import AttentionPlayground, single_token_steps

RENDERER = hv.renderer("bokeh")


def render(element):
    return RENDERER.get_plot(element)


@pytest.fixture(scope="module")
def pg():
    return AttentionPlayground(seq_len=9, num_heads=3, head_dim=4, prefix=4, query=6)


@pytest.mark.parametrize("head", [0, 2])
def test_head_map_row_i_is_query_i_and_query_0_is_at_the_top(pg, head):
    plot = render(plots.head_heatmap(pg.result, head))
    img = plot.handles["source"].data["image"][0]
    w = pg.result.weights[head].numpy()
    np.testing.assert_array_equal(img, w)                 # Bokeh draws image row r at y = r
    fig = plot.state
    assert fig.y_range.start > fig.y_range.end            # inverted: y = 0 (query 0) on top
    assert (fig.y_range.end, fig.y_range.start) == (-0.5, 8.5)
    data = plot.handles["source"].data
    assert (data["x"][0], data["y"][0], data["dw"][0], data["dh"][0]) == (-0.5, -0.5, 9, 9)
    el = plots.head_heatmap(pg.result, head)
    for i in (0, 3, 8):                                   # the element's value at y = i is row i
        for j in (0, 5):
            assert el[j, i] == pytest.approx(float(w[i, j]))


def test_head_map_has_a_fixed_0_to_1_colour_scale_and_hover(pg):
    plot = render(plots.head_heatmap(pg.result, 1))
    mapper = plot.handles["color_mapper"]
    assert (mapper.low, mapper.high) == (0, 1)
    hover = plot.state.select_one({"type": HoverTool})
    labels = [label for label, _ in hover.tooltips]
    assert labels == ["head", "query", "key", "weight"] and hover.tooltips[0][1] == "1"


def test_head_and_query_hover_name_the_tokens():
    pg = AttentionPlayground(text="the cat sat on mats", num_heads=2)
    for element in (plots.head_heatmap(pg.result, 0), plots.query_heads(pg.result, 1)):
        hover = render(element).state.select_one({"type": HoverTool})
        tips = dict(hover.tooltips)
        assert tips["key"] == "$x{custom}"
        assert hover.formatters["$x"].args["labels"] == ["the", "cat", "sat", "on", "mats"]
        assert "labels[i]" in hover.formatters["$x"].code
    head = render(plots.head_heatmap(pg.result, 0)).state.select_one({"type": HoverTool})
    assert dict(head.tooltips)["query"] == "$y{custom}" and "$y" in head.formatters


def test_head_map_labels_axes_with_tokens_for_short_sequences():
    pg = AttentionPlayground(text="one two three")
    fig = render(plots.head_heatmap(pg.result, 0)).state
    assert fig.xaxis[0].major_label_overrides == {0: "one", 1: "two", 2: "three"}
    assert fig.yaxis[0].major_label_overrides == {0: "one", 1: "two", 2: "three"}


def test_long_sequences_get_numbered_ticks_not_token_names():
    pg = AttentionPlayground(seq_len=100, num_heads=1)
    ticks = plots.head_frame(pg.result, 0).xticks
    assert ticks[0] == (0, "0") and len(ticks) <= 12 and all(label.isdigit() for _, label in ticks)


def test_huge_maps_are_max_pooled_to_a_screen_sized_image():
    pg = AttentionPlayground(seq_len=1024, num_heads=16, head_dim=2)
    assert pg.result.weights is None                     # a long context: only pooled maps are held
    frame = plots.head_frame(pg.result, 3)
    A = frame.layers[0].array
    assert A.shape == (94, 94) and "max of 11×11" in frame.title      # 99 px a map at H=16
    with torch.no_grad():
        w = pg.model(pg.result.x, mask=make_causal_mask(1024, dtype=torch.bool))[1][3].numpy()
    np.testing.assert_allclose(A[10, 20], w[110:121, 220:231].max(), rtol=1e-5, atol=1e-7)
    assert frame.layers[0].bounds == (-0.5, -0.5, 94 * 11 - 0.5, 94 * 11 - 0.5)


@pytest.mark.parametrize("T, maps, f", [(16, 4, 1), (256, 16, 1), (512, 4, 1), (1024, 16, 4),
                                        (1000, 16, 4), (300, 16, 2)])
def test_pool_factor_keeps_all_maps_within_the_pixel_budget(T, maps, f):
    assert frames.pool_factor(T, maps) == f
    assert maps * (-(-T // f)) ** 2 <= frames.MAX_PIXELS


def test_query_marker_sits_on_the_selected_row(pg):
    el = plots.head_heatmap(pg.result, 0, query=6)
    assert isinstance(el, hv.Overlay)
    line = el.get(1)
    assert isinstance(line, hv.HLine) and line.data == 6


def test_query_plot_rows_are_heads_for_the_selected_query(pg):
    plot = render(plots.query_heads(pg.result, 6))
    img = plot.handles["source"].data["image"][0]
    np.testing.assert_array_equal(img, pg.result.weights[:, 6, :].numpy())
    assert plot.state.title.text.startswith("Query 6")
    labels = plot.state.yaxis[0].major_label_overrides
    assert {k: v.strip() for k, v in labels.items()} == {0: "head 0", 1: "head 1", 2: "head 2"}
    # as wide as "head 15" in a monospace font: the axis keeps its width for every H
    assert {len(v) for v in labels.values()} == {len("head 15")}
    assert plot.state.yaxis[0].major_label_text_font == "monospace"


def test_query_plot_names_the_token_when_text_is_used():
    pg = AttentionPlayground(text="a b c d")
    assert plots.query_frame(pg.result, 2).title.startswith("Query 2 (c)")


def _bands(frame):
    """{step number: (values, colours, bar bottoms, bar tops)} of ``plots.steps_frame``."""
    quads = frame.layers[0]
    cols, a = quads.columns, quads.array
    out = {}
    for n in "1234":
        sel = np.array([str(s).startswith(n + " ") for s in cols["step"]])
        out[n] = (cols["value"][sel], list(cols["color"][sel]), a[sel, 1], a[sel, 3])
    return out


def test_single_token_view_shows_the_five_steps(pg):
    steps = single_token_steps(pg.result, 1, 3)
    frames = plots.single_token_frames(steps, pg.result.tokens)
    assert len(frames) == 2 and frames[1].title.startswith("5 ")
    assert frames[0].layers[1].texts[0].startswith("1 ") and len(frames[0].layers[1].texts) == 4
    bands = _bands(frames[0])
    raw = steps.raw.numpy()
    np.testing.assert_array_equal(bands["1"][0], raw)
    # query 3 keeps keys 0..3: blue bars, the blocked keys grey
    assert bands["1"][1] == [KEEP_COLOR] * 4 + [BLOCKED_COLOR] * 5 == bands["2"][1]
    np.testing.assert_allclose(bands["2"][0], steps.scaled.numpy())
    np.testing.assert_array_equal(bands["3"][0], [1, 1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(bands["4"][0], steps.weights.numpy())
    np.testing.assert_allclose(frames[1].layers[0].values, steps.output.numpy())
    # heights follow the values within each band: the largest weight is the tallest bar there
    _, _, lo, hi = bands["4"]
    assert np.argmax(hi - lo) == int(np.argmax(steps.weights.numpy()))
    _, _, lo, hi = bands["1"]          # a bar of a negative score hangs below the band's zero line
    zero_line = np.concatenate([lo[raw > 0], hi[raw < 0]])   # positive bars stand on it,
    assert len(zero_line) == len(raw) and np.ptp(zero_line) == 0     # negative ones hang from it
    # the y ticks name real values: 0 and the extremes of each band
    labels = [t for _, t in frames[0].yticks]
    assert f"{raw.max():.3g}" in labels and "0" in labels
    assert raw.min() >= 0 or f"{raw.min():.3g}" in labels
    layout = plots.single_token_bars(steps, pg.result.tokens)
    assert len(layout) == 2
    plot = render(layout)                                           # renders as one Bokeh layout
    assert plot.state is not None


def test_invariance_chart_separates_kept_and_perturbed_positions(pg):
    overlay = plots.invariance_chart(pg.result)
    span, same, changed, line, label, violated = overlay.values()
    d = pg.result.invariance.position_diff.numpy()
    np.testing.assert_array_equal(same.dimension_values(1)[:5], d[:5])
    assert np.all(same.dimension_values(1)[5:] == 0)
    np.testing.assert_array_equal(changed.dimension_values(1)[5:], d[5:])
    assert np.all(violated.dimension_values(1) == 0)             # causal: nothing before L moved
    assert line.data == 4.5 and tuple(span.data) == (-0.5, 4.5) and "L = 4" in label.text
    render(overlay)


def _bar_colours(plot) -> np.ndarray:
    """Colour of each position's visible bar in a rendered invariance chart (None: no bar)."""
    bars = [sp for sp in plot.subplots.values() if "top" in sp.handles.get("source").data]
    T = len(bars[0].handles["source"].data["top"])
    colours = np.full(T, None, dtype=object)
    for sp in bars:
        top = np.asarray(sp.handles["source"].data["top"])
        colours[top > 0] = sp.handles["glyph"].fill_color
    return colours


def test_non_causal_changes_before_L_are_drawn_red_not_green():
    full = AttentionPlayground(seq_len=9, num_heads=3, head_dim=4, prefix=4, causal=False)
    inv = full.result.invariance
    d = inv.position_diff.numpy()
    assert not inv.passed and np.any(d[:5] > inv.atol)            # the experiment really fails
    colours = _bar_colours(render(plots.invariance_chart(full.result)))
    for i in range(9):
        if i > 4:
            want = plots.CHANGED_COLOR
        elif d[i] > inv.atol:
            want = VIOLATION_COLOR
        else:
            want = plots.SAME_COLOR if d[i] > 0 else None
        assert colours[i] == want, (i, d[i], colours[i])
    assert plots.SAME_COLOR not in set(colours[:5][d[:5] > inv.atol])


def test_causal_positions_up_to_L_are_green_or_empty_never_red(pg):
    colours = _bar_colours(render(plots.invariance_chart(pg.result)))
    assert VIOLATION_COLOR not in set(colours)
    assert set(colours[5:]) <= {plots.CHANGED_COLOR, None}


def test_mask_image_is_the_keep_mask(pg):
    plot = render(plots.mask_image(pg.result))
    np.testing.assert_array_equal(plot.handles["source"].data["image"][0],
                                  np.tril(np.ones((9, 9))))
    assert plot.state.title.text == "Causal keep-mask"
    full = AttentionPlayground(seq_len=9, causal=False)
    assert plots.mask_frame(full.result).title.startswith("No mask")


def test_verdict_badge_says_pass_for_causal_and_fail_without_the_mask():
    pg = AttentionPlayground(seq_len=6)
    assert 'data-verdict="PASS"' in plots.verdict_html(pg.result)
    pg.causal = False
    html = plots.verdict_html(pg.result)
    assert 'data-verdict="FAIL"' in html and "ap-fail" in html
    assert "data-stat='max-future'" in plots.invariance_summary_html(pg.result)


def test_unknown_layer_kind_is_a_clear_error():
    frame = frames.Frame(layers=(frames.Layer("pie"),), title="", xlim=(0, 1), ylim=(0, 1))
    with pytest.raises(ValueError, match="'pie'"):
        frames.to_element(frame)


def test_head_index_out_of_range_is_a_clear_error(pg):
    with pytest.raises(ValueError, match="head in 0..2"):
        plots.head_frame(pg.result, 3)


def test_placeholder_tokens_are_labelled_by_number_without_rotation():
    pg = AttentionPlayground(seq_len=16)
    frame = plots.head_frame(pg.result, 0)
    labels = [label for _, label in frame.xticks]
    assert all(label.isdigit() for label in labels) and frame.xrotation == 0
    named = AttentionPlayground(text="the cat sat")
    assert [label for _, label in plots.head_frame(named.result, 0).xticks] == ["the", "cat", "sat"]


def test_step_bars_stay_visible_when_narrower_than_a_pixel():
    pg = AttentionPlayground(seq_len=512, num_heads=1, head_dim=4, query=300)
    frames = plots.single_token_frames(single_token_steps(pg.result, 0, 300), pg.result.tokens)
    bars = frames[0].layers[0]
    assert bars.style["line_color"] == bars.style["color"] == "color"  # outlined: >= 1 px each


def test_above_512_keys_each_step_bar_stands_for_f_keys_and_keeps_the_largest():
    pg = AttentionPlayground(seq_len=1100, num_heads=1, head_dim=4, query=1000)
    steps = pg.single_token(0, 1000)
    frame = plots.steps_frame(steps, pg.result.tokens)
    assert "one bar per 3 keys" in frame.title                   # ceil(1100 / 512) = 3
    bands = _bands(frame)
    w, raw = steps.weights.numpy(), steps.raw.numpy()
    assert all(len(v) == 367 for v, *_ in bands.values())        # ceil(1100 / 3) bars per band
    assert bands["4"][0].max() == pytest.approx(float(w.max()))  # the strongest weight stays visible
    assert np.abs(bands["1"][0]).max() == pytest.approx(float(np.abs(raw).max()))
    quads = frame.layers[0]
    top = int(np.argmax(w))
    sel = [str(s).startswith("4 ") for s in quads.columns["step"]]
    labels = quads.columns["label"][sel]
    assert labels[top // 3].startswith(f"{top} (largest |value| of keys {top // 3 * 3}–")
    assert np.all(bands["3"][0][: 1001 // 3] == 1) and bands["3"][0][-1] == 0   # keys after 1000 blocked
