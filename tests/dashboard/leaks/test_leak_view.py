"""The "Leak detector" tab without a browser: verdicts, caching, and what the Bokeh figures carry.

Oracles: the library's own ``check_entry`` / ``leak_report`` run with the other relation (for the
cached re-check), a brute-force cell-by-cell boundary (for the outline) and the report's tensors
(for every rendered column).
"""
from __future__ import annotations

import html
import math
import re

import numpy as np
import panel as pn
import pytest
import torch

from attention.mask_mods import padding_mod, prefix_lm, sliding_window
from attention.verify import check_entry, sweep_checked_prefixes
from attention.zoo import ZOO, mask_gallery
from dashboard.common.figures import render
from dashboard.leaks import LeakDetector, LeakDetectorView
from dashboard.leaks import plots as leak_plots
from dashboard.leaks.state import BUGGY, CORRECT, MAX_SEQ_LEN, MIN_SEQ_LEN, OWN, rechecked
from harness import models_with_class, rendered

T_SMALL = 8          # every bug shows at T = 8 (min_seq_len <= 5) and the maps are instant


def leaves(element):
    """The HoloViews subplots of a rendered overlay, by element type name, in layer order."""
    plot = render(element)
    return plot, [(type(p.hmap.last).__name__, p) for p in plot.subplots.values()]


def source(plot, kind: str, index: int = 0) -> dict:
    found = [p for name, p in plot if name == kind]
    return found[index].handles["source"].data


@pytest.fixture(scope="module")
def buggy_report():
    return check_entry("off_by_one_causal_mask", seq_len=T_SMALL)


# ------------------------------------------------------------------------------------------------
# verdicts and caching
@pytest.mark.parametrize("name", list(ZOO))
def test_verdict_is_fail_for_buggy_and_pass_for_correct_models(name):
    ld = LeakDetector(model=name, seq_len=T_SMALL)
    assert ld.report.passed is (not ZOO[name].buggy)
    assert bool(ld.report.leaks) is ZOO[name].buggy


def test_groups_split_the_zoo_into_buggy_and_correct():
    assert sorted(BUGGY + CORRECT) == sorted(ZOO)
    assert all(ZOO[n].buggy for n in BUGGY) and not any(ZOO[n].buggy for n in CORRECT)
    assert len(BUGGY) >= 10 and len(CORRECT) >= 8


def test_changing_only_the_allowed_relation_recomputes_nothing():
    ld = LeakDetector(model="causal_mha", seq_len=T_SMALL)
    assert ld.n_computes == 1 and ld.report.passed
    dep = ld.report.dep_map
    ld.allowed = "sliding:2"                           # stricter than causal: the causal layer leaks
    assert not ld.report.passed and ld.report.allowed_name == "sliding_window(2)"
    ld.allowed = "full"
    assert ld.report.passed and ld.report.allowed_name == "full"
    ld.allowed = OWN
    assert ld.report.passed and ld.report.allowed_name == "causal"
    assert ld.n_computes == 1
    assert ld.report.dep_map is dep                    # the very same cached map


def test_model_seq_len_and_seed_changes_recompute_and_revisits_come_from_the_cache():
    ld = LeakDetector(model="cumsum", seq_len=T_SMALL)
    ld.seed = 3
    ld.seq_len = T_SMALL + 1
    ld.model = "reversed_cumsum"
    assert ld.n_computes == 4
    assert ld.report.dep_map.shape == (T_SMALL + 1, T_SMALL + 1)
    ld.param.update(model="cumsum", seq_len=T_SMALL, seed=0)      # seen before
    assert ld.n_computes == 4 and ld.report.passed


def test_busy_is_raised_only_while_a_map_is_computed():
    ld = LeakDetector(model="causal_mha", seq_len=T_SMALL)
    seen = []
    ld.param.watch(lambda e: seen.append(e.new), "busy")
    ld.allowed = "sliding:3"
    assert seen == []
    ld.model = "cumsum"
    assert seen == [True, False] and not ld.busy


@pytest.mark.parametrize("name, spec", [
    ("causal_mha", "sliding:3"),
    ("gpt_block_stack", "prefix:3"),
    ("prefix_lm", "causal"),
    ("packed_without_document_mask", "causal"),
    ("sliding_window_one_too_wide", "sliding:4"),
    ("transposed_mask", "full"),
])
def test_cached_recheck_equals_a_fresh_report_for_that_relation(name, spec):
    ld = LeakDetector(model=name, seq_len=T_SMALL, allowed=spec)
    fresh = check_entry(name, seq_len=T_SMALL, allowed=spec)    # runs the model again
    got = ld.report
    assert got.leaks == fresh.leaks
    assert got.passed == fresh.passed
    assert got.allowed_name == fresh.allowed_name
    assert torch.equal(got.allowed_dense, fresh.allowed_dense)
    assert torch.equal(got.sweep_checked, fresh.sweep_checked)
    assert got.sweep_failures == fresh.sweep_failures


def test_recheck_refuses_a_relation_that_depends_on_the_batch_item(buggy_report):
    with pytest.raises(ValueError, match=r"same for every batch item .*padding\(\[3, 5\]\)"):
        rechecked(buggy_report, padding_mod([3, 5]))


def test_seq_len_bounds_keep_every_bug_visible_and_the_map_small():
    assert MIN_SEQ_LEN >= max(e.min_seq_len for e in ZOO.values())
    ld = LeakDetector()
    with pytest.raises(ValueError, match="seq_len"):
        ld.seq_len = MIN_SEQ_LEN - 1
    with pytest.raises(ValueError, match="seq_len"):
        ld.seq_len = MAX_SEQ_LEN + 1
    for name in ("model", "allowed", "seq_len", "seed"):
        p = ld.param[name]
        assert p.doc and p.label


def test_allowed_relation_must_be_one_of_the_offered_choices():
    ld = LeakDetector(seq_len=T_SMALL)
    with pytest.raises(ValueError, match="allowed"):
        ld.allowed = "sliding:99"


# ------------------------------------------------------------------------------------------------
# words
def test_first_leak_sentence_names_a_pair_the_relation_forbids():
    for name in BUGGY:
        r = LeakDetector(model=name, seq_len=T_SMALL).report
        m = re.match(r"Output (\d+) depends on input (\d+), which the relation \((.+)\) forbids",
                     leak_plots.first_leak_sentence(r))
        assert m, leak_plots.first_leak_sentence(r)
        i, j = int(m.group(1)), int(m.group(2))
        assert m.group(3) == r.allowed_name
        assert not bool(r.allowed_dense[i, j]) and float(r.dep_map[i, j]) > r.atol
        assert float(r.dep_map[i, j]) == max(float(r.dep_map[l.out_pos, l.in_pos]) for l in r.leaks)


def test_pass_sentence_says_the_forbidden_pairs_are_exactly_zero():
    r = LeakDetector(model="causal_conv_left_padded", seq_len=T_SMALL).report
    n_forbidden = T_SMALL * (T_SMALL - 1) // 2
    assert f"all {n_forbidden} forbidden pairs are exactly 0" in leak_plots.first_leak_sentence(r)
    r = LeakDetector(model="causal_conv_left_padded", seq_len=T_SMALL, allowed="full").report
    assert "forbids nothing" in leak_plots.first_leak_sentence(r)


@pytest.mark.parametrize("name, word", [("causal_mha", "PASS"), ("mean_pool_whole_sequence", "FAIL")])
def test_badge_carries_the_verdict(name, word):
    badge = leak_plots.verdict_html(LeakDetector(model=name, seq_len=T_SMALL).report)
    assert f'data-verdict="{word}"' in badge and "ap-leak-badge" in badge and f">{word}<" in badge


# ------------------------------------------------------------------------------------------------
# the dependency map figure
def test_heatmap_source_holds_the_dependency_map_and_the_allowed_flags(buggy_report):
    r = buggy_report
    plot, subs = leaves(leak_plots.dependency_heatmap(r))
    assert [name for name, _ in subs] == ["HeatMap", "Segments", "Points", "Points"]
    data = source(subs, "HeatMap")
    i, j = np.asarray(data["output"]), np.asarray(data["input"])
    D = r.dep_map.numpy()
    assert len(i) == T_SMALL * T_SMALL
    expected = np.where(D[i, j] > r.atol, D[i, j], np.nan)
    np.testing.assert_allclose(np.asarray(data["zvalues"], dtype=float), expected)
    keep = r.allowed_dense.numpy()
    assert list(data["allowed"]) == ["yes" if k else "no" for k in keep[i, j]]
    leak_set = {(l.out_pos, l.in_pos) for l in r.leaks}
    assert {(a, b) for a, b, flag in zip(i, j, data["leak"]) if flag == "LEAK"} == leak_set
    hover = [t for t in plot.state.tools if type(t).__name__ == "HoverTool"]
    assert hover and [label for label, _ in hover[0].tooltips] == [
        "output i", "input j", "‖∂y_i/∂x_j‖", "allowed", "leak"]


def test_heatmap_puts_output_zero_at_the_top(buggy_report):
    fig = render(leak_plots.dependency_heatmap(buggy_report)).state
    assert fig.y_range.start > fig.y_range.end                 # inverted: y grows downwards
    pad = 0.5 + leak_plots.RING_PAD                            # room for the ring on an edge cell
    assert (fig.y_range.start, fig.y_range.end) == (T_SMALL - 1 + pad, -pad)
    assert (fig.x_range.start, fig.x_range.end) == (-pad, T_SMALL - 1 + pad)


def test_the_ring_on_a_corner_leak_stays_inside_the_frame(buggy_report):
    """The ring's radius (in cells) fits in the margin around the map: never clipped at the top."""
    T = buggy_report.dep_map.shape[0]
    cell = leak_plots.MAP_SIZE / T
    ring_px = max(12.0, 1.5 * cell) + 2.5                      # marker size plus its line width
    assert ring_px / 2 / cell <= 0.5 + leak_plots.RING_PAD


def test_no_path_cells_are_nan_drawn_in_the_no_path_colour(buggy_report):
    plot, subs = leaves(leak_plots.dependency_heatmap(buggy_report))
    z = np.asarray(source(subs, "HeatMap")["zvalues"], dtype=float)
    assert np.isnan(z).sum() == int((buggy_report.dep_map <= buggy_report.atol).sum()) > 0
    mapper = [p for name, p in subs if name == "HeatMap"][0].handles["color_mapper"]
    assert type(mapper).__name__ == "LogColorMapper" and mapper.nan_color == leak_plots.NO_PATH_COLOR
    top = float(buggy_report.dep_map.max())
    assert math.isclose(mapper.high, top) and math.isclose(mapper.low, top * 10.0**-leak_plots.DECADES)


def test_leak_markers_sit_on_every_leak_and_the_ring_on_the_largest(buggy_report):
    r = buggy_report
    _, subs = leaves(leak_plots.dependency_heatmap(r))
    marks, ring = source(subs, "Points", 0), source(subs, "Points", 1)
    assert sorted(zip(marks["output"], marks["input"])) == sorted((l.out_pos, l.in_pos) for l in r.leaks)
    assert (list(ring["output"]), list(ring["input"])) == ([r.first_leak.out_pos], [r.first_leak.in_pos])
    # off-by-one: exactly the first superdiagonal leaks
    assert sorted((l.out_pos, l.in_pos) for l in r.leaks) == [(i, i + 1) for i in range(T_SMALL - 1)]


def test_a_passing_model_has_no_leak_markers():
    r = LeakDetector(model="gpt_block_stack", seq_len=T_SMALL).report
    _, subs = leaves(leak_plots.dependency_heatmap(r))
    assert len(source(subs, "Points", 0)["input"]) == 0
    assert len(source(subs, "Points", 1)["input"]) == 0


def _boundary_edges(keep: np.ndarray) -> set:
    """Brute force: every unit cell side between an allowed cell and a blocked/outside one."""
    T, S = keep.shape
    inside = lambda i, j: 0 <= i < T and 0 <= j < S and keep[i, j]   # noqa: E731
    edges = set()
    for i in range(-1, T + 1):
        for j in range(-1, S + 1):
            if inside(i, j) != inside(i + 1, j):                       # side y = i + 0.5
                edges.add(("h", i + 0.5, j - 0.5))
            if inside(i, j) != inside(i, j + 1):                       # side x = j + 0.5
                edges.add(("v", j + 0.5, i - 0.5))
    return edges


def _segment_edges(segments) -> set:
    edges = set()
    for (x0, y0), (x1, y1) in segments:
        if y0 == y1:
            edges |= {("h", y0, x) for x in np.arange(min(x0, x1), max(x0, x1), 1.0)}
        else:
            assert x0 == x1
            edges |= {("v", x0, y) for y in np.arange(min(y0, y1), max(y0, y1), 1.0)}
    return edges


@pytest.mark.parametrize("mod", [None, sliding_window(3), prefix_lm(3), "random"])
def test_outline_is_exactly_the_boundary_of_the_allowed_cells(mod):
    T = 7
    if mod is None:
        keep = np.tril(np.ones((T, T), dtype=bool))
    elif mod == "random":
        keep = np.random.default_rng(0).random((T, T)) < 0.5
    else:
        from attention.mask_mods import materialize_mask
        keep = materialize_mask(mod, 1, 1, T, T)[0, 0].numpy()
    segments = leak_plots.allowed_outline(keep)
    assert _segment_edges(segments) == _boundary_edges(keep)


def test_causal_outline_is_the_left_edge_the_bottom_edge_and_a_staircase():
    segments = leak_plots.allowed_outline(np.tril(np.ones((3, 3), dtype=bool)))
    got = sorted(tuple(map(tuple, s.tolist())) for s in segments)
    assert got == sorted([
        ((-0.5, -0.5), (0.5, -0.5)), ((0.5, 0.5), (1.5, 0.5)), ((1.5, 1.5), (2.5, 1.5)),   # steps
        ((-0.5, 2.5), (2.5, 2.5)),                                                            # bottom
        ((-0.5, -0.5), (-0.5, 2.5)),                                                          # left
        ((0.5, -0.5), (0.5, 0.5)), ((1.5, 0.5), (1.5, 1.5)), ((2.5, 1.5), (2.5, 2.5)),      # risers
    ])


def test_rendered_outline_carries_the_segments(buggy_report):
    _, subs = leaves(leak_plots.dependency_heatmap(buggy_report))
    data = source(subs, "Segments")
    expected = np.array(leak_plots.allowed_outline(buggy_report.allowed_dense.numpy())).reshape(-1, 4)
    columns = ("input", "output", "input_end", "output_end")         # x0, y0, x1, y1
    got = np.column_stack([np.asarray(data[c], dtype=float) for c in columns])
    np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------------------------------------
# sweep and gallery
def test_sweep_chart_marks_checked_moved_and_unchecked_prefixes():
    r = LeakDetector(model="prefix_lm", seq_len=T_SMALL, allowed="causal").report
    _, subs = leaves(leak_plots.sweep_chart(r))
    assert [name for name, _ in subs] == ["Spikes", "Scatter", "HLine", "Text"]
    dots = source(subs, "Scatter")
    np.testing.assert_allclose(np.asarray(dots["diff"], dtype=float), r.sweep.double().numpy())
    checked = sweep_checked_prefixes(r.allowed_dense).numpy()
    assert checked.all()                                       # causal checks every prefix
    moved = r.sweep.numpy() > r.sweep_atol
    assert list(dots["status"]) == ["moved" if m else "checked" for m in moved[:-1]] + [
        "nothing after L"]
    # prefix 3: outputs 0..L see inputs up to 2, so only L = 0, 1 move
    assert moved.tolist() == [True, True] + [False] * (T_SMALL - 2)
    own = LeakDetector(model="prefix_lm", seq_len=T_SMALL).report        # its own relation
    dots = source(leaves(leak_plots.sweep_chart(own))[1], "Scatter")
    status = list(dots["status"])
    assert status == ["not checked"] * 2 + ["checked"] * (T_SMALL - 3) + ["nothing after L"]
    assert {s: c for s, c in zip(status, dots["color"])} == {
        "not checked": leak_plots.UNCHECKED_COLOR, "checked": leak_plots.CHECKED_COLOR,
        "nothing after L": leak_plots.UNCHECKED_COLOR}


@pytest.mark.parametrize("allowed", ["full", "causal", "sliding:2", "prefix:3"])
def test_sweep_dots_are_green_only_where_the_relation_forbids_a_later_input(allowed):
    # the legend (TEXT["sweep"]): green = the relation forbids outputs 0..L to see anything
    # after L, and they stayed put; so a green L needs some input after it, all of them forbidden
    r = check_entry("cumsum", seq_len=T_SMALL, allowed=allowed)
    t = leak_plots.sweep_table(r)
    keep = r.allowed_dense.numpy().astype(bool)
    green = [int(L) for L, c in zip(t["L"], t["color"]) if c == leak_plots.CHECKED_COLOR]
    for L in green:
        assert L < T_SMALL - 1 and not keep[:L + 1, L + 1:].any(), (allowed, L)
    if allowed == "full":
        assert green == []


@pytest.mark.parametrize("T", [MIN_SEQ_LEN, 12])
def test_mask_thumbnails_show_each_mask_with_query_zero_on_top(T):
    for name, keep in mask_gallery(T).items():
        plot = render(leak_plots.mask_thumbnail(name, keep))
        image = plot.handles["source"].data["image"][0]
        # the source's row r is drawn at y = r (bottom-up from y = -0.5): row r is query r
        np.testing.assert_array_equal(image, keep.numpy().astype(np.int8))
        assert plot.state.y_range.start > plot.state.y_range.end
        assert plot.state.title.text == name


# ------------------------------------------------------------------------------------------------
# the live view
def test_view_renders_every_part_and_follows_the_parameters():
    ld = LeakDetector(model="causal_mha", seq_len=T_SMALL)
    with rendered(pn.panel(ld)) as page:
        doc = page.doc
        for cls in ("ap-leak-detector", "ap-leak-model", "ap-leak-allowed", "ap-leak-seq-len",
                    "ap-leak-seed", "ap-leak-verdict", "ap-leak-first", "ap-leak-map",
                    "ap-leak-sweep", "ap-leak-gallery"):
            assert models_with_class(doc, cls), cls
        assert len(models_with_class(doc, "ap-leak-mask")) == len(mask_gallery(T_SMALL))
        verdict = models_with_class(doc, "ap-leak-verdict")[0]
        assert 'data-verdict="PASS"' in html.unescape(verdict.text)

        page.clear()
        ld.allowed = "sliding:2"
        assert ld.n_computes == 1
        assert 'data-verdict="FAIL"' in html.unescape(verdict.text)
        assert page.events                                       # the browser is told
        fig = models_with_class(doc, "ap-leak-map")[0]
        assert fig.title.text.endswith(f"{len(ld.report.leaks)} leaks")
        marks = [r.data_source.data for r in fig.renderers
                 if type(r.glyph).__name__ == "Scatter" and r.glyph.marker == "x"]
        assert sorted(zip(marks[0]["output"], marks[0]["input"])) == sorted(
            (l.out_pos, l.in_pos) for l in ld.report.leaks)
        first = models_with_class(doc, "ap-leak-first")[0]
        assert "which the relation (sliding_window(2)) forbids" in html.unescape(first.text)

        ld.seq_len = T_SMALL + 2                                  # the gallery follows T
        assert ld.n_computes == 2
        masks = models_with_class(doc, "ap-leak-mask")
        assert {m.x_range.end for m in masks} == {T_SMALL + 1.5}


def test_model_select_is_grouped_and_linked_both_ways():
    ld = LeakDetector(seq_len=T_SMALL)
    view = LeakDetectorView(ld)
    select = view.model_select
    assert list(select.groups) == ["Buggy: must FAIL", "Correct: must PASS"]
    assert select.value == ld.model
    select.value = "cumsum"
    assert ld.model == "cumsum" and ld.report.passed
    ld.model = "reversed_cumsum"
    assert select.value == "reversed_cumsum" and not ld.report.passed


def test_description_shows_the_models_sentence_and_own_relation():
    ld = LeakDetector(model="sliding_window_one_too_wide", seq_len=T_SMALL)
    view = LeakDetectorView(ld)
    text = html.unescape(view.description.object)
    assert ZOO["sliding_window_one_too_wide"].description in text
    assert "BUGGY" in text and "sliding_window(3)" in text
    ld.model = "causal_mha"
    assert "CORRECT" in view.description.object and "causal" in view.description.object


def test_the_busy_badge_shows_while_a_map_is_computed_and_no_layout_loads(monkeypatch):
    import dashboard.leaks.state as leak_state

    ld = LeakDetector(model="causal_mha", seq_len=T_SMALL)
    view = LeakDetectorView(ld)
    seen = []

    def spy(*args, **kwargs):
        seen.append((view.busy_pane.object, view.results.loading))
        return check_entry(*args, **kwargs)

    monkeypatch.setattr(leak_state, "check_entry", spy)
    ld.model = "cumsum"
    assert len(seen) == 1 and 'data-busy="1"' in seen[0][0] and "Computing" in seen[0][0]
    assert seen[0][1] is False          # Panel's loading (a page layout in the browser) stays off
    assert view.busy_pane.object == ""
    ld.allowed = "sliding:2"                                   # no computation, no spinner
    assert len(seen) == 1


def same_source_data(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for column in want:
        np.testing.assert_array_equal(np.asarray(got[column]), np.asarray(want[column]), err_msg=column)


def test_relation_change_patches_the_figures_into_what_a_fresh_drawing_shows():
    ld = LeakDetector(model="gpt_block_stack", seq_len=T_SMALL)
    view = LeakDetectorView(ld)
    map_fig, sweep_fig = view.map_plot.state, view.sweep_plot.state
    for spec in ("sliding:2", "prefix:3", "full", "document", OWN, "causal"):
        ld.allowed = spec
        assert view.map_plot.state is map_fig and view.sweep_plot.state is sweep_fig
        for shown, element in ((view.map_plot, leak_plots.dependency_heatmap(ld.report)),
                               (view.sweep_plot, leak_plots.sweep_chart(ld.report))):
            fresh = render(element)
            assert shown.state.title.text == fresh.state.title.text
            for mine, theirs in zip(shown.subplots.values(), fresh.subplots.values()):
                if "source" in theirs.handles:
                    same_source_data(mine.handles["source"].data, theirs.handles["source"].data)
    assert view.n_redraws == 0 and ld.n_computes == 1


def _figure_shows(shown, fresh) -> None:
    """``shown`` (a figure on the page) shows exactly what the fresh drawing ``fresh`` shows."""
    from bokeh.models import ColorMapper, GlyphRenderer, Span

    assert shown.title.text == fresh.title.text
    for axis in ("x_range", "y_range"):
        a, b = getattr(shown, axis), getattr(fresh, axis)
        assert (a.start, a.end) == pytest.approx((b.start, b.end)), axis
    mine = [r for r in shown.renderers if isinstance(r, GlyphRenderer)]
    theirs = [r for r in fresh.renderers if isinstance(r, GlyphRenderer)]
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        same_source_data(a.data_source.data, b.data_source.data)
        for prop in ("size", "line_width", "fill_alpha"):
            if hasattr(b.glyph, prop):
                assert getattr(a.glyph, prop) == getattr(b.glyph, prop), prop
    assert [s.location for s in shown.select(Span)] == [s.location for s in fresh.select(Span)]
    assert [(m.low, m.high) for m in shown.select(ColorMapper)] == \
        [(m.low, m.high) for m in fresh.select(ColorMapper)]
    for a, b in zip((*shown.xaxis, *shown.yaxis), (*fresh.xaxis, *fresh.yaxis)):
        assert getattr(a.ticker, "ticks", None) == getattr(b.ticker, "ticks", None)


@pytest.mark.parametrize("change", [dict(model="cumsum"), dict(model="causal_mha", seed=3),
                                    dict(seq_len=T_SMALL + 3), dict(model="reversed_cumsum")])
def test_a_new_map_is_written_into_the_figures_on_the_page(change):
    """A model, seed or T change keeps the two figures (a new figure in the pane lays the whole page
    out again in the browser) and they then show exactly what a fresh drawing shows: data, colour
    range, marker sizes, ranges, ticks, titles."""
    ld = LeakDetector(model="gpt_block_stack", seq_len=T_SMALL)
    view = LeakDetectorView(ld)
    map_fig, sweep_fig = view.map_plot.state, view.sweep_plot.state
    ld.param.update(**change)
    assert ld.n_computes == 2
    assert view.map_plot.state is map_fig and view.sweep_plot.state is sweep_fig
    assert view.n_copies == 1 and view.n_redraws == 0
    _figure_shows(map_fig, render(leak_plots.dependency_heatmap(ld.report)).state)
    _figure_shows(sweep_fig, render(leak_plots.sweep_chart(ld.report)).state)
    ld.allowed = "sliding:2"                  # and a relation patch on top still matches
    _figure_shows(map_fig, render(leak_plots.dependency_heatmap(ld.report)).state)
    _figure_shows(sweep_fig, render(leak_plots.sweep_chart(ld.report)).state)


def test_a_relation_change_sends_a_smaller_patch_than_a_new_map():
    ld = LeakDetector(model="causal_mha", seq_len=16)
    with rendered(pn.panel(ld)) as page:
        fig = models_with_class(page.doc, "ap-leak-map")[0]
        page.clear()
        ld.allowed = "sliding:3"
        relation_bytes = page.patch_bytes()
        assert models_with_class(page.doc, "ap-leak-map") == [fig]   # the same figure, patched
        page.clear()
        before = {m.id for m in page.doc.models}
        ld.model = "cumsum"
        new_map_bytes = page.patch_bytes()
        assert models_with_class(page.doc, "ap-leak-map") == [fig]   # a new map: written into it,
        assert {m.id for m in page.doc.models} == before                # no model added or removed
    assert 0 < relation_bytes < new_map_bytes / 2


def test_the_app_has_a_leak_detector_tab_built_only_when_shown(monkeypatch):
    import dashboard.leaks.view as leak_view
    from dashboard.app import TABS

    built = []
    original = leak_view.LeakDetectorView.__init__

    def counting(self, ld):
        built.append(ld)
        original(self, ld)

    import dashboard.leaks.state as leak_state

    checks = []
    monkeypatch.setattr(leak_view.LeakDetectorView, "__init__", counting)
    monkeypatch.setattr(leak_state, "check_entry", lambda *a, **k: checks.append(a) or check_entry(*a, **k))
    component = dict(TABS)["Leak detector"]()
    assert built == [] and checks == []       # a session that never opens the tab: no view, no check
    with rendered(component) as page:
        assert len(built) == 1 and len(checks) == 1
        assert models_with_class(page.doc, "ap-leak-detector")
        assert models_with_class(page.doc, "ap-leak-map")
