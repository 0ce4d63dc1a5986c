"""Pure functions for the "Trained heads" tab: attention maps -> figure frames, results -> HTML.

Nothing here runs a model: every number comes from ``dashboard.heads.state.HeadsResult`` (one
forward pass) and ``attention.head_metrics.HeadMetrics``. Frames are ``common.frames.Frame``s,
so a figure is drawn once by HoloViews (``to_element``) and then updated in place by
``common.live.LivePlot``.

Orientation (unit-tested): ``weights[q, k]`` is drawn with query ``q`` on y (0 at the top) and key
``k`` on x: ``hv.Image`` gets ``array[::-1]`` with ``bounds=(-.5, -.5, T-.5, T-.5)`` and
``invert_yaxis=True`` (``to_element`` does the flip), colour range pinned to ``(0, 1)``.
"""
from __future__ import annotations

import html
from typing import Sequence

import holoviews as hv
import numpy as np

from attention.head_metrics import HeadMetrics

from ..common.frames import Frame, Layer, to_element
from ..common.style import CMAP
from .state import HeadsState, query_reading

__all__ = [
    "CELL_SIZE",
    "MAIN_SIZE",
    "SELECTED_OUTLINE",
    "cell_frame",
    "head_role",
    "main_frame",
    "main_heatmap",
    "message_html",
    "metrics_table_html",
    "overview_grid",
    "reading_html",
    "summary_html",
]

CELL_SIZE = 128               # frame width/height of one overview map, px
MAIN_SIZE = 430               # frame width/height of the main map, px
SELECTED_OUTLINE = "#0891b2"  # outline of the selected overview map (cyan 600)
ROLE_COLORS = {"previous-token": "#2563eb", "induction": "#c026d3"}


def head_role(m: HeadMetrics | None, min_score: float = 0.5) -> str:
    """``"previous-token"``, ``"induction"`` or ``""``: what a head does, by its higher score
    at or above ``min_score``."""
    if m is None:
        return ""
    scores = {"previous-token": m.previous_token, "induction": m.induction}
    role, score = max(scores.items(), key=lambda kv: kv[1])
    return role if score >= min_score else ""


def _image_layer(weights: np.ndarray, **style) -> Layer:
    T = weights.shape[0]
    return Layer("image", array=np.asarray(weights, dtype=np.float32),
                 bounds=(-0.5, -0.5, T - 0.5, T - 0.5),
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


def main_frame(weights: np.ndarray, tokens: Sequence[int], layer: int, head: int,
               metrics: HeadMetrics | None = None) -> Frame:
    """The large map of one head with every position and token id on both axes ("9:42").

    Args:
        weights: ``(T, T)``, row ``q`` = how query ``q`` spreads its attention over the keys.
        tokens: the ``T`` input token ids (axis labels; repeated ids are fine).
        layer, head: which head (for the title).
        metrics: the head's scores, summarised in the title. Default: none.
    """
    weights = _check_map(weights)
    T = weights.shape[0]
    if len(tokens) != T:
        raise ValueError(f"expected {T} tokens for a ({T}, {T}) map but found {len(tokens)}")
    ticks = [(i, f"{i}:{t}") for i, t in enumerate(tokens)]       # position:token (id or word)
    title = f"Layer {layer} · head {head}"
    role = head_role(metrics)
    if role:
        score = metrics.previous_token if role == "previous-token" else metrics.induction
        title += f" — {role} head (score {score:.2f})"
    return Frame(
        layers=(_image_layer(weights, colorbar=True),), title=title,
        xlim=(-0.5, T - 0.5), ylim=(-0.5, T - 0.5), xticks=ticks, yticks=ticks, xrotation=90,
        invert_yaxis=True,
        tooltips=[("query position", "$y{0}"), ("key position", "$x{0}"), ("weight", "@image{0.000}")],
        opts=dict(frame_width=MAIN_SIZE, frame_height=MAIN_SIZE,
                  xlabel="key (position:token id)", ylabel="query (position:token id)",
                  fontsize={"title": "11pt"}),
    )


def main_heatmap(weights: np.ndarray, tokens: Sequence[int], layer: int, head: int,
                 metrics: HeadMetrics | None = None) -> hv.Image:
    """``main_frame`` as a styled ``hv.Image`` (notebooks, tests)."""
    return to_element(main_frame(weights, tokens, layer, head, metrics))


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


# ----------------------------------------------------------------------------------------------
# sentences
def _tok(token: int) -> str:
    return f"<b class='tok'>{token}</b>"


def reading_html(th: HeadsState) -> str:
    """What the selected query of the selected head reads, in a sentence (``.ap-th-reading``)."""
    q = min(th.query, th.result.seq_len - 1)
    rd = query_reading(th.result, th.layer, th.head, q)
    why = {
        "previous": "the position just before it (previous-token pattern).",
        "after-previous-occurrence": (f"the token that followed the earlier {_tok(rd['token'])} "
                                      f"at position {rd['occurrence']} (induction pattern)."),
        "self": "itself.",
        "": "a position with no simple relation to it.",
    }[rd["relation"]]
    nxt = th.result.tokens[q + 1] if q + 1 < th.result.seq_len else None
    verdict = ("" if nxt is None else
               " ✓ correct" if rd["prediction"] == nxt else f" (the input has {_tok(nxt)})")
    return (f"<div class='ap-th-line' data-query='{q}' data-top-key='{rd['key']}' "
            f"data-relation='{rd['relation']}'>"
            f"<b>Query {q}</b> holds token {_tok(rd['token'])}. Layer {th.layer} head {th.head} puts "
            f"<b>{rd['weight']:.2f}</b> of its attention on key {rd['key']} (token "
            f"{_tok(rd['key_token'])}): {why}<br>The model's next token after position {q}: "
            f"{_tok(rd['prediction'])}{verdict}</div>")


def summary_html(th: HeadsState) -> str:
    """How often the model predicts the next token right on the input shown (``.ap-th-summary``)."""
    r = th.result
    T = r.seq_len
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
    """The input message: why a custom input was rejected, or a hint (``.ap-th-message``)."""
    if th.input_error:
        return (f"<div class='ap-th-error' role='alert'>{html.escape(th.input_error)} "
                f"Showing the last valid input.</div>")
    if th.input_kind == "custom":
        n = th.result.seq_len
        return (f"<div class='ap-th-ok'>{n} token{'s' if n != 1 else ''}. Repeat a few to see the "
                f"induction head at work, e.g. <code>5 9 2 7 5 9 2</code>.</div>")
    return ""
