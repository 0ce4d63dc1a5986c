"""LivePlot: a figure updated in place holds exactly what a fresh HoloViews render would show."""
from __future__ import annotations

import numpy as np
import pytest

from bokeh.core.property.descriptors import UnsetValueError
from bokeh.core.property.vectorization import Field, Unspecified, Value
from bokeh.model import Model
from bokeh.models import BoxAnnotation

from dashboard.common import figures
from dashboard.common.frames import with_marker
from dashboard.common.figures import LivePlot
from dashboard.playground import plots
from dashboard.playground import AttentionPlayground, single_token_steps


def _results():
    a = AttentionPlayground(seq_len=8, num_heads=3, head_dim=4, prefix=2, query=5)
    first = a.result
    a.param.update(seq_len=12, causal=False, seed=7, text="")
    a.prefix = 9
    second = a.result
    b = AttentionPlayground(text="one two three four five", num_heads=3, head_dim=4, prefix=1)
    return first, second, b.result


FAMILIES = {
    "head": lambda r: plots.head_frame(r, 1, query=min(5, r.seq_len - 1)),
    "query": lambda r: plots.query_frame(r, min(5, r.seq_len - 1)),
    "mask": plots.mask_frame,
    "invariance": plots.invariance_frame,
    "steps 1-4": lambda r: plots.single_token_frames(
        single_token_steps(r, 2, min(5, r.seq_len - 1)), r.tokens)[0],
    "output": lambda r: plots.single_token_frames(
        single_token_steps(r, 2, min(5, r.seq_len - 1)), r.tokens)[1],
}


def _state(live: LivePlot) -> dict:
    """Everything a viewer sees of a figure: data, annotations, ranges, title, ticks, hover."""
    fig = live.figure
    out = {
        "title": fig.title.text,
        "x_range": (fig.x_range.start, fig.x_range.end),
        "y_range": (fig.y_range.start, fig.y_range.end),
        "xticks": list(fig.xaxis[0].ticker.ticks), "xlabels": dict(fig.xaxis[0].major_label_overrides),
        "ylabels": dict(fig.yaxis[0].major_label_overrides),
        "frame_height": fig.frame_height,
    }
    for i, leaf in enumerate(live.leaves):
        glyph = leaf.handles.get("glyph")
        if hasattr(glyph, "location"):
            out[f"{i}.location"] = glyph.location
        elif isinstance(glyph, BoxAnnotation) or (hasattr(glyph, "left") and not hasattr(glyph, "top")):
            out[f"{i}.span"] = (glyph.left, glyph.right)    # an annotation: no source is drawn
        else:
            out[f"{i}.data"] = {k: np.asarray(v[0] if k == "image" else v).tolist()
                                for k, v in leaf.handles["source"].data.items()}
    return out


@pytest.fixture(scope="module")
def results():
    return _results()


@pytest.fixture(autouse=True)
def fresh_drawings():
    """Each test starts with no drawing kept, so "a fresh render" below is one (a frame drawn
    before in the process is copied, see test_a_frame_drawn_before_is_copied_...)."""
    figures._DRAWINGS.clear()
    yield
    figures._DRAWINGS.clear()


def _same_models(a, b, seen=None) -> list[str]:
    """Where two model graphs differ (every property, defaults included, models compared in turn;
    ids, names and tags apart); [] when they hold the same."""
    seen = set() if seen is None else seen
    if (id(a), id(b)) in seen:
        return []
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return [f"{type(a).__name__} != {type(b).__name__}"]
    out = []
    for name in sorted(a.properties() - {"id", "name", "tags", "toggleable"}):   # (deprecated)
        out += [f"{type(a).__name__}.{name}: {d}" for d in _same_values(_value(a, name), _value(b, name), seen)]
    return out


def _value(model, name):
    try:
        return getattr(model, name)
    except UnsetValueError:                              # set by the browser (inner_height...)
        return "<unset>"


def _spec(v):
    """A dataspec as HoloViews sets it (``"dh"``, ``0``) and as it comes back from its serialised
    form (``Field("dh")``, ``Value(0)``) are the same: the plain form of either."""
    if isinstance(v, (Field, Value)) and v.transform is Unspecified and v.units is Unspecified:
        return v.field if isinstance(v, Field) else v.value
    return v


def _same_values(x, y, seen) -> list[str]:
    x, y = _spec(x), _spec(y)
    if isinstance(x, Model) or isinstance(y, Model):
        return _same_models(x, y, seen) if isinstance(x, Model) and isinstance(y, Model) else [f"{x!r} != {y!r}"]
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        if len(x) != len(y):
            return [f"{len(x)} != {len(y)} items"]
        return [d for u, v in zip(x, y) for d in _same_values(u, v, seen)]
    if isinstance(x, dict) and isinstance(y, dict):
        if set(x) != set(y):
            return [f"keys {sorted(x)} != {sorted(y)}"]
        return [d for k in x for d in _same_values(x[k], y[k], seen)]
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return [] if np.array_equal(np.asarray(x), np.asarray(y)) else ["arrays differ"]
    try:
        return [] if x == y else [f"{x!r} != {y!r}"]
    except Exception:                                    # noqa: BLE001
        return [] if repr(x) == repr(y) else [f"{x!r} != {y!r}"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_frame_drawn_before_is_copied_with_models_of_its_own(results, family):
    """A new session's first figures are the frames every session starts with: the second
    LivePlot of a frame is a copy of the first drawing (a third of its cost), equal to it in
    every property, sharing no Bokeh model, and as live as a drawn one."""
    frame, other = FAMILIES[family](results[0]), FAMILIES[family](results[1])
    drawn, copy = LivePlot(frame), LivePlot(frame)
    assert (drawn.n_clones, copy.n_clones) == (0, 1) and copy.plot is None
    assert _same_models(copy.figure, drawn.figure) == []
    mine, theirs = list(copy.figure.references()), list(drawn.figure.references())
    assert not {id(m) for m in mine} & {id(m) for m in theirs}
    assert not {m.id for m in mine} & {m.id for m in theirs}
    copy.update(other)
    assert _state(copy) == _state(LivePlot(other)) and _state(drawn) == _state(LivePlot(frame))


def test_large_frames_are_drawn_every_time(results):
    big = AttentionPlayground(seq_len=256, num_heads=2).result
    frame = plots.head_frame(big, 0)
    assert LivePlot(frame).n_clones == 0 and LivePlot(frame).n_clones == 0


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("order", [(0, 1), (1, 0), (0, 2)])
def test_an_updated_figure_equals_a_fresh_render(results, family, order):
    make = FAMILIES[family]
    before, after = (results[i] for i in order)
    live = LivePlot(make(before))
    figure = live.figure
    live.update(make(after))
    assert live.figure is figure and live.n_updates == 1
    assert _state(live) == _state(LivePlot(make(after)))


def test_the_same_frame_twice_is_a_no_op(results):
    frame = plots.head_frame(results[0], 0)
    live = LivePlot(frame)
    live.update(frame)
    assert live.n_updates == 0


def test_a_frame_with_other_layers_is_rejected(results):
    live = LivePlot(plots.head_frame(results[0], 0))
    with pytest.raises(ValueError, match=r"layers \['image'\]"):
        live.update(plots.head_frame(results[0], 0, query=2))


def test_an_unchanged_image_layer_is_not_resent(results):
    base = plots.head_frame(results[0], 0)
    live = LivePlot(with_marker(base, 1))
    source = live.leaves[0].handles["source"]
    image = source.data["image"][0]
    live.update(with_marker(base, 4))
    assert source.data["image"][0] is image
    assert live.leaves[1].handles["glyph"].location == 4


def test_hover_token_names_follow_new_text():
    from bokeh.models import HoverTool
    pg = AttentionPlayground(text="the cat sat", num_heads=2)
    live = LivePlot(plots.head_frame(pg.result, 0, 1))
    pg.text = "a dog ran far"
    live.update(plots.head_frame(pg.result, 0, 1))
    hover = live.figure.select_one({"type": HoverTool})
    assert hover.formatters["$x"].args["labels"] == ["a", "dog", "ran", "far"]
    assert hover.formatters["$y"].args["labels"] == ["a", "dog", "ran", "far"]


# -- y axes that keep their width (Frame.ylabel_chars) ----------------------------------------------
@pytest.mark.parametrize("family", ["query", "invariance", "steps 1-4", "output"])
def test_value_axes_keep_their_width_whatever_the_values(results, family):
    """Every label of a value axis is drawn in a monospace font at the same number of characters
    (given ticks padded; automatic ticks by a formatter that pads), for every result: a y axis
    whose width changes lays the whole page out again in the browser."""
    from bokeh.models import CustomJSTickFormatter
    widths = set()
    for r in results:
        frame = FAMILIES[family](r)
        assert frame.ylabel_chars is not None
        live = LivePlot(frame)
        axis = live.figure.yaxis[0]
        assert axis.major_label_text_font == "monospace"
        if frame.yticks is None:
            assert isinstance(axis.formatter, CustomJSTickFormatter)
            assert axis.formatter.args["chars"] == frame.ylabel_chars
        else:
            widths |= {len(v) for v in axis.major_label_overrides.values()}
    assert widths in (set(), {FAMILIES[family](results[0]).ylabel_chars})


@pytest.mark.parametrize("v, want", [(0.0, "0"), (24.21, "24.2"), (-6.0437, "-6.04"),
                                     (0.000123456, "0.000123"), (-1.234e-5, "-1.2e-05"),
                                     (12345.0, "1.23e+04"), (-98765.0, "-9.9e+04")])
def test_short_numbers_have_at_most_8_characters(v, want):
    from dashboard.common.frames import short_number
    assert short_number(v) == want and len(want) <= 8


def test_short_columns_are_sent_as_lists_and_long_ones_as_arrays(results):
    """An update writes numeric columns of up to ``SMALL_COLUMN`` values as JSON lists (each NumPy
    array is a binary buffer of its own: two WebSocket frames); images and long columns stay arrays."""
    from dashboard.common.figures import SMALL_COLUMN
    short, long_ = results[0], AttentionPlayground(seq_len=300, num_heads=2).result
    live = LivePlot(FAMILIES["invariance"](results[1]))
    live.update(FAMILIES["invariance"](short))
    bars = live.leaves[1].handles["source"].data
    assert isinstance(bars["top"], list) and len(bars["top"]) == short.seq_len <= SMALL_COLUMN
    live = LivePlot(FAMILIES["invariance"](results[1]))
    live.update(plots.invariance_frame(long_))
    assert isinstance(live.leaves[1].handles["source"].data["top"], np.ndarray)   # 300 values
    live = LivePlot(FAMILIES["query"](results[1]))
    live.update(FAMILIES["query"](short))
    assert isinstance(live.leaves[0].handles["source"].data["image"][0], np.ndarray)


def test_copy_drawing_writes_a_fresh_drawing_into_a_shown_figure_or_nothing():
    import holoviews as hv
    from dashboard.common.figures import copy_drawing, render

    def curve(ys, title):
        return hv.Curve((range(len(ys)), ys)).opts(title=title, color="red", line_width=2,
                                                   ylim=(min(ys), max(ys)))

    shown = render(curve([0, 1, 2], "a")).state
    fresh = render(curve([5, -1, 3, 9], "b").opts(line_width=4)).state
    source = shown.renderers[0].data_source
    assert copy_drawing(shown, fresh)
    assert shown.renderers[0].data_source is source               # the same models, new contents
    assert list(source.data["y"]) == [5, -1, 3, 9] and shown.title.text == "b"
    assert (shown.y_range.start, shown.y_range.end) == (-1, 9)
    assert shown.renderers[0].glyph.line_width == 4
    other = render(curve([1, 2], "c") * hv.Scatter([(0, 1)])).state  # another structure
    assert not copy_drawing(shown, other)
    assert shown.title.text == "b" and list(source.data["y"]) == [5, -1, 3, 9]
