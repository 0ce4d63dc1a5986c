"""Pure functions from a computed result to what each figure shows, and to HoloViews elements.

No attention math happens here: every number comes from ``PlaygroundResult`` /
``SingleTokenSteps`` (``dashboard.playground``). The only array work is display-side: max-pooling
very large maps down to a screen-sized image and splitting kept / blocked bars.

Each view has two functions:

- ``*_frame(...) -> Frame``: the data and figure settings (title, ranges, ticks) of one figure,
  as plain arrays. Cheap; the live dashboard pushes frames into existing figures
  (``dashboard.live.LivePlot``) and the static export ships them to JavaScript.
- the element function (``head_heatmap``, ``query_heads``, ...): ``to_element(frame)``, the same
  figure as a styled HoloViews element (Bokeh backend), used to draw a figure the first time,
  in notebooks and in tests.

Orientation (unit-tested): maps are kept with row 0 = query 0 (``Layer.array``). ``hv.Image``
stores row 0 at the *top*, so ``to_element`` passes ``array[::-1]`` with
``bounds=(-.5, -.5, T-.5, T-.5)`` and ``invert_yaxis=True``: the value drawn at ``y = i`` is query
row ``i``, and query 0 is at the top.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field, replace
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  registers the Bokeh backend (no notebook side effects)
import numpy as np

from .playground import PlaygroundResult, SingleTokenSteps

__all__ = [
    "CMAP",
    "Frame",
    "Layer",
    "MAX_PIXELS",
    "TICK_LABEL_LIMIT",
    "VIOLATION_COLOR",
    "colorbar_strip",
    "head_frame",
    "hover_formatters",
    "head_heatmap",
    "invariance_chart",
    "invariance_frame",
    "invariance_summary_html",
    "mask_frame",
    "mask_image",
    "pool_factor",
    "pooled",
    "query_frame",
    "query_heads",
    "single_token_bars",
    "single_token_frames",
    "to_element",
    "verdict_html",
    "with_marker",
]

CMAP = "magma"
ACCENT = "#22d3ee"            # selected query marker
KEEP_COLOR = "#2563eb"
BLOCKED_COLOR = "#cbd5e1"
SAME_COLOR = "#16a34a"        # positions 0..L (must not change)
VIOLATION_COLOR = "#dc2626"   # positions 0..L that changed beyond atol (the check fails)
CHANGED_COLOR = "#f97316"     # positions after L (perturbed)
MAX_PIXELS = 2**20            # pixels shipped for all head maps together before pooling kicks in
TICK_LABEL_LIMIT = 32         # token names on the axes up to this many positions
HEAD_SIZE = 160               # frame width/height of one head's map, px (4 + colour bar per row at 1400 px)


# ----------------------------------------------------------------------------------------------
# Frames
@dataclass(frozen=True, eq=False)
class Layer:
    """One drawn layer of a figure.

    ``kind`` is ``"image"`` (``array`` rows = y from 0 up, ``bounds`` = (l, b, r, t)), ``"bars"``
    (``values`` on unit bins centred at 0..n-1), ``"hline"``/``"vline"`` (``pos``), ``"vspan"``
    (``lo``..``hi``) or ``"text"`` (``x``, ``y``, ``text``). ``style`` holds HoloViews options that
    never change (colours, dimension names) and is used only when the figure is first drawn.
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
    style: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Frame:
    """Everything one figure shows: layers drawn in order plus the settings that follow the data.

    ``xlim``/``ylim`` are (low, high) data ranges (``invert_yaxis`` draws y from the top),
    ``xticks``/``yticks`` explicit ``[(position, label), ...]`` lists, ``tooltips`` the hover
    lines. ``hover_labels`` (token names) let a tooltip write ``$x{custom}`` / ``$y{custom}``
    to show the position as ``"i (name)"`` (``hover_formatters``). ``opts`` are fixed figure
    options (size, tools, fonts) for the first drawing.
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
    opts: dict[str, Any] = field(default_factory=dict)


# position -> "i (name)" in hover tooltips; ``labels`` is updated in place by ``LivePlot``
HOVER_LABEL_JS = """
const i = Math.round(value);
return (i >= 0 && i < labels.length) ? i + " (" + labels[i] + ")" : String(i);
"""


def hover_formatters(labels: tuple[str, ...]) -> dict[str, Any]:
    """Bokeh hover formatters that show ``$x{custom}`` / ``$y{custom}`` as ``"i (labels[i])"``."""
    from bokeh.models import CustomJSHover
    fmt = CustomJSHover(args=dict(labels=list(labels)), code=HOVER_LABEL_JS)
    return {"$x": fmt, "$y": fmt}


def _layer_element(layer: Layer) -> hv.Element:
    st = dict(layer.style)
    kdims, vdims = st.pop("kdims", None), st.pop("vdims", None)
    if layer.kind == "image":
        # hv.Image wants the top row first: flip so that y = row index (0 at the bottom of the data)
        el = hv.Image(np.ascontiguousarray(layer.array[::-1]), bounds=layer.bounds,
                      kdims=kdims or ["x", "y"], vdims=vdims or ["z"])
    elif layer.kind == "bars":
        edges = np.arange(len(layer.values) + 1) - 0.5
        el = hv.Histogram((edges, layer.values), kdims=kdims or ["x"], vdims=vdims or ["y"])
    elif layer.kind == "hline":
        el = hv.HLine(layer.pos)
    elif layer.kind == "vline":
        el = hv.VLine(layer.pos)
    elif layer.kind == "vspan":
        el = hv.VSpan(layer.lo, layer.hi)
    elif layer.kind == "text":
        el = hv.Text(layer.x, layer.y, layer.text, halign=st.pop("halign", "center"))
    else:
        raise ValueError(f"expected a layer kind of image, bars, hline, vline, vspan or text but "
                         f"found {layer.kind!r}")
    return el.opts(**st) if st else el


def to_element(frame: Frame) -> hv.Element | hv.Overlay:
    """The frame as a styled HoloViews element (an Overlay when it has several layers)."""
    figure_opts = dict(
        title=frame.title, xlim=frame.xlim, ylim=frame.ylim, invert_yaxis=frame.invert_yaxis,
        xrotation=frame.xrotation, toolbar=None, **frame.opts,
    )
    if frame.xticks is not None:
        figure_opts["xticks"] = frame.xticks
    if frame.yticks is not None:
        figure_opts["yticks"] = frame.yticks
    hover = {"hover_tooltips": frame.tooltips} if frame.tooltips else {}
    if frame.tooltips and frame.hover_labels is not None:
        hover["hover_formatters"] = hover_formatters(frame.hover_labels)
    layers = [_layer_element(layer) for layer in frame.layers]
    layers = [el.opts(default_tools=[], **(hover if layer.kind in ("image", "bars") else {}))
              for el, layer in zip(layers, frame.layers)]
    if len(layers) == 1:
        return layers[0].opts(**figure_opts)
    return hv.Overlay(layers).opts(**figure_opts)


# ----------------------------------------------------------------------------------------------
# helpers
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


def _nice_step(n: int, target: int = 8) -> int:
    raw = max(1.0, n / target)
    base = 10 ** math.floor(math.log10(raw))
    return int(next(m * base for m in (1, 2, 5, 10) if m * base >= raw))


def _number_ticks(n: int) -> list[tuple[int, str]]:
    return [(i, str(i)) for i in range(0, n, _nice_step(n))]


def _ticks(tokens: tuple[str, ...]) -> list[tuple[int, str]]:
    """Token names for short sequences, otherwise about 8 evenly spaced position numbers."""
    if len(tokens) > TICK_LABEL_LIMIT:
        return _number_ticks(len(tokens))
    return [(i, t if len(t) <= 12 else t[:11] + "…") for i, t in enumerate(tokens)]


def _rotation(tokens: tuple[str, ...]) -> int:
    return 60 if len(tokens) <= TICK_LABEL_LIMIT else 0


def _label(tokens: tuple[str, ...], i: int) -> str:
    return f"{i} ({tokens[i]})" if tokens[i] != f"tok_{i}" else f"{i}"


def _value_lim(values: np.ndarray) -> tuple[float, float]:
    """A y-range holding 0 and every value, with a little headroom."""
    vmin = float(min(0.0, np.min(values, initial=0.0)))
    vmax = float(max(0.0, np.max(values, initial=0.0)))
    pad = 0.06 * ((vmax - vmin) or 1.0)
    return (vmin - pad, vmax + pad)


def _map_layer(A: np.ndarray, f: int, kdims, vdim, cmap) -> Layer:
    """Rows x cols map (row 0 = first query/head) covering cells of ``f x f`` positions."""
    R, C = A.shape
    return Layer("image", array=A, bounds=(-0.5, -0.5, C * f - 0.5, R * f - 0.5),
                 style=dict(kdims=kdims, vdims=[vdim], cmap=cmap, clim=(0, 1)))


# ----------------------------------------------------------------------------------------------
# heads
def head_frame(result: PlaygroundResult, head: int, query: int | None = None) -> Frame:
    """One head's ``T x T`` map: queries on y (0 at the top), keys on x, colour = weight in 0..1.

    Above ``MAX_PIXELS`` for all heads together the map is max-pooled over blocks (the title says
    so): T = 1024 with 16 heads ships 16 maps of 256 x 256. ``query`` adds the dashed line
    marking the selected query.
    """
    H, T = result.num_heads, result.seq_len
    if not 0 <= head < H:
        raise ValueError(f"expected head in 0..{H - 1} but found head={head}")
    f = pool_factor(T, H)
    A = pooled(result.weights[head].numpy(), f)
    ticks = _ticks(result.tokens)
    layers = (_map_layer(A, f, ["key", "query"], hv.Dimension("weight", range=(0, 1)), CMAP),)
    frame = Frame(
        layers=layers, title=f"Head {head}" + (f" · max of {f}×{f}" if f > 1 else ""),
        xlim=(-0.5, T - 0.5), ylim=(-0.5, T - 0.5), xticks=ticks, yticks=ticks,
        xrotation=_rotation(result.tokens), invert_yaxis=True,
        tooltips=[("head", str(head)), ("query", "$y{custom}"), ("key", "$x{custom}"),
                  ("max weight" if f > 1 else "weight", "@image{0.000}")],
        hover_labels=result.tokens,
        opts=dict(frame_width=HEAD_SIZE, frame_height=HEAD_SIZE, xlabel="key", ylabel="query",
                  fontsize={"title": "11pt"}),
    )
    return frame if query is None else with_marker(frame, query)


def with_marker(frame: Frame, query: int) -> Frame:
    """``frame``'s map with the selected-query line at ``query`` (replacing any earlier line)."""
    line = Layer("hline", pos=float(query),
                 style=dict(color=ACCENT, line_width=1.5, line_dash="dashed", alpha=0.9))
    return replace(frame, layers=(frame.layers[0], line))


def head_heatmap(result: PlaygroundResult, head: int, query: int | None = None) -> hv.Element:
    """``head_frame`` as an ``hv.Image`` (an Overlay with the query line when ``query`` is given)."""
    return to_element(head_frame(result, head, query))


def colorbar_strip(height: int = HEAD_SIZE) -> hv.Image:
    """The shared 0..1 colour scale of every weight map, as a thin vertical strip."""
    grad = np.linspace(1, 0, 256, dtype=np.float32)[:, None]            # top = 1
    return hv.Image(grad, bounds=(0, 0, 1, 1), kdims=["x", "weight"], vdims=["w"]).opts(
        cmap=CMAP, clim=(0, 1), width=70, height=height + 45, xaxis=None, yaxis="right",
        toolbar=None, default_tools=[], title="weight", fontsize={"title": "9pt"},
    )


def query_frame(result: PlaygroundResult, query: int) -> Frame:
    """Heads x keys for one query: row ``h`` is how query ``query`` spreads its weight in head ``h``."""
    H, T = result.num_heads, result.seq_len
    query = min(max(query, 0), T - 1)
    A = result.weights[:, query, :].numpy()                              # (H, T)
    return Frame(
        layers=(_map_layer(A, 1, ["key", "head"], hv.Dimension("weight", range=(0, 1)), CMAP),),
        title=f"Query {_label(result.tokens, query)}: weight on each key, per head",
        xlim=(-0.5, T - 0.5), ylim=(-0.5, H - 0.5), xticks=_ticks(result.tokens),
        yticks=[(h, f"head {h}") for h in range(H)], xrotation=_rotation(result.tokens),
        invert_yaxis=True,
        tooltips=[("head", "$y{0}"), ("key", "$x{custom}"), ("weight", "@image{0.000}")],
        hover_labels=result.tokens,
        opts=dict(frame_width=520, frame_height=max(60, 24 * H), colorbar=True, xlabel="key", ylabel="",
                  fontsize={"title": "11pt"}),
    )


def query_heads(result: PlaygroundResult, query: int) -> hv.Image:
    """``query_frame`` as an ``hv.Image``."""
    return to_element(query_frame(result, query))


# ----------------------------------------------------------------------------------------------
# single token, step by step
def _bars_frame(layers: tuple[Layer, ...], n: int, title: str, xlabel: str, ylabel: str,
                ticks, rotation: int, ylim, width: int = 140) -> Frame:
    return Frame(layers=layers, title=title, xlim=(-0.5, n - 0.5), ylim=ylim, xticks=ticks,
                 xrotation=rotation, tooltips=[(xlabel, "@{%s}" % xlabel), (ylabel, "@top{0.0000}")],
                 opts=dict(frame_width=width, frame_height=140, xlabel=xlabel, ylabel=ylabel,
                           fontsize={"title": "10pt"}))


def _bars(values: np.ndarray, color: str, xlabel: str, ylabel: str) -> Layer:
    return Layer("bars", values=np.asarray(values, dtype=np.float32),
                 style=dict(kdims=[xlabel], vdims=[ylabel], color=color, line_color=None))


def single_token_frames(steps: SingleTokenSteps, tokens: tuple[str, ...]) -> list[Frame]:
    """Five frames for one query in one head: raw scores, scaled scores, mask, weights, output.

    Blocked keys (keep-mask False) are drawn in grey in the two score panels and get weight 0.
    """
    keep = steps.keep.numpy()
    T = len(keep)
    ticks, rot = _ticks(tokens), _rotation(tokens)

    def scores(values, ylabel, title):
        layers = (_bars(np.where(keep, values, 0.0), KEEP_COLOR, "key", ylabel),
                  _bars(np.where(keep, 0.0, values), BLOCKED_COLOR, "key", ylabel))
        return _bars_frame(layers, T, title, "key", ylabel, ticks, rot, _value_lim(values))

    out = steps.output.numpy()
    return [
        scores(steps.raw.numpy(), "score", "1 · raw scores q·k"),
        scores(steps.scaled.numpy(), "scaled", f"2 · scaled ×{steps.scale:.3f}"),
        _bars_frame((_bars(keep, SAME_COLOR, "key", "keep"),), T, "3 · keep-mask",
                    "key", "keep", ticks, rot, (0, 1.05)),
        _bars_frame((_bars(steps.weights.numpy(), "#9333ea", "key", "weight"),), T,
                    "4 · softmax weights", "key", "weight", ticks, rot, (0, 1.05)),
        _bars_frame((_bars(out, "#0f766e", "dim", "value"),), len(out), "5 · output Σ w·v",
                    "dim", "value", _number_ticks(len(out)), 0, _value_lim(out), width=130),
    ]


def single_token_bars(steps: SingleTokenSteps, tokens: tuple[str, ...]) -> hv.Layout:
    """``single_token_frames`` as a Layout of five panels."""
    return hv.Layout([to_element(f) for f in single_token_frames(steps, tokens)]).cols(5)


# ----------------------------------------------------------------------------------------------
# causal mask and invariance
def mask_frame(result: PlaygroundResult, *, size: int = 180) -> Frame:
    """The keep-mask that was applied: blue = may attend, grey = blocked."""
    T = result.seq_len
    f = pool_factor(T, 1, MAX_PIXELS // 4)
    A = pooled(result.mask.numpy().astype(np.float32), f)
    ticks = _ticks(result.tokens)
    return Frame(
        layers=(_map_layer(A, f, ["key", "query"], "keep", [BLOCKED_COLOR, KEEP_COLOR]),),
        title="Causal keep-mask" if result.causal else "No mask (full attention)",
        xlim=(-0.5, T - 0.5), ylim=(-0.5, T - 0.5), xticks=ticks, yticks=ticks,
        xrotation=_rotation(result.tokens), invert_yaxis=True,
        tooltips=[("query", "$y{0}"), ("key", "$x{0}"), ("may attend", "@image")],
        opts=dict(frame_width=size, frame_height=size, xlabel="key", ylabel="query",
                  fontsize={"title": "10pt"}),
    )


def mask_image(result: PlaygroundResult) -> hv.Image:
    """``mask_frame`` as an ``hv.Image``."""
    return to_element(mask_frame(result))


def invariance_frame(result: PlaygroundResult, *, width: int = 380) -> Frame:
    """max |output difference| at every position after perturbing every token after ``L``.

    Positions ``0..L`` (shaded) must stay at 0 for a causal model: drawn green where they moved
    at most ``atol``, red (a violation) where they moved more. Positions after ``L`` (orange) are
    where the inputs changed, so their outputs normally move. The red layer comes last, so the
    first five layers (shading, green, orange, L line, label) keep their places.
    """
    inv = result.invariance
    L, T = inv.prefix, result.seq_len
    d = inv.position_diff.numpy()
    idx = np.arange(T)
    violated = (idx <= L) & (d > inv.atol)
    top = float(max(d.max(initial=0.0), 1e-3)) * 1.15
    dims = dict(kdims=["position"], vdims=["diff"])
    layers = (
        Layer("vspan", lo=-0.5, hi=L + 0.5, style=dict(color=SAME_COLOR, alpha=0.08)),
        Layer("bars", values=np.where((idx <= L) & ~violated, d, 0.0).astype(np.float32),
              style=dict(color=SAME_COLOR, line_color=None, **dims)),
        Layer("bars", values=np.where(idx > L, d, 0.0).astype(np.float32),
              style=dict(color=CHANGED_COLOR, line_color=None, **dims)),
        Layer("vline", pos=L + 0.5, style=dict(color="#334155", line_dash="dashed", line_width=1.5)),
        Layer("text", x=L + 0.5, y=top * 0.93, text=f" L = {L}",
              style=dict(halign="left", text_font_size="9pt", text_color="#334155")),
        Layer("bars", values=np.where(violated, d, 0.0).astype(np.float32),
              style=dict(color=VIOLATION_COLOR, line_color=None, **dims)),
    )
    return Frame(
        layers=layers, title="Output change per position (0..L must be 0)", xlim=(-0.5, T - 0.5),
        ylim=(0.0, top), xticks=_ticks(result.tokens), xrotation=_rotation(result.tokens),
        tooltips=[("position", "@position"), ("max |Δ output|", "@top{0.00e0}")],
        opts=dict(frame_width=width, frame_height=180, xlabel="position", ylabel="max |Δ output|",
                  fontsize={"title": "10pt"}),
    )


def invariance_chart(result: PlaygroundResult) -> hv.Overlay:
    """``invariance_frame`` as an Overlay (shading, green bars, orange bars, the L line, its label,
    red bars)."""
    return to_element(invariance_frame(result))


# ----------------------------------------------------------------------------------------------
# HTML
def _fmt(x: float) -> str:
    return f"{x:.2e}"


def verdict_html(result: PlaygroundResult) -> str:
    """The PASS/FAIL badge: ``<span class="ap-badge ap-pass|ap-fail" data-verdict=...>``."""
    ok = result.passed
    word = "PASS" if ok else "FAIL"
    if ok:
        why = "no weight on future keys and outputs 0..L unchanged"
    else:
        why = "attention reaches future keys" + ("" if result.invariance.passed
                                                 else " and outputs 0..L changed")
    return (f'<div class="ap-verdict"><span class="ap-badge ap-{word.lower()}" data-verdict="{word}">'
            f'{word}</span><span class="ap-verdict-why">{html.escape(why)}</span></div>')


def invariance_summary_html(result: PlaygroundResult) -> str:
    """The two numbers of the experiment, with what they should be."""
    inv = result.invariance
    L, T = inv.prefix, result.seq_len
    note = ("" if L < T - 1 else
            "<div class='ap-note'>L is the last position: nothing after it to perturb.</div>")
    return (
        "<table class='ap-stats'>"
        f"<tr><td>max weight on a future key</td><td class='ap-num' data-stat='max-future'>"
        f"{_fmt(result.max_future_weight)}</td><td class='ap-want'>should be 0</td></tr>"
        f"<tr><td>max |Δ output| at positions 0..{L}</td><td class='ap-num' data-stat='max-diff'>"
        f"{_fmt(inv.max_diff)}</td><td class='ap-want'>≤ {inv.atol:g}</td></tr>"
        f"<tr><td>perturbed positions</td><td class='ap-num'>"
        f"{f'{L + 1}..{T - 1}' if L < T - 1 else 'none'}</td><td></td></tr>"
        f"</table>{note}"
    )
