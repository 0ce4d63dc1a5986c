"""``LivePlot``: a Bokeh figure drawn once by HoloViews from a ``common.frames.Frame``, then updated
in place. HoloViews draws the figure the first time (styles, colour mapper, hover, axes) from
``to_element(frame)``. Later frames of the same shape only push their *data* into the existing
Bokeh models: glyph sources, annotation positions, title, axis ranges and tick labels. No model
is created or replaced, so the browser receives a small patch and the page layout is never rebuilt.

Why not ``hv.DynamicMap`` for the updates: a DynamicMap update builds a new HoloViews element
(about 1-6 ms each) and walks HoloViews' generic ``update_frame`` (ranges, labels, axes, hover,
hooks; measured at 12-20 ms per plot on this project's 2-core machine), against well under 1 ms
to write a ``ColumnDataSource``. ``tests/dashboard/common/test_figures.py`` checks that an updated figure
holds exactly the data of a freshly drawn one.

Nothing here is shared between sessions: every render gets its own HoloViews renderer (a shared
one keeps the last plot and its document, and one session's failure there broke the others).
No Panel import: the static export draws its figures with these too.
"""
from __future__ import annotations

import hashlib
import math
import pickle
import threading
from collections import OrderedDict

import numpy as np
from bokeh.core.serialization import Deserializer, Serializer
from bokeh.model import Model
from bokeh.util.serialization import make_id
from bokeh.models import ColorMapper, CustomJSHover, FixedTicker, HoverTool
from holoviews.core.util import dimension_sanitizer
from holoviews.plotting.bokeh import BokehRenderer

from .frames import Frame, Layer, to_element

__all__ = ["DRAWING_CACHE_SIZE", "DrawingCache", "EXACT_HOVER_JS", "LivePlot", "copy_drawing", "exact_hover",
           "layer_source_data", "render", "zoom_tools"]


def render(element):
    """The HoloViews (Bokeh) plot of ``element``, from a renderer of its own; ``.state`` is the figure.

    Drawn on a plain 2-D canvas, not WebGL (HoloViews' default): these figures hold a few glyphs
    (an image, some bars and lines), where WebGL only adds work. Every repaint of a WebGL figure
    also copies its GL canvas into the 2-D one (``blit_webgl``), and each figure compiles its
    shaders when first shown; in chromium without a GPU (software GL) that was about a tenth of
    a page's first render and of every repaint.
    """
    return BokehRenderer.instance(webgl=False).get_plot(element)


_NOT_COPIED = {"id", "name", "tags", "js_property_callbacks", "js_event_callbacks",
               "subscribed_events", "syncable", "css_classes", "context_menu"}


def _holds_model(value) -> bool:
    """Whether a property value refers to a Bokeh model (a source, a glyph, a colour transform)."""
    if isinstance(value, Model):
        return True
    if isinstance(value, (list, tuple, set)):
        return any(_holds_model(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_model(v) for v in value.values())
    return any(isinstance(getattr(value, a, None), Model) for a in ("transform", "units"))


def _copy_scalars(dst, src) -> None:
    """Every property of ``src`` that holds no model onto ``dst`` where it differs."""
    for name in sorted(src.properties() - _NOT_COPIED):
        value = getattr(src, name)
        if _holds_model(value):
            continue
        try:
            same = bool(getattr(dst, name) == value)
        except (TypeError, ValueError):          # arrays: compare by assigning
            same = False
        if not same:
            setattr(dst, name, value)


def _structure(fig) -> tuple:
    renderers = tuple((type(r).__name__, type(getattr(r, "glyph", None)).__name__) for r in fig.renderers)
    axes = tuple((type(a).__name__, type(a.ticker).__name__) for a in (*fig.xaxis, *fig.yaxis))
    mappers = len(list(fig.select(ColorMapper)))
    return renderers, axes, mappers, type(fig.x_range).__name__, type(fig.y_range).__name__


def copy_drawing(shown, fresh) -> bool:
    """Make the figure ``shown`` (on a page) show what ``fresh`` shows: a new HoloViews drawing of
    an element built the same way (``render``), not displayed. Only data and plain properties are
    written (sources, glyph sizes and colours, the colour range, axis ranges and ticks, the title),
    so the page gets a patch and keeps its layout, where a new figure in a pane would change the
    pane's children and lay the whole page out again. Returns False, writing nothing, when the two
    figures differ in structure (renderers, glyph types, axes, colour mappers): replace it then.
    """
    structure = _structure(fresh)
    if structure != _structure(shown) or structure[2] > 1:    # mappers are paired by order: one
        return False
    shown.title.text = fresh.title.text
    _copy_scalars(shown.x_range, fresh.x_range)
    _copy_scalars(shown.y_range, fresh.y_range)
    for mine, theirs in zip(shown.renderers, fresh.renderers):
        if hasattr(theirs, "data_source"):
            mine.data_source.data = dict(theirs.data_source.data)
            _copy_scalars(mine.glyph, theirs.glyph)
        else:                                      # an annotation drawn as a renderer (a Span)
            _copy_scalars(mine, theirs)
    for mine, theirs in zip(shown.select(ColorMapper), fresh.select(ColorMapper)):
        _copy_scalars(mine, theirs)
    for mine, theirs in zip((*shown.xaxis, *shown.yaxis), (*fresh.xaxis, *fresh.yaxis)):
        _copy_scalars(mine, theirs)
        _copy_scalars(mine.ticker, theirs.ticker)
    return True


def layer_source_data(layer: Layer, columns) -> dict | None:
    """The ``ColumnDataSource.data`` HoloViews draws for ``layer`` (None: no source to fill).

    ``columns`` are the source's current column names (a bar layer also carries its dimension
    columns for the hover).
    """
    if layer.kind == "image":
        l, b, r, t = layer.bounds
        img = layer.array
        if img.dtype.kind == "b":
            img = img.astype(np.int8)
        return dict(x=[l], y=[b], dw=[r - l], dh=[t - b], image=[img])  # row 0 drawn at y = b
    if layer.kind == "images":
        boxes = np.asarray(layer.boxes, dtype=np.float64).reshape(-1, 4)
        return dict(x=boxes[:, 0], y=boxes[:, 1], dw=boxes[:, 2] - boxes[:, 0],
                    dh=boxes[:, 3] - boxes[:, 1], image=list(layer.arrays))
    if layer.kind == "bars":
        v = layer.values
        edges = np.arange(len(v) + 1, dtype=np.float64) * layer.bin - 0.5
        data = dict(top=v, left=edges[:-1], right=edges[1:])
        kdim = dimension_sanitizer(str(layer.style.get("kdims", ["x"])[0]))
        for col in columns:
            if col not in data:
                data[col] = edges[:-1] + 0.5 if col == kdim else v     # a bin's first position
        return data
    if layer.kind == "text":
        return dict(x=np.array([layer.x]), y=np.array([layer.y]), text=np.array([layer.text]))
    if layer.kind == "rect":
        l, b, r, t = (np.array([float(v)]) for v in layer.bounds)
        return dict(left=l, bottom=b, right=r, top=t)
    if layer.kind == "segments":
        a = np.asarray(layer.array, dtype=np.float64).reshape(-1, 4)
        return dict(x0=a[:, 0], y0=a[:, 1], x1=a[:, 2], y1=a[:, 3])
    if layer.kind == "labels":
        a = np.asarray(layer.array, dtype=np.float64).reshape(-1, 2)
        return dict(x=a[:, 0], y=a[:, 1], Label=np.array(layer.texts, dtype=object))
    if layer.kind == "quads":
        a = np.asarray(layer.array, dtype=np.float64).reshape(-1, 4)
        data = dict(left=a[:, 0], bottom=a[:, 1], right=a[:, 2], top=a[:, 3])
        data.update(x0=data["left"], y0=data["bottom"], x1=data["right"], y1=data["top"])  # hover
        for col in columns:
            if col in layer.columns:
                data[col] = np.asarray(layer.columns[col])
            elif col.endswith("_color") and "color" in layer.columns:   # HoloViews' copy of a
                data[col] = np.asarray(layer.columns["color"])           # color="color" mapping
        return {col: data[col] for col in columns if col in data} if columns else data
    return None


SMALL_COLUMN = 128
"""Numeric columns up to this many values are sent as JSON lists, longer ones as binary arrays."""


def _compact(data: dict | None) -> dict | None:
    """``data`` with its short 1-D numeric columns as lists.

    Bokeh sends every NumPy array as a binary buffer of its own: two WebSocket frames, each one
    a task for the browser. A T=16 Playground update held ~50 arrays of 4-64 numbers, 107 frames
    in all, where the numbers themselves are a few hundred bytes of JSON.
    """
    if data is None:
        return None
    return {k: (v.tolist() if isinstance(v, np.ndarray) and v.ndim == 1 and v.size <= SMALL_COLUMN
                and v.dtype.kind in "fiub" else v) for k, v in data.items()}


class LivePlot:
    """One Bokeh figure kept alive across updates.

    Args:
        frame: the first frame; later frames must have the same layer kinds in the same order.

    A frame drawn before in this process (the same frame: every new session's first figures are)
    is not drawn again: the figure is a copy of that drawing (``DrawingCache``: its Bokeh models
    rebuilt from their serialised form with new ids, about a third of a HoloViews drawing's time).

    Attributes:
        plot: the HoloViews plot that drew the figure (its handles name the Bokeh models), or
            None for a copy (``n_clones`` 1).
        leaves: one object per layer, in the frame's order, with ``handles["source"]`` and
            ``handles["glyph"]``, that layer's Bokeh models (HoloViews' plots, or the copy's).
        figure: the Bokeh figure (give it to ``pn.pane.Bokeh``).
        frame: the frame shown now; ``n_updates``: how many frames were pushed.
    """

    def __init__(self, frame: Frame):
        key = _fingerprint(frame)
        cached = _DRAWINGS.get(key)
        if cached is not None:                     # drawn before: a copy of that drawing
            self.plot = None
            self.figure, self.leaves = _clone(*cached)
            self.n_clones = 1
        else:
            self.plot = render(to_element(frame))
            self.figure = self.plot.state
            if self.figure.sizing_mode == "fixed" and self.figure.width is None:
                self.figure.sizing_mode = None    # sized by frame_width/height; avoids Bokeh's W-1005
            for grid in self.figure.grid:       # HoloViews hides grids by colour; BokehJS still
                if grid.grid_line_color is None and grid.band_fill_color is None:   # lays them out
                    grid.visible = False            # and paints them on every repaint
            self.leaves = list(self.plot.subplots.values()) if len(frame.layers) > 1 else [self.plot]
            for leaf, layer in zip(self.leaves, frame.layers):
                if layer.kind == "images":                 # HoloViews drew the first map only
                    self._update_layer(leaf, layer)
            _DRAWINGS.put(key, self.figure, self.leaves)
            self.n_clones = 0
        self._kinds = [layer.kind for layer in frame.layers]
        self._hover = list(self.figure.select(type=HoverTool))   # select() walks the model graph
        self.frame = frame
        self.n_updates = 0

    # -- layers --------------------------------------------------------------------------------
    def _update_layer(self, leaf, layer: Layer) -> None:
        glyph = leaf.handles.get("glyph")
        if layer.kind in ("hline", "vline"):
            if glyph.location != layer.pos:
                glyph.location = layer.pos
        elif layer.kind == "vspan":
            if (glyph.left, glyph.right) != (layer.lo, layer.hi):
                glyph.update(left=layer.lo, right=layer.hi)
        else:
            source = leaf.handles["source"]
            source.data = _compact(layer_source_data(layer, list(source.data)))

    # -- figure settings -----------------------------------------------------------------------
    @staticmethod
    def _set_range(rng, lim, inverted: bool) -> None:
        lo, hi = float(lim[0]), float(lim[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return
        start, end = (hi, lo) if inverted else (lo, hi)
        if (rng.start, rng.end) != (start, end):
            rng.update(start=start, end=end, reset_start=start, reset_end=end)

    @staticmethod
    def _set_ticks(axes, ticks, rotation) -> None:
        if ticks is None:
            return
        positions = [float(p) for p, _ in ticks]
        labels = {int(p): str(s) for p, s in ticks}
        for axis in axes:
            if isinstance(axis.ticker, FixedTicker) and list(axis.ticker.ticks) != positions:
                axis.ticker.ticks = positions
            if axis.major_label_overrides != labels:
                axis.major_label_overrides = labels
            if rotation is not None:
                orient = math.radians(rotation) if rotation else "horizontal"
                if axis.major_label_orientation != orient:
                    axis.major_label_orientation = orient

    def _update_figure(self, frame: Frame) -> None:
        fig = self.figure
        if fig.title is not None and fig.title.text != frame.title:
            fig.title.text = frame.title
        if (frame.xlim, frame.ylim, frame.invert_yaxis) != (self.frame.xlim, self.frame.ylim,
                                                             self.frame.invert_yaxis):
            self._set_range(fig.x_range, frame.xlim, False)     # unchanged limits keep the
            self._set_range(fig.y_range, frame.ylim, frame.invert_yaxis)   # user's zoom
        self._set_ticks(fig.xaxis, frame.xticks, frame.xrotation)
        self._set_ticks(fig.yaxis, frame.shown_yticks(), None)
        height = frame.opts.get("frame_height")
        if height is not None and fig.frame_height != height:
            fig.frame_height = height
        width = frame.opts.get("frame_width")
        if width is not None and fig.frame_width != width:
            fig.frame_width = width
        if frame.tooltips:
            for tool in self._hover:
                if [tuple(t) for t in tool.tooltips] != [tuple(t) for t in frame.tooltips]:
                    tool.tooltips = list(frame.tooltips)
        if frame.hover_labels is not None and (frame.hover_labels != self.frame.hover_labels
                                               or frame.hover_ylabels != self.frame.hover_ylabels
                                               or frame.hover_args != self.frame.hover_args):
            labels = list(frame.hover_labels)
            ylabels = labels if frame.hover_ylabels is None else list(frame.hover_ylabels)
            extra = dict(frame.hover_args or {})
            for tool in self._hover:
                for field_name, fmt in (tool.formatters or {}).items():
                    if isinstance(fmt, CustomJSHover) and "labels" in fmt.args:
                        new = {"labels": ylabels if field_name == "$y" else labels, **extra}
                        if any(fmt.args.get(k) != v for k, v in new.items()):
                            fmt.args = {**fmt.args, **new}

    def update(self, frame: Frame) -> None:
        """Show ``frame`` in place; layers that are the very same objects as before are skipped."""
        if frame is self.frame:
            return
        kinds = [layer.kind for layer in frame.layers]
        if kinds != self._kinds:
            raise ValueError(f"expected a frame with layers {self._kinds} like the first one but "
                             f"found {kinds}")
        for leaf, layer, old in zip(self.leaves, frame.layers, self.frame.layers):
            if layer is not old:
                self._update_layer(leaf, layer)
        self._update_figure(frame)
        self.frame = frame
        self.n_updates += 1


# ----------------------------------------------------------------------------------------------
# Drawings kept per process, copied for each new figure of the same frame
DRAWING_CACHE_SIZE = 48
"""Frames whose drawing is kept (least recently used dropped): a Playground session starts with 6."""
DRAWING_MAX_BYTES = 64_000
"""Frames larger than this (pickled: their data) are drawn every time: a copy saves little there and
the cache would hold their data."""


def _fingerprint(frame: Frame) -> str | None:
    """Equal for equal frames (their layers' data and styles, titles, ticks, options); None for a
    frame too large to keep or one that does not pickle."""
    try:
        blob = pickle.dumps(frame, protocol=5)
    except Exception:                            # noqa: BLE001 - an unpicklable style: no cache
        return None
    return hashlib.sha1(blob).hexdigest() if len(blob) <= DRAWING_MAX_BYTES else None


class DrawingCache:
    """Serialised Bokeh figures by frame fingerprint, shared by every session of the process.

    What is kept is plain data (Bokeh's serialised form, arrays as base64), never a model: each
    copy gets models of its own with new ids, so no Bokeh object is shared between sessions or
    threads. ``hits``/``misses`` count lookups.
    """

    def __init__(self, size: int = DRAWING_CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[str, tuple[dict, list[dict]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str | None):
        if key is None:
            return None
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: str | None, figure, leaves) -> None:
        if key is None:
            return
        rep = Serializer(deferred=False).encode(figure)
        drawn = {m.id for m in figure.references()}      # HoloViews also hands out sources it
        handles = [{name: model.id for name, model in leaf.handles.items()   # did not draw (spans)
                    if name in ("source", "glyph") and isinstance(model, Model) and model.id in drawn}
                   for leaf in leaves]
        with self._lock:
            self._items[key] = (rep, handles)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_DRAWINGS = DrawingCache()


class _Leaf:
    """A copied layer's models, as ``LivePlot.leaves`` names them (``handles``)."""

    def __init__(self, handles: dict):
        self.handles = handles


def _new_ids(rep, ids: dict):
    """``rep`` with every model id replaced by a new one (``ids``: old -> new, filled here)."""
    if isinstance(rep, dict):
        return {k: (ids.setdefault(v, make_id()) if k == "id" and isinstance(v, str) else _new_ids(v, ids))
                for k, v in rep.items()}
    if isinstance(rep, (list, tuple)):                   # a map's entries are tuples
        return type(rep)(_new_ids(v, ids) for v in rep)
    return rep


def _clone(rep: dict, handles: list[dict]):
    """A new figure from a kept drawing, and its leaves."""
    ids: dict[str, str] = {}
    figure = Deserializer().decode(_new_ids(rep, ids))
    models = {m.id: m for m in figure.references()}
    leaves = [_Leaf({name: models[ids[old]] for name, old in h.items()}) for h in handles]
    return figure, leaves


# ----------------------------------------------------------------------------------------------
# zoom and exact hover on pooled maps (the Playground's heads mosaic, the Model heads main map)
EXACT_HOVER_JS = """
const d = exact.data;
if (d.x.length && d.x[0] === Math.round(special_vars.x) && d.y[0] === Math.round(special_vars.y))
  return d.text[0];
return "…";
"""


def exact_hover(figure, source) -> None:
    """Let a map figure's tooltip line ``$sx{exact}`` show the exact weight the server put in
    ``source`` (``x``, ``y``: the cell in the figure's data coordinates, ``text``: the weight) for
    the cell under the cursor ("…" until it arrives). Used by the Playground's heads mosaic and
    the Model heads tab's main map."""
    fmt = CustomJSHover(args=dict(exact=source), code=EXACT_HOVER_JS)
    for tool in figure.select(type=HoverTool):
        tool.formatters = {**(tool.formatters or {}), "$sx": fmt}


def zoom_tools(figure) -> None:
    """Box zoom, wheel zoom (active on scroll), pan and reset on a map figure, in a toolbar that
    shows on hover (it overlays the figure: showing it lays nothing out again)."""
    from bokeh.models import BoxZoomTool, PanTool, ResetTool, WheelZoomTool
    wheel = WheelZoomTool()
    figure.add_tools(BoxZoomTool(), wheel, PanTool(), ResetTool())
    figure.toolbar.active_scroll = wheel
    figure.toolbar.autohide = True
    # BokehJS announces a wheel zoom (RangesUpdate) only once no wheel event came for
    # ``lod_timeout`` ms (500 by default: half a second added to every refine)
    figure.lod_timeout = 100
