"""The Playground's figures: pure functions from a computed result to frames and HTML.

No attention math happens here: every number comes from ``PlaygroundResult`` /
``SingleTokenSteps`` (``dashboard.playground.state``). The only array work is display-side: max-pooling
very large maps down to a screen-sized image and splitting kept / blocked bars.

Each view has two functions:

- ``*_frame(...) -> Frame``: the data and figure settings (title, ranges, ticks) of one figure,
  as plain arrays. Cheap; the live dashboard pushes frames into existing figures
  (``dashboard.common.live.LivePlot``) and the static export ships them to JavaScript.
- the element function (``head_heatmap``, ``query_heads``, ...): ``to_element(frame)``, the same
  figure as a styled HoloViews element (Bokeh backend), used to draw a figure the first time,
  in notebooks and in tests.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace

import holoviews as hv
import numpy as np
import torch

from ..common.figures import EXACT_HOVER_JS, exact_hover, zoom_tools  # noqa: F401  (moved there; re-exported)
from ..common.frames import (
    MAX_PIXELS,
    Frame,
    Layer,
    map_layer,
    number_ticks,
    pool_factor,
    pooled,
    short_number,
    tick_rotation,
    to_element,
    token_label,
    token_ticks,
    value_lim,
    with_marker,
)
from ..common.style import (
    ACCENT,
    BLOCKED_COLOR,
    CHANGED_COLOR,
    CMAP,
    KEEP_COLOR,
    SAME_COLOR,
    VIOLATION_COLOR,
    verdict_badge_html,
)
from .state import (HEAD_GAP, HEAD_SIZE, HEADS_BOX, HEADS_ONE_ROW, HEADS_PER_ROW, HEADS_ROW_BOX,  # noqa: F401
                    MAX_HEADS, PlaygroundResult, SingleTokenSteps, head_arrangement, heads_box,
                    mosaic_factor)

__all__ = [
    "HEADS_PER_ROW",
    "HEADS_BOX",
    "QUERY_PLOT_HEIGHT",
    "HEAD_SIZE",
    "HeadGrid",
    "REFINE_PIXELS",
    "Refined",
    "exact_hover",
    "refine_zoom",
    "with_refined",
    "zoom_tools",
    "heads_frame",
    "heads_with_query",
    "colorbar_strip",
    "head_frame",
    "head_heatmap",
    "invariance_chart",
    "invariance_frame",
    "invariance_summary_html",
    "mask_frame",
    "mask_image",
    "message_html",
    "query_frame",
    "head_arrangement",
    "query_heads",
    "single_token_bars",
    "single_token_frames",
    "steps_frame",
    "verdict_html",
]



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
    if result.weights is not None:
        f = pool_factor(T, H)
        A = pooled(result.weights[head].numpy(), f)
    else:                                   # a long context: the maps pooled on the device
        f = result.maps.factor
        A = result.maps.maps[head].numpy()
    ticks = token_ticks(result.tokens)
    layers = (map_layer(A, f, ["key", "query"], hv.Dimension("weight", range=(0, 1)), CMAP),)
    frame = Frame(
        layers=layers, title=f"Head {head}" + (f" · max of {f}×{f}" if f > 1 else ""),
        xlim=(-0.5, T - 0.5), ylim=(-0.5, T - 0.5), xticks=ticks, yticks=ticks,
        xrotation=tick_rotation(result.tokens), invert_yaxis=True,
        tooltips=[("head", str(head)), ("query", "$y{custom}"), ("key", "$x{custom}"),
                  ("max weight" if f > 1 else "weight", "@image{0.000}")],
        hover_labels=result.tokens,
        opts=dict(frame_width=HEAD_SIZE, frame_height=HEAD_SIZE, xlabel="key", ylabel="query",
                  fontsize={"title": "11pt"}),
    )
    return frame if query is None else with_marker(frame, query)


@dataclass(frozen=True)
class HeadGrid:
    """Where each head's map lies in the live Playground's one heads figure (a mosaic).

    Heads sit ``ncols`` to a row (``head_arrangement``: 4 from 6 up to 8 heads), head ``h`` in column
    ``h % ncols`` and row ``h // ncols``, in data units of key / query *positions*: head ``h``'s key ``k`` and
    query ``q`` are drawn at ``x = origin(h)[0] + k``, ``y = origin(h)[1] + q`` (y grows down).
    Maps are max-pooled over ``f x f`` blocks (``state.mosaic_factor``: to the pixels the screen
    shows, and within the memory budget; ``of_result``: the factor a result was pooled by); a cell then spans ``ceil(T / f) * f`` positions and the gap is a whole number of blocks, so that
    one image of the whole mosaic has square pixels. The figure's size in px is one of two
    (``heads_box``: one row up to 5 heads, two rows above; ``limits`` fits the mosaic into it): a
    heads step changes data and ranges, and lays the page out only between 5 and 6 heads.
    """

    T: int
    H: int
    f: int = 1

    @classmethod
    def of(cls, T: int, H: int) -> "HeadGrid":
        return cls(T, H, mosaic_factor(T, H))

    @classmethod
    def of_result(cls, result: PlaygroundResult) -> "HeadGrid":
        """The grid of the maps ``result`` holds (pooled by ``result.maps.factor``)."""
        return cls(result.seq_len, result.num_heads, result.maps.factor)

    @property
    def ncols(self) -> int:
        return head_arrangement(self.H)[0]

    @property
    def nrows(self) -> int:
        return head_arrangement(self.H)[1]

    @property
    def cell_px(self) -> int:
        """Pixels a map's side takes in the figure (``head_arrangement``)."""
        return head_arrangement(self.H)[2]

    @property
    def cell(self) -> int:
        """Positions one map spans (``T`` rounded up to whole pooling blocks)."""
        return math.ceil(self.T / self.f) * self.f

    @property
    def gap(self) -> int:
        """Positions between two maps: ``HEAD_GAP`` px at ``HEAD_SIZE`` px per map, whole blocks."""
        return self.f * max(1, round(HEAD_GAP * self.cell / (self.cell_px * self.f)))

    @property
    def stride(self) -> int:
        return self.cell + self.gap

    @property
    def width(self) -> int:
        """Positions across the mosaic."""
        return self.ncols * self.stride - self.gap

    @property
    def height(self) -> int:
        return self.nrows * self.stride - self.gap

    def origin(self, head: int) -> tuple[int, int]:
        """(x, y) of head ``head``'s key 0 / query 0."""
        return (head % self.ncols) * self.stride, (head // self.ncols) * self.stride

    def origins(self) -> np.ndarray:
        """``(H, 2)``: every head's ``origin``."""
        return np.array([self.origin(h) for h in range(self.H)], dtype=np.float64).reshape(-1, 2)

    def query_lines(self, query: int) -> np.ndarray:
        """``(H, 4)`` segments ``x0, y0, x1, y1``: the line across each head's map at ``query``."""
        o = self.origins()
        return np.column_stack([o[:, 0] - 0.5, o[:, 1] + query, o[:, 0] + self.T - 0.5, o[:, 1] + query])

    def locate(self, x: float | None, y: float | None) -> tuple[int, int, int] | None:
        """``(head, query, key)`` under the data point ``(x, y)``; None in a gap or outside."""
        if x is None or y is None:
            return None
        cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
        c, k = divmod(cx, self.stride)
        r, q = divmod(cy, self.stride)
        h = r * self.ncols + c
        if not (0 <= c < self.ncols and 0 <= r and h < self.H and k < self.T and q < self.T):
            return None
        return h, q, k

    def frame_size(self) -> tuple[int, int]:
        """(frame_width, frame_height) in px: ``heads_box(H)``, the same for every ``T``."""
        return heads_box(self.H)

    def limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``(xlim, ylim)`` in positions: the mosaic (and the labels above row 0) from the top-left
        corner of the frame, with square pixels; the rest of the frame stays empty."""
        fw, fh = self.frame_size()
        span_x, span_y = self.width, self.height + self.gap
        units_per_px = max(span_x / fw, span_y / fh)
        return ((-0.5, -0.5 + fw * units_per_px), (-0.5 - self.gap, -0.5 - self.gap + fh * units_per_px))

    def axis_lookup(self, n: int) -> list[int]:
        """Per position along an axis of ``n`` positions: the map column/row it is in, -1 in gaps."""
        c, k = np.divmod(np.arange(n), self.stride)
        return np.where(k < self.T, c, -1).tolist()

    def tag(self) -> str:
        """What tests read to find a head's cell: ``ap-heads:H=4 T=16 stride=19 ncols=4``."""
        return f"ap-heads:H={self.H} T={self.T} stride={self.stride} ncols={self.ncols}"

    def visible(self, x0: float, x1: float, y0: float, y1: float
                ) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
        """The part of each map inside the data window ``x0..x1`` x ``y0..y1`` (either order):
        ``[(head, (q0, q1), (k0, k1)), ...]`` with ``q1``/``k1`` exclusive; maps outside are left out.

        A cell counts when any part of it is inside the window (the refined image covers the view).
        """
        vals = [float(v) for v in (x0, x1, y0, y1)]
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"expected a finite window but found x0, x1, y0, y1 = {tuple(vals)}")
        xa, xb = sorted(vals[:2])
        ya, yb = sorted(vals[2:])
        out = []
        for h in range(self.H):
            ox, oy = self.origin(h)
            # cell k spans k - 0.5 .. k + 0.5: those overlapping the window, even in part
            k0, k1 = max(0, math.floor(xa - ox - 0.5) + 1), min(self.T, math.ceil(xb - ox + 0.5))
            q0, q1 = max(0, math.floor(ya - oy - 0.5) + 1), min(self.T, math.ceil(yb - oy + 0.5))
            if k1 > k0 and q1 > q0:
                out.append((h, (q0, q1), (k0, k1)))
        return out


REFINE_PIXELS = 2**18         # pixels of all refined windows of one zoom together (1 MB of float32)


@dataclass(frozen=True)
class Refined:
    """What a zoom into the heads mosaic shows at a finer resolution than the overview.

    Attributes:
        heads: the heads refined; ``factors``: each one's positions per pixel side (1 = exact);
        windows: each one's ``((q0, q1), (k0, k1))``; ``layer``: the ``"images"`` layer drawn over
        the pooled overview (empty when the zoom shows nothing finer than the overview).
    """

    heads: tuple[int, ...]
    factors: tuple[int, ...]
    windows: tuple[tuple[tuple[int, int], tuple[int, int]], ...]
    layer: Layer

    @property
    def finest(self) -> int | None:
        """The smallest factor shown, None when nothing is refined."""
        return min(self.factors) if self.factors else None


def _refined_style() -> dict:
    return dict(kdims=["key", "query"], vdims=[hv.Dimension("weight", range=(0, 1))], cmap=CMAP,
                clim=(0, 1), no_hover=True)


def refine_zoom(result: PlaygroundResult, window: tuple[float, float, float, float] | None,
                pixels: int = REFINE_PIXELS) -> Refined:
    """The maps inside the heads figure's visible ``window`` (``x0, x1, y0, y1`` in data units),
    recomputed (``result.window``: exact weights, pooled only to fit ``pixels`` in all).

    Each visible map gets ``pixels / n_visible`` pixels; a map whose visible part would not come
    out finer than the overview keeps the overview (reset / zoomed out: nothing is computed).
    """
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"expected pixels to be an int >= 1 but found pixels={pixels!r}")
    g = HeadGrid.of_result(result)
    empty = Refined((), (), (), Layer("images", arrays=(), boxes=(), style=_refined_style()))
    if window is None or g.f == 1:
        return empty
    parts = g.visible(*window)
    if not parts:
        return empty
    side = max(1, math.isqrt(pixels // len(parts)))
    heads, factors, windows, arrays, boxes = [], [], [], [], []
    for h, qr, kr in parts:
        f = math.ceil(max(qr[1] - qr[0], kr[1] - kr[0]) / side)
        if f >= g.f:
            continue                                  # the overview is as fine: nothing to add
        pm = result.window(h, qr, kr, pixels=side)   # (1, R, C), exact rows over all keys
        ox, oy = g.origin(h)
        left, bottom, right, top = pm.image_bounds
        heads.append(h)
        factors.append(pm.factor)
        windows.append((qr, kr))
        arrays.append(np.ascontiguousarray(pm.maps[0].numpy()))
        boxes.append((ox + left, oy + bottom, ox + right, oy + top))
    layer = Layer("images", arrays=tuple(arrays), boxes=tuple(boxes), style=_refined_style())
    return Refined(tuple(heads), tuple(factors), tuple(windows), layer)


def with_refined(frame: Frame, result: PlaygroundResult, refined: Refined) -> Frame:
    """``heads_frame``'s frame showing ``refined`` over the overview (the overview's image is the
    same object: a live figure resends only the refined windows), the title naming the finest
    resolution shown."""
    img, _, line, labels = frame.layers
    return replace(frame, layers=(img, refined.layer, line, labels),
                   title=_heads_title(result, refined.finest))


def _heads_title(result: PlaygroundResult, zoom_factor: int | None = None) -> str:
    H = result.num_heads
    f = HeadGrid.of_result(result).f
    title = f"{H} head{'s' if H != 1 else ''} · query on y, key on x"
    if f > 1:
        title += f" · pooled: each pixel the max of {f}×{f}"
    if zoom_factor is not None:
        title += (" · zoom: exact weights" if zoom_factor == 1
                  else f" · zoom: max of {zoom_factor}×{zoom_factor}")
    return title


def heads_frame(result: PlaygroundResult, query: int) -> Frame:
    """Every head's ``T x T`` map in one figure (``HeadGrid``), each with the selected-query line.

    The maps are the rows of one image glyph (one image per head at its place, so the gaps and
    empty cells cost no bytes); a heads step changes the number of rows. They come pooled from the
    result (``result.maps``, ``mosaic_factor``); a second image glyph, empty here, holds the
    windows a zoom recomputes finer (``refine_zoom`` / ``with_refined``). When pooled, the tooltip
    shows the cell's exact weight as the server computes it (``exact_hover``) next to the pixel's max.

    One figure instead of one per head: in the browser each figure costs a repaint and each
    figure shown or hidden lays the whole page out again, so a heads step used to cost 2 s.
    """
    H, T = result.num_heads, result.seq_len
    g = HeadGrid.of_result(result)
    f = g.f
    W = result.maps.maps.numpy()           # (H, ceil(T/f), ceil(T/f)): pooled where computed
    maps = tuple(np.ascontiguousarray(W[h]) for h in range(H))     # one image per head, no gaps sent
    boxes = tuple((x - 0.5, y - 0.5, x + g.cell - 0.5, y + g.cell - 0.5)
                  for x, y in (g.origin(h) for h in range(H)))
    q = min(max(query, 0), T - 1)
    origins = g.origins()
    segs = g.query_lines(q)
    label_xy = np.column_stack([origins[:, 0] + (T - 1) / 2, origins[:, 1] - 0.5])
    cols = [c for c in range(g.ncols) if c < H]
    ticks = token_ticks(result.tokens)
    xticks = [(c * g.stride + p, lab) for c in cols for p, lab in ticks]
    yticks = [(r * g.stride + p, lab) for r in range(g.nrows) for p, lab in ticks]
    tokens = tuple(token_label(result.tokens, k) for k in range(T))  # "k (name)": raw hover labels
    fw, fh = g.frame_size()
    xlim, ylim = g.limits()
    layers = (
        Layer("images", arrays=maps, boxes=boxes,
              style=dict(kdims=["key", "query"], vdims=[hv.Dimension("weight", range=(0, 1))],
                         cmap=CMAP, clim=(0, 1))),
        Layer("images", arrays=(), boxes=(), style=_refined_style()),    # zoom windows (``refine_zoom``)
        Layer("segments", array=segs,
              style=dict(color=ACCENT, line_width=1.5, line_dash="dashed", alpha=0.9)),
        Layer("labels", array=label_xy, texts=tuple(f"head {h}" for h in range(H)),
              style=dict(text_font_size="9pt", text_color="#334155", text_baseline="bottom",
                         text_align="center")),
    )
    return Frame(
        layers=layers,
        title=_heads_title(result),
        xlim=xlim, ylim=ylim, xticks=xticks, yticks=yticks,
        xrotation=tick_rotation(result.tokens), invert_yaxis=True,
        tooltips=[("head", "$x{head}"), ("query", "$y{custom}"), ("key", "$x{custom}"),
                  *([("weight", "@image{0.000}")] if f == 1 else
                    [("weight (exact)", "$sx{exact}"), (f"max of {f}×{f}", "@image{0.000}")])],
        # one map's T labels and the mosaic's arithmetic (no lookup list as long as the mosaic:
        # Bokeh walks every list item of a changed property, 0.2 s per heads step at T=1024)
        hover_labels=tokens, hover_raw=True,
        hover_args=dict(stride=g.stride, T=T, ncols=g.ncols, nheads=H),
        opts=dict(frame_width=fw, frame_height=fh, xlabel="key", ylabel="query",
                  fontsize={"title": "11pt", "xticks": "8pt", "yticks": "8pt"}),
    )


def heads_with_query(frame: Frame, result: PlaygroundResult, query: int) -> Frame:
    """``heads_frame(result, ...)`` with the query line moved to ``query`` (the image is the same
    object, so a live figure resends only the lines)."""
    T, g = result.seq_len, HeadGrid.of_result(result)
    segs = g.query_lines(min(max(query, 0), T - 1))
    img, refined, line, labels = frame.layers
    return replace(frame, layers=(img, refined, replace(line, array=segs), labels))


def head_heatmap(result: PlaygroundResult, head: int, query: int | None = None) -> hv.Element:
    """``head_frame`` as an ``hv.Image`` (an Overlay with the query line when ``query`` is given)."""
    return to_element(head_frame(result, head, query))


def colorbar_strip(height: int = HEAD_SIZE) -> hv.Image:
    """The shared 0..1 colour scale of every weight map, as a thin vertical strip."""
    grad = np.linspace(1, 0, 256, dtype=np.float32)[:, None]            # top = 1
    return hv.Image(grad, bounds=(0, 0, 1, 1), kdims=["x", "weight"], vdims=["w"]).opts(
        cmap=CMAP, clim=(0, 1), width=70, height=height + 45, xaxis=None, yaxis="right",
        toolbar=None, default_tools=[], title="weight", ylabel="", fontsize={"title": "9pt"},
    )


QUERY_PLOT_HEIGHT = 144
"""The query plot's frame height in px (9 px a row at the most heads, 16), whatever H: a figure
whose height changes makes the browser lay the whole page out again and repaint every figure
(most of what a heads step cost)."""


def query_frame(result: PlaygroundResult, query: int) -> Frame:
    """Heads x keys for one query: row ``h`` is how query ``query`` spreads its weight in head ``h``."""
    H, T = result.num_heads, result.seq_len
    query = min(max(query, 0), T - 1)
    A = result.row(query).numpy()                                        # (H, T), exact
    return Frame(
        layers=(map_layer(A, 1, ["key", "head"], hv.Dimension("weight", range=(0, 1)), CMAP),),
        title=f"Query {token_label(result.tokens, query)}: weight on each key, per head",
        xlim=(-0.5, T - 0.5), ylim=(-0.5, H - 0.5), xticks=token_ticks(result.tokens),
        yticks=[(h, f"head {h}") for h in range(H)], xrotation=tick_rotation(result.tokens),
        invert_yaxis=True,
        tooltips=[("head", "$y{0}"), ("key", "$x{custom}"), ("weight", "@image{0.000}")],
        hover_labels=result.tokens,
        opts=dict(frame_width=520, frame_height=QUERY_PLOT_HEIGHT, colorbar=True, xlabel="key", ylabel="",
                  fontsize={"title": "11pt"}),
        ylabel_chars=len(f"head {MAX_HEADS - 1}"),           # "head 9" and "head 10" as wide
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
                           fontsize={"title": "10pt"}), ylabel_chars=6)


def _bars(values: np.ndarray, color: str, xlabel: str, ylabel: str) -> Layer:
    # Bars narrower than a pixel (T > ~140) draw nothing with a fill alone: an outline in the same
    # colour keeps each at least one pixel wide.
    dense = len(values) > 140
    return Layer("bars", values=np.asarray(values, dtype=np.float32),
                 style=dict(kdims=[xlabel], vdims=[ylabel], color=color,
                            line_color=color if dense else None))


STEP_BAND, STEP_STRIDE = 100, 150   # y units of one step's band and from one band to the next
STEP_MAX_BARS = 512                 # keys drawn one bar each up to here, then one bar per f keys
STEP_NAMES = ("1 · raw scores q·k", "2 · scaled ×{scale:.3f}", "3 · keep-mask", "4 · softmax weights")
STEP_COLORS = {"keep": KEEP_COLOR, "blocked": BLOCKED_COLOR, "mask": SAME_COLOR, "weight": "#9333ea"}


def _band_ticks(base: int, lo: float, hi: float, values: tuple[float, ...]) -> list[tuple[int, str]]:
    """y ticks of one band: each value at its height, labelled with the value (ints: Bokeh's label
    overrides are looked up by the tick's integer position)."""
    out: list[tuple[int, str]] = []
    for v in values:
        y = int(round(base + (v - lo) / (hi - lo) * STEP_BAND))
        if all(abs(y - p) >= 18 for p, _ in out):
            out.append((y, short_number(v)))
    return out


def steps_frame(steps: SingleTokenSteps, tokens: tuple[str, ...]) -> Frame:
    """Steps 1-4 for one query in one head as ONE figure: four bands over the same key axis (raw
    scores, scaled scores, keep-mask, softmax weights), each scaled to its own values (its y ticks
    say them). Blocked keys are grey in the score bands and get weight 0. One figure instead of
    four: the browser repaints one canvas and measures one key axis per update. Above
    ``STEP_MAX_BARS`` keys each bar stands for ``f`` keys and shows the one of largest |value|
    (the title says so; hover names that key): 4 x 4096 bars were 1.4 MB per query change and
    rasterized again on every repaint.
    """
    keep = steps.keep.numpy().astype(bool)
    T = len(keep)
    bands = (steps.raw.numpy(), steps.scaled.numpy(), keep.astype(np.float32), steps.weights.numpy())
    names = [n.format(scale=steps.scale) for n in STEP_NAMES]
    f = 1 if T <= STEP_MAX_BARS else math.ceil(T / STEP_MAX_BARS)
    n_bars = math.ceil(T / f)
    starts = np.arange(n_bars) * f
    gap = 0.05 if f == 1 else 0.0                      # one key per bar: a thin gap between bars
    x0, x1 = starts - 0.5 + gap, np.minimum(starts + f, T) - 0.5 - gap
    key_labels = np.array([token_label(tokens, j) for j in range(T)], dtype=object) if f == 1 else None
    quads, value, step, label, color, yticks, titles = [], [], [], [], [], [], []
    for b, (vals, name) in enumerate(zip(bands, names)):
        base = (len(bands) - 1 - b) * STEP_STRIDE           # band 1 on top
        lo, hi = (0.0, 1.05) if b >= 2 else value_lim(vals)
        # one bar per f keys above STEP_MAX_BARS: the key of largest |value| in each (max pooling,
        # like the maps: a single strong weight stays visible)
        padded = np.zeros(n_bars * f, dtype=np.float64)
        padded[:T] = np.abs(vals)
        rep = np.minimum(padded.reshape(n_bars, f).argmax(axis=1) + starts, T - 1)
        v, kept = vals[rep].astype(np.float64), keep[rep]
        zero = base + (0.0 - lo) / (hi - lo) * STEP_BAND
        top = base + (v - lo) / (hi - lo) * STEP_BAND
        quads.append(np.stack([x0, np.minimum(zero, top), x1, np.maximum(zero, top)], 1))
        value.append(v)
        step.append(np.where(~kept, f"{name} (blocked key)", name) if b < 2 else
                    np.where(~kept, f"{name}: blocked", f"{name}: may attend") if b == 2 else
                    np.full(n_bars, name, dtype=object))
        label.append(key_labels if f == 1 else
                     np.array([f"{int(j)} (largest |value| of keys {a}–{min(a + f, T) - 1})"
                               for j, a in zip(rep, starts)], dtype=object))
        kind = (np.where(kept, "keep", "blocked") if b < 2 else
                np.full(n_bars, "mask" if b == 2 else "weight", dtype=object))
        color.append(np.array([STEP_COLORS[k] for k in kind], dtype=object))
        ticks = (0.0, float(vals.max(initial=0.0)), float(vals.min(initial=0.0))) if b < 2 else (0.0, 1.0)
        yticks += _band_ticks(base, lo, hi, ticks)
        titles.append((-0.5, base + STEP_BAND + 12))
    columns = {"value": np.concatenate(value), "step": np.concatenate(step).astype(object),
               "label": np.concatenate(label), "color": np.concatenate(color)}
    top_y = (len(bands) - 1) * STEP_STRIDE + STEP_BAND + 40
    layers = (
        Layer("quads", array=np.concatenate(quads), columns=columns,
              style=dict(color="color", line_color="color", line_width=0.5)),
        Layer("labels", array=np.array(titles, dtype=np.float64), texts=tuple(names),
              style=dict(text_align="left", text_baseline="bottom", text_font_size="9pt",
                         text_color="#334155", text_font_style="bold")),
    )
    return Frame(
        layers=layers, title=f"Query {steps.query} in head {steps.head}, step by step"
                             + ("" if f == 1 else f" · one bar per {f} keys (the largest |value|)"),
        xlim=(-0.5, T - 0.5), ylim=(-6.0, float(top_y)), xticks=token_ticks(tokens),
        yticks=sorted(yticks), xrotation=tick_rotation(tokens),
        tooltips=[("step", "@step"), ("key", "@label"), ("value", "@value{0.0000}")],
        opts=dict(frame_width=560, frame_height=300, xlabel="key", ylabel="",
                  fontsize={"title": "10pt", "yticks": "8pt"}, show_grid=False),
        ylabel_chars=8,
    )


def single_token_frames(steps: SingleTokenSteps, tokens: tuple[str, ...]) -> list[Frame]:
    """Two frames for one query in one head: steps 1-4 over the keys (``steps_frame``) and step 5,
    the output ``Σ w·v`` over the head's ``D`` dimensions."""
    out = steps.output.numpy()
    return [
        steps_frame(steps, tokens),
        _bars_frame((_bars(out, "#0f766e", "dim", "value"),), len(out), "5 · output Σ w·v",
                    "dim", "value", number_ticks(len(out)), 0, value_lim(out), width=130),
    ]


def single_token_bars(steps: SingleTokenSteps, tokens: tuple[str, ...]) -> hv.Layout:
    """``single_token_frames`` as a Layout of its two figures."""
    return hv.Layout([to_element(f) for f in single_token_frames(steps, tokens)]).cols(2)


# ----------------------------------------------------------------------------------------------
# causal mask and invariance
def mask_frame(result: PlaygroundResult, *, size: int = 180) -> Frame:
    """The keep-mask that was applied: blue = may attend, grey = blocked."""
    T = result.seq_len
    f = pool_factor(T, 1, MAX_PIXELS // 16)          # 256 px a side for a 180 px figure
    A = result.keep_pooled(f)                                            # never the (T, T) mask
    ticks = token_ticks(result.tokens)
    return Frame(
        layers=(map_layer(A, f, ["key", "query"], "keep", [BLOCKED_COLOR, KEEP_COLOR]),),
        title="Causal keep-mask" if result.causal else "No mask (full attention)",
        xlim=(-0.5, T - 0.5), ylim=(-0.5, T - 0.5), xticks=ticks, yticks=ticks,
        xrotation=tick_rotation(result.tokens), invert_yaxis=True,
        tooltips=[("query", "$y{0}"), ("key", "$x{0}"), ("may attend", "@image")],
        opts=dict(frame_width=size, frame_height=size, xlabel="key", ylabel="query",
                  fontsize={"title": "10pt"}),
    )


def mask_image(result: PlaygroundResult) -> hv.Image:
    """``mask_frame`` as an ``hv.Image``."""
    return to_element(mask_frame(result))


def invariance_frame(result: PlaygroundResult, *, width: int = 380,
                     max_bars: int | None = None) -> Frame:
    """max |output difference| at every position after perturbing every token after ``L``.

    Positions ``0..L`` (shaded) must stay at 0 for a causal model: drawn green where they moved
    at most ``atol``, red (a violation) where they moved more. Positions after ``L`` (orange) are
    where the inputs changed, so their outputs normally move. The red layer comes last, so the
    first five layers (shading, green, orange, L line, label) keep their places. ``max_bars``
    (the live view: ``MAX_BARS``): above it one bar per ``f`` positions, their max.
    """
    inv = result.invariance
    L, T = inv.prefix, result.seq_len
    d = inv.position_diff.numpy()
    idx = np.arange(T)
    violated = (idx <= L) & (d > inv.atol)
    top = float(max(d.max(initial=0.0), 1e-3)) * 1.15
    dims = dict(kdims=["position"], vdims=["diff"])
    # More bars than pixels only cost the browser (each is rasterized on every repaint: 0.2 s at
    # T=4096): above MAX_BARS, one bar per f positions, the max of them (the title says so).
    f = 1 if max_bars is None else math.ceil(T / max_bars)

    def bars(values: np.ndarray) -> np.ndarray:
        return _max_bins(values.astype(np.float32), f)

    layers = (
        Layer("vspan", lo=-0.5, hi=L + 0.5, style=dict(color=SAME_COLOR, alpha=0.08)),
        Layer("bars", values=bars(np.where((idx <= L) & ~violated, d, 0.0)), bin=f,
              style=dict(color=SAME_COLOR, line_color=None, **dims)),
        Layer("bars", values=bars(np.where(idx > L, d, 0.0)), bin=f,
              style=dict(color=CHANGED_COLOR, line_color=None, **dims)),
        Layer("vline", pos=L + 0.5, style=dict(color="#334155", line_dash="dashed", line_width=1.5)),
        Layer("text", x=L + 0.5, y=top * 0.93, text=f" L = {L}",
              style=dict(halign="left", text_font_size="9pt", text_color="#334155")),
        Layer("bars", values=bars(np.where(violated, d, 0.0)), bin=f,
              style=dict(color=VIOLATION_COLOR, line_color=None, **dims)),
    )
    return Frame(
        layers=layers, title="Output change per position (0..L must be 0)"
                             + (f" · each bar the max of {f}" if f > 1 else ""), xlim=(-0.5, T - 0.5),
        ylim=(0.0, top), xticks=token_ticks(result.tokens), xrotation=tick_rotation(result.tokens),
        tooltips=[("position", "@position"), ("max |Δ output|", "@top{0.00e0}")],
        opts=dict(frame_width=width, frame_height=180, xlabel="position", ylabel="max |Δ output|",
                  fontsize={"title": "10pt"}),
        ylabel_chars=6,
    )


MAX_BARS = 512                # bars of a per-position chart before positions are binned (max)


def _max_bins(values: np.ndarray, f: int) -> np.ndarray:
    """``(ceil(n / f),)``: the max of every ``f`` values (``f = 1``: ``values``)."""
    if f == 1:
        return values
    pad = -len(values) % f
    return np.pad(values, (0, pad)).reshape(-1, f).max(axis=1)


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
    if result.passed:
        why = "no weight on future keys and outputs 0..L unchanged"
    else:
        why = "attention reaches future keys" + ("" if result.invariance.passed
                                                 else " and outputs 0..L changed")
    return verdict_badge_html(result.passed, why)


def message_html(sentence: str) -> str:
    """A short note under the controls (``.ap-message``, ``role=status``); "" shows nothing."""
    if not sentence:
        return ""
    return f'<div class="ap-message" role="status">{html.escape(sentence)}</div>'


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
