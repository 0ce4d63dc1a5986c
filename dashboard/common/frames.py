"""Frames: what one figure shows, as plain data, and its first drawing as a HoloViews element.

Every tab turns its state into ``Frame`` objects (``<tab>/plots.py``); ``common.live.LivePlot``
draws a frame once with HoloViews and later writes new frames into the existing Bokeh models;
the static export ships frames to JavaScript. Also here: token tick labels and max-pooling of
large maps, shared by every tab.

Orientation (unit-tested): maps are kept with row 0 = query 0 (``Layer.array``). ``hv.Image``
stores row 0 at the *top*, so ``to_element`` passes ``array[::-1]`` with
``bounds=(-.5, -.5, T-.5, T-.5)`` and ``invert_yaxis=True``: the value drawn at ``y = i`` is query
row ``i``, and query 0 is at the top.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  registers the Bokeh backend (no notebook side effects)
import numpy as np
from bokeh.models import CustomJSHover, CustomJSTickFormatter

from .style import ACCENT

__all__ = [
    "Frame",
    "Layer",
    "MAX_PIXELS",
    "TICK_LABEL_LIMIT",
    "hover_formatters",
    "map_layer",
    "nice_step",
    "number_ticks",
    "pool_factor",
    "pooled",
    "short_number",
    "steady_yaxis",
    "tick_rotation",
    "to_element",
    "token_label",
    "token_ticks",
    "value_lim",
    "with_marker",
]

MAX_PIXELS = 2**20            # pixels shipped for all maps of a view together before pooling kicks in
TICK_LABEL_LIMIT = 32         # token names on the axes up to this many positions


# ----------------------------------------------------------------------------------------------
# Frames
@dataclass(frozen=True, eq=False)
class Layer:
    """One drawn layer of a figure.

    ``kind`` is ``"image"`` (``array`` rows = y from 0 up, ``bounds`` = (l, b, r, t)), ``"bars"``
    (``values`` on unit bins centred at 0..n-1; with ``bin = f`` each bar spans ``f`` positions,
    bar ``i`` covering ``i*f .. i*f+f-1``), ``"hline"``/``"vline"`` (``pos``), ``"vspan"``
    (``lo``..``hi``), ``"text"`` (``x``, ``y``, ``text``), ``"rect"`` (one rectangle: ``bounds``
    = (l, b, r, t)), ``"segments"`` (``array`` of rows ``x0, y0, x1, y1``), ``"labels"``
    (``array`` of rows ``x, y`` and ``texts``), ``"images"`` (several maps in one glyph:
    ``arrays``, one ``(l, b, r, t)`` per map in ``boxes``; drawn like ``"image"``) or ``"quads"``
    (rectangles: ``array`` of rows ``left, bottom, right, top``, and ``columns``: more named
    columns of one value per rectangle, for the hover and for ``style`` mappings such as
    ``color="color"``; bars of any height anywhere, several bar charts in one figure).
    ``style`` holds HoloViews options that never change (colours, dimension names) and is used
    only when the figure is first drawn; ``no_hover=True`` there gives the layer no hover tooltip.
    """

    kind: str
    array: np.ndarray | None = None
    bounds: tuple[float, float, float, float] | None = None
    values: np.ndarray | None = None
    pos: float = 0.0
    lo: float = 0.0
    hi: float = 0.0
    x: float = 0.0
    y: float = 0.0
    text: str = ""
    texts: tuple[str, ...] = ()
    arrays: tuple[np.ndarray, ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    bin: int = 1
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    style: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Frame:
    """Everything one figure shows: layers drawn in order plus the settings that follow the data.

    ``xlim``/``ylim`` are (low, high) data ranges (``invert_yaxis`` draws y from the top),
    ``xticks``/``yticks`` explicit ``[(position, label), ...]`` lists, ``tooltips`` the hover
    lines. ``hover_labels`` (token names) let a tooltip write ``$x{custom}`` / ``$y{custom}``
    to show the position as ``"i (name)"`` (``hover_formatters``); ``hover_ylabels``, when given,
    are used for ``$y`` instead; with ``hover_raw`` the label is shown alone (it names the position
    itself). ``hover_args`` are more arguments of those formatters (``HOVER_LABEL_JS``: ``col``,
    ``row``, ``ncols``, ``nheads`` let ``$x{head}`` name the map under the cursor in a mosaic of
    maps; or, without lookup lists, ``stride``, ``T``, ``ncols``, ``nheads``: maps of ``T``
    positions every ``stride``, the labels then being one map's ``T``, shared by all). ``opts``
    are fixed figure options (size, tools, fonts) for the first drawing.

    ``ylabel_chars`` (figures whose y labels follow the values): y tick labels are drawn in a
    monospace font, right-aligned to that many characters (``yticks`` padded; automatic ticks
    written by ``short_number`` in the browser). The y axis then keeps its width whatever the
    values. In BokehJS a side panel whose size changed lays out the whole *page* again: before,
    a seed or heads change at T=16 spent 40-90 ms of its ~250 ms there.
    """

    layers: tuple[Layer, ...]
    title: str
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    xticks: list[tuple[int, str]] | None = None
    yticks: list[tuple[int, str]] | None = None
    xrotation: int = 0
    invert_yaxis: bool = False
    tooltips: list[tuple[str, str]] | None = None
    hover_labels: tuple[str, ...] | None = None
    hover_ylabels: tuple[str, ...] | None = None
    hover_raw: bool = False
    hover_args: dict[str, Any] | None = None
    opts: dict[str, Any] = field(default_factory=dict)
    ylabel_chars: int | None = None

    def shown_yticks(self) -> list[tuple[int, str]] | None:
        """``yticks`` as drawn: with ``ylabel_chars``, each label padded to that many characters."""
        if self.yticks is None or self.ylabel_chars is None:
            return self.yticks
        return [(p, str(lab).rjust(self.ylabel_chars)) for p, lab in self.yticks]


# position -> "i (name)" in hover tooltips; ``labels`` is updated in place by ``LivePlot``.
# ``{head}`` (a mosaic of maps, ``Frame.hover_args``): the map under the cursor, from its column
# (``col[x]``) and row (``row[y]``) in the mosaic; "" in the gaps between maps.
_HOVER_HEAD_JS = """
if (format === "head" && stride > 0) {
  const X = Math.round(special_vars.x), Y = Math.round(special_vars.y);
  const c = Math.floor(X / stride), r = Math.floor(Y / stride);
  if (c < 0 || r < 0 || c >= ncols || X - c * stride >= T || Y - r * stride >= T
      || r * ncols + c >= nheads) return "";
  return String(r * ncols + c);
}
if (format === "head") {
  const c = col[Math.round(special_vars.x)], r = row[Math.round(special_vars.y)];
  if (c === undefined || r === undefined || c < 0 || r < 0 || r * ncols + c >= nheads) return "";
  return String(r * ncols + c);
}
"""
_MOSAIC_JS = """
let i = Math.round(value);
if (stride > 0) { i -= Math.floor(i / stride) * stride; if (i >= T) i = -1; }
"""
HOVER_LABEL_JS = _HOVER_HEAD_JS + _MOSAIC_JS + """
return (i >= 0 && i < labels.length) ? i + " (" + labels[i] + ")" : String(i);
"""
HOVER_RAW_LABEL_JS = _HOVER_HEAD_JS + _MOSAIC_JS + """
return (i >= 0 && i < labels.length) ? labels[i] : "";
"""
_NO_HEADS = dict(col=[], row=[], ncols=1, nheads=0, stride=0, T=0)


def hover_formatters(labels: tuple[str, ...], ylabels: tuple[str, ...] | None = None,
                     raw: bool = False, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bokeh hover formatters that show ``$x{custom}`` / ``$y{custom}`` as ``"i (labels[i])"``
    (``ylabels[i]`` for ``$y`` when given; ``labels[i]`` alone with ``raw``); ``args``: see
    ``Frame.hover_args``."""
    code = HOVER_RAW_LABEL_JS if raw else HOVER_LABEL_JS
    extra = {**_NO_HEADS, **(args or {})}
    fmt = CustomJSHover(args=dict(labels=list(labels), **extra), code=code)
    if ylabels is None:
        return {"$x": fmt, "$y": fmt}
    return {"$x": fmt, "$y": CustomJSHover(args=dict(labels=list(ylabels), **extra), code=code)}


def _layer_element(layer: Layer) -> hv.Element:
    st = dict(layer.style)
    kdims, vdims = st.pop("kdims", None), st.pop("vdims", None)
    st.pop("no_hover", None)
    if layer.kind in ("image", "images"):
        # hv.Image wants the top row first: flip so that y = row index (0 at the bottom of the data).
        # "images": HoloViews draws the first map; LivePlot then fills the glyph's source with all.
        array, bounds = ((layer.array, layer.bounds) if layer.kind == "image" else
                         (layer.arrays[0], layer.boxes[0]) if layer.arrays else
                         (np.zeros((1, 1), np.float32), (0.0, 0.0, 1.0, 1.0)))
        el = hv.Image(np.ascontiguousarray(array[::-1]), bounds=bounds,
                      kdims=kdims or ["x", "y"], vdims=vdims or ["z"])
    elif layer.kind == "bars":
        edges = np.arange(len(layer.values) + 1) * layer.bin - 0.5
        el = hv.Histogram((edges, layer.values), kdims=kdims or ["x"], vdims=vdims or ["y"])
    elif layer.kind == "hline":
        el = hv.HLine(layer.pos)
    elif layer.kind == "vline":
        el = hv.VLine(layer.pos)
    elif layer.kind == "vspan":
        el = hv.VSpan(layer.lo, layer.hi)
    elif layer.kind == "text":
        el = hv.Text(layer.x, layer.y, layer.text, halign=st.pop("halign", "center"))
    elif layer.kind == "rect":
        el = hv.Rectangles([layer.bounds])
    elif layer.kind == "segments":
        a = np.asarray(layer.array, dtype=np.float64).reshape(-1, 4)
        el = hv.Segments((a[:, 0], a[:, 1], a[:, 2], a[:, 3]))
    elif layer.kind == "labels":
        a = np.asarray(layer.array, dtype=np.float64).reshape(-1, 2)
        el = hv.Labels((a[:, 0], a[:, 1], list(layer.texts)), vdims=["Label"])
    elif layer.kind == "quads":
        a = np.asarray(layer.array, dtype=np.float64).reshape(-1, 4)
        cols = list(layer.columns)
        el = hv.Rectangles((a[:, 0], a[:, 1], a[:, 2], a[:, 3], *(layer.columns[c] for c in cols)),
                           vdims=cols)
    else:
        raise ValueError(f"expected a layer kind of image, images, bars, hline, vline, vspan, text, "
                         f"rect, segments, labels or quads but found {layer.kind!r}")
    return el.opts(**st) if st else el


SHORT_NUMBER_JS = """
let s = tick === 0 ? "0" : String(Number(tick.toPrecision(3)));
if (s.length > chars) s = tick.toExponential(1);
return s.padStart(chars);
"""


def short_number(v: float) -> str:
    """A tick label of at most 8 characters: 3 significant digits, else one in scientific form
    (``SHORT_NUMBER_JS`` writes automatic ticks the same way in the browser)."""
    if v == 0:
        return "0"
    s = f"{v:.3g}"
    return s if len(s) <= 8 else f"{v:.1e}"


def steady_yaxis(chars: int, auto: bool):
    """A HoloViews hook: the y axis's labels in a monospace font (and, for automatic ticks,
    written by ``SHORT_NUMBER_JS`` and padded to ``chars``), so that its width never changes."""
    def hook(plot, element) -> None:
        for axis in plot.state.yaxis:
            axis.major_label_text_font = "monospace"
            if auto:
                axis.formatter = CustomJSTickFormatter(args=dict(chars=chars), code=SHORT_NUMBER_JS)
    return hook


HOVERED = ("image", "images", "bars", "quads")
"""Layer kinds that carry the frame's hover tooltips."""


def to_element(frame: Frame) -> hv.Element | hv.Overlay:
    """The frame as a styled HoloViews element (an Overlay when it has several layers)."""
    figure_opts = dict(
        title=frame.title, xlim=frame.xlim, ylim=frame.ylim, invert_yaxis=frame.invert_yaxis,
        xrotation=frame.xrotation, toolbar=None, **frame.opts,
    )
    if frame.xticks is not None:
        figure_opts["xticks"] = frame.xticks
    if frame.yticks is not None:
        figure_opts["yticks"] = frame.shown_yticks()
    if frame.ylabel_chars is not None:
        figure_opts["hooks"] = [steady_yaxis(frame.ylabel_chars, auto=frame.yticks is None)]
    hover = {"hover_tooltips": frame.tooltips} if frame.tooltips else {}
    if frame.tooltips and frame.hover_labels is not None:
        hover["hover_formatters"] = hover_formatters(frame.hover_labels, frame.hover_ylabels, frame.hover_raw,
                                                     frame.hover_args)
    layers = [_layer_element(layer) for layer in frame.layers]
    layers = [el.opts(default_tools=[], **(hover if layer.kind in HOVERED
                                           and not layer.style.get("no_hover") else {}))
              for el, layer in zip(layers, frame.layers)]
    if len(layers) == 1:
        return layers[0].opts(**figure_opts)
    return hv.Overlay(layers).opts(**figure_opts)


# ----------------------------------------------------------------------------------------------
# ticks, labels, pooling
def pool_factor(T: int, num_maps: int, max_pixels: int = MAX_PIXELS) -> int:
    """Block size ``f`` so that ``num_maps`` maps of ``ceil(T/f)**2`` pixels fit in ``max_pixels``."""
    side = max(1, int(math.isqrt(max_pixels // max(1, num_maps))))
    return 1 if T <= side else math.ceil(T / side)


def pooled(A: np.ndarray, f: int) -> np.ndarray:
    """Max over ``f x f`` blocks of a 2-D map (zero-padded at the far edges); ``f=1`` returns ``A``."""
    if f == 1:
        return A
    R, C = A.shape
    n_r, n_c = math.ceil(R / f), math.ceil(C / f)
    padded = np.zeros((n_r * f, n_c * f), dtype=A.dtype)
    padded[:R, :C] = A
    return padded.reshape(n_r, f, n_c, f).max(axis=(1, 3))


def nice_step(n: int, target: int = 8) -> int:
    raw = max(1.0, n / target)
    base = 10 ** math.floor(math.log10(raw))
    return int(next(m * base for m in (1, 2, 5, 10) if m * base >= raw))


def number_ticks(n: int) -> list[tuple[int, str]]:
    return [(i, str(i)) for i in range(0, n, nice_step(n))]


def _unnamed(tokens: tuple[str, ...]) -> bool:
    """True for the placeholder names ``tok_0 .. tok_{T-1}`` (nothing to read but the position)."""
    return all(t == f"tok_{i}" for i, t in enumerate(tokens))


def token_ticks(tokens: tuple[str, ...]) -> list[tuple[int, str]]:
    """Token names for short sequences of real words, otherwise evenly spaced position numbers.

    Placeholder names (``tok_0 ..``) are shown as their numbers: 16 of them rotated on a 160 px
    axis overlap, and the name says nothing the number does not.
    """
    if len(tokens) > TICK_LABEL_LIMIT or _unnamed(tokens):
        return number_ticks(len(tokens))
    return [(i, t if len(t) <= 12 else t[:11] + "…") for i, t in enumerate(tokens)]


def tick_rotation(tokens: tuple[str, ...]) -> int:
    return 60 if len(tokens) <= TICK_LABEL_LIMIT and not _unnamed(tokens) else 0


def token_label(tokens: tuple[str, ...], i: int) -> str:
    return f"{i} ({tokens[i]})" if tokens[i] != f"tok_{i}" else f"{i}"


def value_lim(values: np.ndarray) -> tuple[float, float]:
    """A y-range holding 0 and every value, with a little headroom."""
    vmin = float(min(0.0, np.min(values, initial=0.0)))
    vmax = float(max(0.0, np.max(values, initial=0.0)))
    pad = 0.06 * ((vmax - vmin) or 1.0)
    return (vmin - pad, vmax + pad)


def map_layer(A: np.ndarray, f: int, kdims, vdim, cmap) -> Layer:
    """Rows x cols map (row 0 = first query/head) covering cells of ``f x f`` positions."""
    R, C = A.shape
    return Layer("image", array=A, bounds=(-0.5, -0.5, C * f - 0.5, R * f - 0.5),
                 style=dict(kdims=kdims, vdims=[vdim], cmap=cmap, clim=(0, 1)))


def with_marker(frame: Frame, query: int) -> Frame:
    """``frame``'s map with the selected-query line at ``query`` (replacing any earlier line)."""
    line = Layer("hline", pos=float(query),
                 style=dict(color=ACCENT, line_width=1.5, line_dash="dashed", alpha=0.9))
    return replace(frame, layers=(frame.layers[0], line))
