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

import holoviews as hv
import numpy as np

from ..common.frames import (
    MAX_PIXELS,
    Frame,
    Layer,
    map_layer,
    number_ticks,
    pool_factor,
    pooled,
    tick_rotation,
    to_element,
    token_label,
    token_ticks,
    value_lim,
    with_marker,
)
from ..common.style import (
    BLOCKED_COLOR,
    CHANGED_COLOR,
    CMAP,
    KEEP_COLOR,
    SAME_COLOR,
    VIOLATION_COLOR,
    verdict_badge_html,
)
from .state import PlaygroundResult, SingleTokenSteps

__all__ = [
    "HEAD_SIZE",
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
    "query_heads",
    "single_token_bars",
    "single_token_frames",
    "verdict_html",
]

HEAD_SIZE = 160               # frame width/height of one head's map, px (4 + colour bar per row at 1400 px)


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


def query_frame(result: PlaygroundResult, query: int) -> Frame:
    """Heads x keys for one query: row ``h`` is how query ``query`` spreads its weight in head ``h``."""
    H, T = result.num_heads, result.seq_len
    query = min(max(query, 0), T - 1)
    A = result.weights[:, query, :].numpy()                              # (H, T)
    return Frame(
        layers=(map_layer(A, 1, ["key", "head"], hv.Dimension("weight", range=(0, 1)), CMAP),),
        title=f"Query {token_label(result.tokens, query)}: weight on each key, per head",
        xlim=(-0.5, T - 0.5), ylim=(-0.5, H - 0.5), xticks=token_ticks(result.tokens),
        yticks=[(h, f"head {h}") for h in range(H)], xrotation=tick_rotation(result.tokens),
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
    # Bars narrower than a pixel (T > ~140) draw nothing with a fill alone: an outline in the same
    # colour keeps each at least one pixel wide.
    dense = len(values) > 140
    return Layer("bars", values=np.asarray(values, dtype=np.float32),
                 style=dict(kdims=[xlabel], vdims=[ylabel], color=color,
                            line_color=color if dense else None))


def single_token_frames(steps: SingleTokenSteps, tokens: tuple[str, ...]) -> list[Frame]:
    """Five frames for one query in one head: raw scores, scaled scores, mask, weights, output.

    Blocked keys (keep-mask False) are drawn in grey in the two score panels and get weight 0.
    """
    keep = steps.keep.numpy()
    T = len(keep)
    ticks, rot = token_ticks(tokens), tick_rotation(tokens)

    def scores(values, ylabel, title):
        layers = (_bars(np.where(keep, values, 0.0), KEEP_COLOR, "key", ylabel),
                  _bars(np.where(keep, 0.0, values), BLOCKED_COLOR, "key", ylabel))
        return _bars_frame(layers, T, title, "key", ylabel, ticks, rot, value_lim(values))

    out = steps.output.numpy()
    return [
        scores(steps.raw.numpy(), "score", "1 · raw scores q·k"),
        scores(steps.scaled.numpy(), "scaled", f"2 · scaled ×{steps.scale:.3f}"),
        _bars_frame((_bars(keep, SAME_COLOR, "key", "keep"),), T, "3 · keep-mask",
                    "key", "keep", ticks, rot, (0, 1.05)),
        _bars_frame((_bars(steps.weights.numpy(), "#9333ea", "key", "weight"),), T,
                    "4 · softmax weights", "key", "weight", ticks, rot, (0, 1.05)),
        _bars_frame((_bars(out, "#0f766e", "dim", "value"),), len(out), "5 · output Σ w·v",
                    "dim", "value", number_ticks(len(out)), 0, value_lim(out), width=130),
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
        ylim=(0.0, top), xticks=token_ticks(result.tokens), xrotation=tick_rotation(result.tokens),
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
