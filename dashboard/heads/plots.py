"""Pure functions for the "Model heads" tab: attention maps -> figure frames, results -> HTML.

Nothing here runs a model: every number comes from ``dashboard.heads.state.HeadsResult`` (one
forward pass) and ``attention.head_metrics.HeadMetrics``. Frames are ``common.frames.Frame``s,
so a figure is drawn once by HoloViews (``to_element``) and then updated in place by
``common.live.LivePlot``.

Orientation (unit-tested): ``weights[q, k]`` is drawn with query ``q`` on y (0 at the top) and key
``k`` on x: ``hv.Image`` gets ``array[::-1]`` with ``bounds=(-.5, -.5, T-.5, T-.5)`` and
``invert_yaxis=True`` (``to_element`` does the flip), colour range pinned to ``(0, 1)``.

The overview is **one** figure for every head (``overview_frame``): the ``L x H`` maps side by
side in one image (a mosaic, ``Mosaic``), max-pooled so that a cell is at most ``cell_px``
pixels a side, with a 1-pixel gap. One figure is cheap to draw and to update (one image
buffer; 72 MiniLM maps at T=128 are 0.6 M pixels), and a model with another L x H only changes
its data, ranges and size.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace
from typing import Sequence

import holoviews as hv
import numpy as np

from attention.head_metrics import HeadMetrics, HeadRoles

from ..common.frames import Frame, Layer, nice_step, to_element
from ..common.style import CMAP
from .state import HeadsResult, HeadsState, is_hf, query_reading

__all__ = [
    "CELL_SIZE",
    "MAIN_SIZE",
    "Mosaic",
    "SELECTED_OUTLINE",
    "cell_frame",
    "head_role",
    "mosaic_image",
    "mosaic_layer",
    "overview_frame",
    "roles_table_html",
    "selection_layer",
    "main_frame",
    "main_heatmap",
    "message_html",
    "metrics_table_html",
    "overview_grid",
    "overview_layer",
    "reading_html",
    "summary_html",
]

CELL_SIZE = 128               # frame width/height of one overview map, px
MAIN_SIZE = 430               # frame width/height of the main map, px
SELECTED_OUTLINE = "#0891b2"  # outline of the selected overview map (cyan 600)
ROLE_COLORS = {"previous-token": "#2563eb", "induction": "#c026d3", "next-token": "#0d9488",
               "first-token": "#ea580c", "last-token": "#65a30d", "self": "#64748b"}
ROLE_NAMES = {"previous-token": "previous-token", "next-token": "next-token",
              "first-token": "[CLS] / first sink", "last-token": "[SEP] / end sink", "self": "self",
              "induction": "induction"}
GAP_COLOR = "#cbd5e1"         # the lines between the overview's maps (slate 300)
MAIN_TICK_LIMIT = 48          # every token on the main map's axes up to this many positions


def head_role(m: HeadMetrics | HeadRoles | None, min_score: float = 0.5) -> str:
    """What a head does: for the tiny models ``"previous-token"``, ``"induction"`` or ``""`` (the
    higher score at or above ``min_score``); for Hugging Face models ``HeadRoles.role``."""
    if m is None:
        return ""
    if isinstance(m, HeadRoles):
        return m.role or ""
    scores = {"previous-token": m.previous_token, "induction": m.induction}
    role, score = max(scores.items(), key=lambda kv: kv[1])
    return role if score >= min_score else ""


def _role_score(m: HeadMetrics | HeadRoles, role: str) -> float:
    if isinstance(m, HeadRoles):
        return m.role_score
    return m.previous_token if role == "previous-token" else m.induction


# ----------------------------------------------------------------------------------------------
# the overview: every head in one figure
@dataclass(frozen=True)
class Mosaic:
    """Where each head's map lies in the overview image.

    ``f``: pooling factor (``f x f`` positions per pixel, max-pooled); ``side = ceil(T / f)``
    pixels per map; maps are ``stride = side + 1`` apart (1 pixel of gap). Head ``h`` of layer
    ``l`` covers columns ``h*stride .. h*stride+side-1`` and rows ``l*stride ..`` (row 0 at the
    top); in data units pixel ``(row, col)`` is centred at ``(x=col, y=row)``.
    """

    L: int
    H: int
    T: int
    f: int
    side: int

    @property
    def stride(self) -> int:
        return self.side + 1

    @property
    def width(self) -> int:
        return self.H * self.stride - 1

    @property
    def height(self) -> int:
        return self.L * self.stride - 1

    @classmethod
    def of(cls, L: int, H: int, T: int, cell_px: int) -> "Mosaic":
        f = max(1, math.ceil(T / cell_px))
        return cls(L, H, T, f, math.ceil(T / f))

    def cell_at(self, x: float | None, y: float | None) -> tuple[int, int] | None:
        """The ``(layer, head)`` under data point ``(x, y)``, None in a gap or outside."""
        if x is None or y is None:
            return None
        col, row = round(x), round(y)
        h, i = divmod(col, self.stride)
        l, j = divmod(row, self.stride)
        if not (0 <= h < self.H and 0 <= l < self.L and i < self.side and j < self.side):
            return None
        return l, h

    def cell(self, image: np.ndarray, l: int, h: int) -> np.ndarray:
        """Head ``(l, h)``'s (pooled) map cut out of the mosaic ``image`` (row 0 = query 0)."""
        return image[l * self.stride:l * self.stride + self.side, h * self.stride:h * self.stride + self.side]


def _pool(A: np.ndarray, f: int) -> np.ndarray:
    """Max over ``f x f`` blocks of ``(..., T, T)`` maps (zero-padded at the far edges)."""
    if f == 1:
        return A
    T = A.shape[-1]
    n = math.ceil(T / f)
    padded = np.zeros(A.shape[:-2] + (n * f, n * f), dtype=A.dtype)
    padded[..., :T, :T] = A
    return padded.reshape(A.shape[:-2] + (n, f, n, f)).max(axis=(-3, -1))


def mosaic_image(weights: np.ndarray, mosaic: Mosaic, pooled: bool = False) -> np.ndarray:
    """``(L, H, T, T)`` weights -> the overview image ``(height, width)`` float32, NaN in the gaps.

    With ``pooled=True`` ``weights`` are the maps already max-pooled by ``mosaic.f``,
    ``(L, H, side, side)`` (a long text's ``HeadsResult.pooled``).
    """
    weights = np.asarray(weights, dtype=np.float32)
    m = mosaic
    want = (m.L, m.H, m.side, m.side) if pooled else None
    if weights.ndim != 4 or weights.shape[2] != weights.shape[3] or (pooled and weights.shape != want):
        raise ValueError(f"expected weights of shape {want if pooled else '(L, H, T, T)'} but found "
                         f"{weights.shape}")
    cells = weights if pooled else _pool(weights, m.f)                 # (L, H, side, side)
    out = np.full((m.L, m.stride, m.H, m.stride), np.nan, dtype=np.float32)
    out[:, :m.side, :, :m.side] = cells.transpose(0, 2, 1, 3)           # (L, side, H, side)
    return out.reshape(m.L * m.stride, m.H * m.stride)[:m.height, :m.width]


def mosaic_layer(weights: np.ndarray, mosaic: Mosaic, pooled: bool = False) -> Layer:
    """The overview's image layer (drawn once per result); ``pooled`` as in ``mosaic_image``."""
    m = mosaic
    return Layer("image", array=mosaic_image(weights, m, pooled), bounds=(-0.5, -0.5, m.width - 0.5, m.height - 0.5),
                 style=dict(kdims=["x", "y"], vdims=[hv.Dimension("weight", range=(0, 1))], cmap=CMAP,
                            clim=(0, 1), clipping_colors={"NaN": GAP_COLOR}))


def selection_layer(mosaic: Mosaic, layer: int, head: int | None) -> Layer:
    """The outline around the selected map (around the whole layer's row for ``head=None``)."""
    m, s = mosaic, mosaic.stride
    if head is None:
        bounds = (-1.0, layer * s - 1.0, m.width, layer * s + m.side)
    else:
        bounds = (head * s - 1.0, layer * s - 1.0, head * s + m.side, layer * s + m.side)
    return Layer("rect", bounds=bounds, style=dict(fill_alpha=0, line_color=SELECTED_OUTLINE, line_width=3))


def _axis_labels(m: Mosaic, labels: Sequence[str], name: str) -> tuple[str, ...]:
    """Hover text per mosaic column (``name="head"``: "H3 · 17 (cat)", head 3, key 17) or row
    (``name="layer"``: layer, query); pooled maps name the range of positions ("H3 · 16-17")."""
    out = []
    n = m.H if name == "head" else m.L
    for c in range(n * m.stride - 1):
        i, j = divmod(c, m.stride)
        if j >= m.side:
            out.append("")
        elif m.f == 1:
            out.append(f"{name[0].upper()}{i} · {j} ({labels[j]})")
        else:
            lo, hi = j * m.f, min(m.T, (j + 1) * m.f) - 1
            out.append(f"{name[0].upper()}{i} · {lo}-{hi}")
    return tuple(out)


def overview_frame(result: HeadsResult, image: Layer, selected: Layer, mosaic: Mosaic,
                   cell_px: int) -> Frame:
    """Every head of ``result`` in one figure: ``image`` (``mosaic_layer``) with the ``selected``
    outline; heads ``H0 ..`` on x, layers ``L0 ..`` on y; hover names head, layer, query, key."""
    m = mosaic
    scale = cell_px / m.side if m.side < cell_px else 1.0
    pooled_note = f" · max-pooled {m.f}×{m.f}" if m.f > 1 else ""
    mid = m.side // 2
    return Frame(
        layers=(image, selected),
        title=f"{m.L} layers × {m.H} heads = {m.L * m.H} maps{pooled_note}",
        xlim=(-0.5, m.width - 0.5), ylim=(-0.5, m.height - 0.5), invert_yaxis=True,
        xticks=[(h * m.stride + mid, f"H{h}") for h in range(m.H)],
        yticks=[(l * m.stride + mid, f"L{l}") for l in range(m.L)],
        tooltips=[("head · key", "$x{custom}"), ("layer · query", "$y{custom}"),
                  ("weight", "@image{0.000}")],
        hover_labels=_axis_labels(m, result.labels, "head"),
        hover_ylabels=_axis_labels(m, result.labels, "layer"), hover_raw=True,
        opts=dict(frame_width=max(120, round(m.width * scale)), frame_height=max(60, round(m.height * scale)),
                  xlabel="head (key →)", ylabel="layer (query ↓)", fontsize={"title": "10pt"}),
    )


def overview_layer(result: HeadsResult, mosaic: Mosaic) -> Layer:
    """``mosaic_layer`` of a result: its full weights pooled here, or a long text's maps pooled
    while it was computed (``result.pooled``, by the same factor)."""
    if result.long:
        if result.pool_factor != mosaic.f:
            raise ValueError(f"expected the result's overview pooled by the mosaic's f={mosaic.f} but it "
                             f"is pooled by {result.pool_factor}")
        return mosaic_layer(result.pooled, mosaic, pooled=True)
    return mosaic_layer(result.weights, mosaic)


def _image_layer(weights: np.ndarray, factor: int = 1, **style) -> Layer:
    side = weights.shape[0] * factor                  # positions covered (pixels of f x f positions)
    return Layer("image", array=np.asarray(weights, dtype=np.float32),
                 bounds=(-0.5, -0.5, side - 0.5, side - 0.5),
                 style=dict(kdims=["key", "query"], vdims=[hv.Dimension("weight", range=(0, 1))],
                            cmap=CMAP, clim=(0, 1), **style))


def _check_map(weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or weights.shape[0] < 1:
        raise ValueError(f"expected one head's weights of shape (T, T) but found {weights.shape}")
    return weights


def cell_frame(weights: np.ndarray, layer: int, head: int, role: str = "") -> Frame:
    """One small overview map (no axes): ``weights (T, T)``, titled ``L{layer} H{head}`` plus its role."""
    weights = _check_map(weights)
    T = weights.shape[0]
    short = {"previous-token": "prev-token"}.get(role, role)
    title = f"L{layer} H{head}" + (f" · {short}" if short else "")
    return Frame(
        layers=(_image_layer(weights),), title=title,
        xlim=(-0.5, T - 0.5), ylim=(-0.5, T - 0.5), invert_yaxis=True,
        tooltips=[("layer", str(layer)), ("head", str(head)), ("query", "$y{0}"), ("key", "$x{0}"),
                  ("weight", "@image{0.000}")],
        opts=dict(frame_width=CELL_SIZE, frame_height=CELL_SIZE, xaxis=None, yaxis=None,
                  fontsize={"title": "9pt"}),
    )


def _short(label: str, n: int = 12) -> str:
    return label if len(label) <= n else label[:n - 1] + "…"


def _refined_style() -> dict:
    return dict(kdims=["key", "query"], vdims=[hv.Dimension("weight", range=(0, 1))], cmap=CMAP,
                clim=(0, 1), no_hover=True)


def main_frame(weights: np.ndarray, tokens: Sequence, layer: int, head: int | None,
               metrics: HeadMetrics | HeadRoles | None = None, *, of_heads: int = 0, factor: int = 1,
               refined=None) -> Frame:
    """The large map of one head with positions and tokens on both axes ("9:42", "1:cat").

    Args:
        weights: ``(T, T)``, row ``q`` = how query ``q`` spreads its attention over the keys; or,
            with ``factor = f > 1``, that map max-pooled over ``f x f`` blocks,
            ``(ceil(T/f), ceil(T/f))`` (a long text; the title says so). Pooled, the tooltip's
            ``weight`` line is the exact weight of the cell under the cursor, which the view
            computes on hover (``common.figures.exact_hover``), next to the pixel's max.
        refined: a zoom window recomputed finer than ``factor`` (an
            ``attention.longcontext.PooledMaps`` of one map, ``HeadsResult.window``), drawn over
            the pooled map by a second image glyph (empty without one); the title names its
            resolution.
        tokens: the ``T`` input tokens: ids or the tokenizer's spelling (axis labels and hover;
            repeats are fine). Up to ``MAIN_TICK_LIMIT`` positions every one is labelled, beyond
            that evenly spaced ones; the hover always names the token.
        layer, head: which head (for the title); ``head=None`` for the mean of ``of_heads`` heads.
        metrics: the head's scores, summarised in the title. Default: none.
    """
    weights = _check_map(weights)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"expected factor to be an int >= 1 but found factor={factor!r}")
    T = len(tokens)
    if math.ceil(T / factor) != weights.shape[0]:
        raise ValueError(f"expected a ({math.ceil(T / factor)}, {math.ceil(T / factor)}) map for {T} tokens "
                         f"pooled by factor={factor} but found {weights.shape}")
    labels = tuple(str(t) for t in tokens)
    step = 1 if T <= MAIN_TICK_LIMIT else nice_step(T, 24)
    ticks = [(i, f"{i}:{_short(labels[i])}") for i in range(0, T, step)]     # position:token
    if head is None:
        title = f"Layer {layer} · mean of its {of_heads} heads"
    else:
        title = f"Layer {layer} · head {head}"
        role = head_role(metrics)
        if role:
            title += f" — {ROLE_NAMES.get(role, role)} head (score {_role_score(metrics, role):.2f})"
    if factor > 1:
        title += f" · max-pooled {factor}×{factor}"
    if refined is not None:
        title += (" · zoom: exact weights" if refined.factor == 1
                  else f" · zoom: max of {refined.factor}×{refined.factor}")
        zoom = Layer("images", arrays=(np.ascontiguousarray(refined.maps[0].numpy(), dtype=np.float32),),
                     boxes=(refined.image_bounds,), style=_refined_style())
    else:
        zoom = Layer("images", arrays=(), boxes=(), style=_refined_style())
    values = [("weight", "@image{0.000}")] if factor == 1 else \
        [("weight (exact)", "$sx{exact}"), (f"max of {factor}×{factor}", "@image{0.000}")]
    return Frame(
        layers=(_image_layer(weights, factor, colorbar=True), zoom), title=title,
        xlim=(-0.5, T - 0.5), ylim=(-0.5, T - 0.5), xticks=ticks, yticks=ticks, xrotation=90,
        invert_yaxis=True,
        tooltips=[("query", "$y{custom}"), ("key", "$x{custom}"), *values],
        hover_labels=labels,
        opts=dict(frame_width=MAIN_SIZE, frame_height=MAIN_SIZE,
                  xlabel="key (position:token)", ylabel="query (position:token)",
                  fontsize={"title": "11pt"}),
    )


def main_heatmap(weights: np.ndarray, tokens: Sequence[int], layer: int, head: int,
                 metrics: HeadMetrics | None = None) -> hv.Image:
    """``main_frame`` as a styled ``hv.Image`` (notebooks, tests): its map, without the (empty)
    zoom layer."""
    frame = main_frame(weights, tokens, layer, head, metrics)
    return to_element(replace(frame, layers=frame.layers[:1]))


def overview_grid(weights: np.ndarray, metrics: Sequence[HeadMetrics] = ()) -> hv.Layout:
    """Every head as a small map: ``weights (L, H, T, T)`` -> a Layout of ``L`` rows x ``H`` columns."""
    weights = np.asarray(weights)
    if weights.ndim != 4:
        raise ValueError(f"expected weights of shape (L, H, T, T) but found {weights.shape}")
    by_head = {(m.layer, m.head): m for m in metrics}
    L, H = weights.shape[:2]
    cells = [to_element(cell_frame(weights[l, h], l, h, head_role(by_head.get((l, h)))))
             for l in range(L) for h in range(H)]
    return hv.Layout(cells).cols(H)


def _score_cell(value: float, color: str, stat: str) -> str:
    pct = max(0.0, min(1.0, value)) * 100
    return (f"<td class='ap-th-num' data-stat='{stat}'>"
            f"<span class='ap-th-bar' style='width:{pct:.0f}%;background:{color}33'></span>"
            f"<span class='ap-th-val'>{value:.2f}</span></td>")


def metrics_table_html(metrics: Sequence[HeadMetrics], selected: tuple[int, int] | None = None,
                       min_score: float = 0.5) -> str:
    """The head-metrics table: one row per head (``data-layer``/``data-head``), scores with bars.

    The head flagged ``is_previous_token_head`` / ``is_induction_head`` gets a solid badge
    (``ap-th-badge ap-th-best``, ``data-role``); other heads scoring at least ``min_score`` get an
    outlined one, since several heads can learn the same job. The ``selected`` (layer, head) row
    has the class ``ap-th-selected``.
    """
    rows = []
    for m in metrics:
        badges = []
        for role, score, best in (("previous-token", m.previous_token, m.is_previous_token_head),
                                  ("induction", m.induction, m.is_induction_head)):
            if best or score >= min_score:
                kind = "ap-th-best" if best else "ap-th-also"
                badges.append(f"<span class='ap-th-badge {kind}' data-role='{role}' "
                              f"style='--role:{ROLE_COLORS[role]}'>{role}"
                              f"{' head' if best else '-like'}</span>")
        classes = ["ap-th-row"]
        if (m.layer, m.head) == selected:
            classes.append("ap-th-selected")
        if m.is_previous_token_head or m.is_induction_head:
            classes.append("ap-th-flagged")
        rows.append(
            f"<tr class='{' '.join(classes)}' data-layer='{m.layer}' data-head='{m.head}'>"
            f"<td>{m.layer}</td><td>{m.head}</td>"
            + _score_cell(m.previous_token, ROLE_COLORS["previous-token"], "previous-token")
            + _score_cell(m.induction, ROLE_COLORS["induction"], "induction")
            + f"<td class='ap-th-num' data-stat='entropy'>{m.entropy:.2f}</td>"
            f"<td>{''.join(badges)}</td></tr>"
        )
    head = ("<tr><th>layer</th><th>head</th><th>previous-token</th><th>induction</th>"
            "<th>entropy (nats)</th><th>role</th></tr>")
    return f"<table class='ap-th-table'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


_ROLE_COLUMNS = (("previous-token", "previous_token", "previous"), ("next-token", "next_token", "next"),
                 ("first-token", "first_token", "[CLS] / first"), ("last-token", "last_token", "[SEP] / end"),
                 ("self", "self_token", "self"), ("induction", "induction", "induction"))


def roles_table_html(roles: Sequence[HeadRoles], selected: tuple[int, int] | None = None) -> str:
    """The head-roles table of a Hugging Face model: one row per head (``data-layer``/``data-head``),
    the six role scores with bars, entropy, and the head's strongest role as a badge
    (``ap-th-badge ap-th-best``, ``data-role``; scores of at least 0.5 only). Same classes as
    ``metrics_table_html``; ``n/a`` where a score cannot be measured (NaN)."""
    rows = []
    for r in roles:
        cells = "".join(
            (_score_cell(getattr(r, attr), ROLE_COLORS[role], role) if not math.isnan(getattr(r, attr))
             else f"<td class='ap-th-num' data-stat='{role}'>n/a</td>")
            for role, attr, _ in _ROLE_COLUMNS)
        badge = ("" if not r.role else
                 f"<span class='ap-th-badge ap-th-best' data-role='{r.role}' "
                 f"style='--role:{ROLE_COLORS[r.role]}'>{html.escape(ROLE_NAMES[r.role])}</span>")
        classes = ["ap-th-row"] + (["ap-th-selected"] if (r.layer, r.head) == selected else []) \
            + (["ap-th-flagged"] if r.role else [])
        rows.append(f"<tr class='{' '.join(classes)}' data-layer='{r.layer}' data-head='{r.head}'>"
                    f"<td>{r.layer}</td><td>{r.head}</td>{cells}"
                    f"<td class='ap-th-num' data-stat='entropy'>{r.entropy:.2f}</td><td>{badge}</td></tr>")
    head = ("<tr><th>layer</th><th>head</th>" + "".join(f"<th>{html.escape(t)}</th>" for *_, t in _ROLE_COLUMNS)
            + "<th>entropy (nats)</th><th>role</th></tr>")
    return f"<table class='ap-th-table'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


# ----------------------------------------------------------------------------------------------
# sentences
def _tok(token) -> str:
    return f"<b class='tok'>{html.escape(str(token))}</b>"


def reading_html(th: HeadsState) -> str:
    """What the selected query of the selected head (or the layer's mean) reads, in a sentence
    (``.ap-th-reading``)."""
    r = th.result
    q = min(th.query, r.seq_len - 1)
    layer, head = min(th.layer, r.num_layers - 1), min(th.head, r.num_heads - 1)
    rd = query_reading(r, layer, head, q, row=th.selected_row(q))
    why = {
        "previous": "the position just before it (previous-token pattern).",
        "next": "the position just after it (next-token pattern: the model reads both ways).",
        "after-previous-occurrence": (f"the token that followed the earlier {_tok(rd['label'])} "
                                      f"at position {rd['occurrence']} (induction pattern)."),
        "self": "itself.",
        "first": "the first position (a sink: [CLS] / the first token takes the weight a head has "
                 "nowhere better to put).",
        "last": "the last position (the end sink: [SEP] in a BERT input).",
        "": "a position with no simple relation to it.",
    }[rd["relation"]]
    who = (f"The mean of layer {layer}'s {r.num_heads} heads" if th.aggregate
           else f"Layer {layer} head {head}")
    text = (f"<b>Query {q}</b> holds token {_tok(rd['label'])}. {who} puts "
            f"<b>{rd['weight']:.2f}</b> of its attention on key {rd['key']} (token "
            f"{_tok(rd['key_label'])}): {why}")
    if rd["prediction"] is not None:
        nxt = r.tokens[q + 1] if q + 1 < r.seq_len else None
        verdict = ("" if nxt is None else
                   " ✓ correct" if rd["prediction"] == nxt else f" (the input has {_tok(nxt)})")
        text += f"<br>The model's next token after position {q}: {_tok(rd['prediction'])}{verdict}"
    return (f"<div class='ap-th-line' data-query='{q}' data-top-key='{rd['key']}' "
            f"data-relation='{rd['relation']}'>{text}</div>")


def summary_html(th: HeadsState) -> str:
    """How often the model predicts the next token right on the input shown, or for a Hugging
    Face model what it is and how the text was tokenized (``.ap-th-summary``)."""
    r = th.result
    T = r.seq_len
    if r.predictions is None:
        kind = "causal" if r.is_causal else "bidirectional (every token sees every other)"
        special = [t for t in r.labels if t.startswith(("[", "<")) and t.endswith(("]", ">"))]
        extra = f", special tokens {', '.join(_tok(t) for t in dict.fromkeys(special))} included" if special else ""
        text = (f"<b>{html.escape(r.model_name)}</b>: {r.num_layers} layers × {r.num_heads} heads, "
                f"attention {kind}. Your text is <b>{T} tokens</b> as its tokenizer splits it{extra}.")
        if r.token_limit:
            text += (f" <span data-token-limit='{r.token_limit}'>Texts up to {r.token_limit} tokens are shown "
                     f"({html.escape(r.limit_reason)}).</span>")
        if r.long:
            text += (f" <span data-long='1'>A long text: the {r.num_layers * r.num_heads} maps are computed "
                     f"from each layer's queries and keys tile by tile and max-pooled "
                     f"{r.pool_factor}×{r.pool_factor} here, the main map and the query's row exactly "
                     f"from them.</span>")
        return f"<div class='ap-th-line'>{text}</div>"
    hits = r.predictions[:-1] == np.asarray(r.tokens[1:])               # (T-1,) query i -> token i+1
    name = "trained model" if r.model == "trained" else "random model"
    if r.period is not None and T >= 4:
        p = r.period
        first, second = hits[:p - 1], hits[p:]
        text = (f"The {name} predicts the next token right at <b>{int(second.sum())} of "
                f"{len(second)}</b> positions of the second copy, and at {int(first.sum())} of "
                f"{len(first)} in the first (new random tokens: chance is 1 in {th.vocab_size}).")
    elif T > 1:
        text = (f"The {name} predicts the next token right at {int(hits.sum())} of {T - 1} positions "
                f"of your input; after the last one it predicts "
                f"<b class='tok'>{int(r.predictions[-1])}</b>.")
    else:
        text = f"After your one token the {name} predicts <b class='tok'>{int(r.predictions[-1])}</b>."
    return f"<div class='ap-th-line'>{text}</div>"


def message_html(th: HeadsState) -> str:
    """The model / input message: what is loading, why a model cannot be shown (e.g. how to install
    MiniLM), why an input was rejected, or a hint (``.ap-th-message``)."""
    parts = []
    if th.loading:
        parts.append(f"<div class='ap-th-loading' role='status'>{html.escape(th.loading)}</div>")
    if th.model_error:
        shown = html.escape(th.result.model_name or th.result.model)
        parts.append(f"<div class='ap-th-error' role='alert' data-error='model'>{_code(th.model_error)} "
                     f"Showing the {shown}.</div>")
    if th.input_error:
        parts.append(f"<div class='ap-th-error' role='alert' data-error='input'>{html.escape(th.input_error)} "
                     f"Showing the last valid input.</div>")
    if th.input_note and not th.input_error:
        parts.append(f"<div class='ap-th-ok' data-note='cut'>{html.escape(th.input_note)}</div>")
    if not parts and th.input_kind == "custom" and not is_hf(th.result.model):
        n = th.result.seq_len
        parts.append(f"<div class='ap-th-ok'>{n} token{'s' if n != 1 else ''}. Repeat a few to see the "
                     f"induction head at work, e.g. <code>5 9 2 7 5 9 2</code>.</div>")
    return "".join(parts)


def _code(text: str) -> str:
    """Escaped text with `backquoted` spans as <code>."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
