"""Standalone HTML export of the Playground: ``python -m dashboard.export OUT.html [--seq-len ...]``.

The file holds everything inline (BokehJS, data, styles) and makes no network request at all.
It stays interactive without a server: the causal checkbox, the prefix slider L, the query slider
and a click on any head's map (selects that row's query) are wired with Bokeh ``CustomJS``.

How: the file is plain Bokeh (no Panel runtime, hence none of Panel's CDN stylesheets). The
figures are the dashboard's own (``plots.*_frame`` drawn by HoloViews via ``LivePlot``). The data
for *both* causal settings ships once: the weights ``(H, T, T)`` with and without the mask, and
the invariance check for *every* prefix L (``position_diff``, ``max_diff``, PASS/FAIL), all
computed here by the library. One JavaScript function picks the current slices and writes them
into the figures' data sources. Size: about 2 MB of BokehJS plus ``8 * H * T**2`` bytes of data
(base64), e.g. 2.1 MB at the default T=16, H=4. The export needs ``T**2 * H <= 2**20``
(e.g. T=256 with 16 heads) so that every head map ships at full resolution.

Above that limit the export is **pooled** (``pooled=True``; the dashboard's button takes it
automatically, the CLI with ``--pooled``): a snapshot of the current settings, clearly labelled
on the page, with the heads mosaic max-pooled as the dashboard shows it (the maps are reduced
where they are computed, never held whole), the selected query's exact row, the keep-mask and the
invariance check for the current L. Its controls are fixed (the data for every L and query would
be ``T**2`` numbers each).

``export_html(source, file)`` is shared by the CLI and the dashboard's "Download as HTML"
button (which writes into an in-memory buffer: the server never touches its disk).
"""
from __future__ import annotations

import argparse
import html
import io
import re
import sys
from dataclasses import replace
from typing import IO, Any

import markdown
import numpy as np
import torch
from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import Checkbox, ColumnDataSource, CustomJS, Div, Slider
from bokeh.resources import INLINE

from ..common.frames import MAX_PIXELS, token_label
from ..common.figures import LivePlot, render
from ..common.style import CSS
from . import plots
from .state import FUTURE_ATOL, MAX_SEQ_LEN, PlaygroundResult, PlaygroundState, words_of
from .text import TEXT

__all__ = ["EXPORT_PARAMS", "MAX_EXPORT_CELLS", "RESOURCE_URL", "build_document", "export_html",
           "fits_full_export", "main", "offline", "render_html"]

EXPORT_PARAMS = ("seq_len", "num_heads", "head_dim", "seed", "text", "position_scale", "causal",
                 "prefix", "query")
MAX_EXPORT_CELLS = MAX_PIXELS            # T*T*H: every head map at full resolution

_PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #0f172a;
       margin: 0; }
.ap-section h3 { margin: 12px 0 4px 0; font-size: 16px; }
.ap-section p { margin: 4px 0; font-size: 13px; line-height: 1.45; max-width: 900px; }
.ap-caveat { background: #fff7ed; border-left: 3px solid #f97316; padding: 2px 8px; font-size: 12px; }
"""

_HEADER_STYLE = {"background": "#1e293b", "color": "white", "padding": "10px 20px",
                 "font-size": "22px", "box-sizing": "border-box"}

_UPDATE_JS = """
const T = meta.T, H = meta.H;
const causal = causal_box.active;
const L = Math.min(Math.max(prefix_slider.value, 0), T - 1);
const q = Math.min(Math.max(query_slider.value, 0), T - 1);
// plain typed-array views (BokehJS ndarrays do not support subarray())
const view = (a) => a.BYTES_PER_ELEMENT === 8 ? new Float64Array(a.buffer, a.byteOffset, a.length)
                                               : new Float32Array(a.buffer, a.byteOffset, a.length);
const W = view(causal ? store.data.w_causal[0] : store.data.w_full[0]);  // (H*T*T,) row-major
const make = (proto, values, shape) => new proto.constructor(values, shape);

// head maps: rows = queries from y = 0 up (the y axis is drawn inverted), and the query line
for (let h = 0; h < H; h++) {
  const src = head_sources[h];
  const img = make(src.data.image[0], W.slice(h * T * T, (h + 1) * T * T), [T, T]);
  src.data = Object.assign({}, src.data, {image: [img]});
  head_lines[h].location = q;
}
// heads x keys for the selected query
const rows = new Float32Array(H * T);
for (let h = 0; h < H; h++) rows.set(W.subarray(h * T * T + q * T, h * T * T + (q + 1) * T), h * T);
query_source.data = Object.assign({}, query_source.data,
                                  {image: [make(query_source.data.image[0], rows, [H, T])]});
query_title.text = "Query " + meta.labels[q] + ": weight on each key, per head";
// mask
const M = new Float32Array(T * T);
for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) M[i * T + j] = (!causal || j <= i) ? 1 : 0;
mask_source.data = Object.assign({}, mask_source.data, {image: [make(mask_source.data.image[0], M, [T, T])]});
mask_title.text = causal ? "Causal keep-mask" : "No mask (full attention)";
// invariance for prefix L
const D = view(causal ? store.data.diff_causal[0] : store.data.diff_full[0]);  // (T*T,): row L
const d = D.subarray(L * T, (L + 1) * T);
const same = new Float64Array(T), changed = new Float64Array(T), violated = new Float64Array(T);
let top = 1e-3;
for (let i = 0; i < T; i++) {
  if (i > L) changed[i] = d[i]; else if (d[i] > meta.atol) violated[i] = d[i]; else same[i] = d[i];
  top = Math.max(top, d[i]);
}
top *= 1.15;
same_source.data = Object.assign({}, same_source.data, {top: same, diff: same});
changed_source.data = Object.assign({}, changed_source.data, {top: changed, diff: changed});
violated_source.data = Object.assign({}, violated_source.data, {top: violated, diff: violated});
span.right = L + 0.5;
line.location = L + 0.5;
label_source.data = {x: [L + 0.5], y: [top * 0.93], text: [" L = " + L]};
inv_range.start = 0; inv_range.end = top; inv_range.reset_start = 0; inv_range.reset_end = top;
// verdict and numbers
const mf = causal ? meta.max_future_causal : meta.max_future_full;
const md = (causal ? store.data.max_diff_causal[0] : store.data.max_diff_full[0])[L];
const inv_ok = (causal ? store.data.passed_causal[0] : store.data.passed_full[0])[L] > 0;
const ok = mf <= meta.future_atol && inv_ok;
const word = ok ? "PASS" : "FAIL";
const why = ok ? "no weight on future keys and outputs 0..L unchanged"
               : "attention reaches future keys" + (inv_ok ? "" : " and outputs 0..L changed");
verdict.text = '<div class="ap-verdict"><span class="ap-badge ap-' + word.toLowerCase() +
  '" data-verdict="' + word + '">' + word + '</span><span class="ap-verdict-why">' + why + '</span></div>';
const fmt = (x) => x.toExponential(2).replace(/e([+-])(\\d)$/, "e$10$2");
const perturbed = L < T - 1 ? (L + 1) + ".." + (T - 1) : "none";
stats.text = "<table class='ap-stats'><tr><td>max weight on a future key</td>" +
  "<td class='ap-num' data-stat='max-future'>" + fmt(mf) + "</td><td class='ap-want'>should be 0</td></tr>" +
  "<tr><td>max |Δ output| at positions 0.." + L + "</td><td class='ap-num' data-stat='max-diff'>" +
  fmt(md) + "</td><td class='ap-want'>≤ " + meta.atol_text + "</td></tr>" +
  "<tr><td>perturbed positions</td><td class='ap-num'>" + perturbed + "</td><td></td></tr></table>" +
  (L < T - 1 ? "" : "<div class='ap-note'>L is the last position: nothing after it to perturb.</div>");
"""


# ----------------------------------------------------------------------------------------------
def _params_of(source: PlaygroundState | dict[str, Any] | None) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, PlaygroundState):
        return {name: getattr(source, name) for name in EXPORT_PARAMS}
    if isinstance(source, dict):
        unknown = sorted(set(source) - set(EXPORT_PARAMS))
        if unknown:
            raise ValueError(f"expected export parameters among {list(EXPORT_PARAMS)} but found "
                             f"{unknown}")
        return dict(source)
    raise TypeError(f"expected an AttentionPlayground or a dict of parameters but found "
                    f"{type(source).__name__}")


def _invariance_table(pg: PlaygroundState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """position_diff for every prefix L (rows), max_diff and passed per L, via the library."""
    T = pg.seq_len
    diffs, max_diff, passed = np.zeros((T, T), np.float32), np.zeros(T), np.zeros(T, np.int8)
    for L in range(T):
        inv = pg.invariance_at(L)
        diffs[L], max_diff[L], passed[L] = inv.position_diff.numpy(), inv.max_diff, inv.passed
    return diffs, max_diff, passed


def _md(key: str) -> str:
    return markdown.markdown(TEXT[key].strip())


def _section(key: str, *children, **kw):
    return column(Div(text=_md(key), css_classes=["ap-section"], stylesheets=[_PAGE_CSS],
                      sizing_mode="stretch_width"), *children, **kw)


def fits_full_export(source: PlaygroundState | dict[str, Any] | None = None) -> bool:
    """Whether ``source``'s settings fit the full (interactive) export: ``T**2 * H <= MAX_EXPORT_CELLS``."""
    params = _params_of(source)
    d = PlaygroundState.param
    words = words_of(params.get("text", ""))
    T = len(words) if words else params.get("seq_len", d.seq_len.default)
    return T * T * params.get("num_heads", d.num_heads.default) <= MAX_EXPORT_CELLS


def build_document(source: PlaygroundState | dict[str, Any] | None = None,
                   pooled: bool | None = False):
    """The export's Bokeh layout (figures, widgets, texts) with its ``CustomJS`` wiring.

    Args:
        source: an ``AttentionPlayground`` or a dict of parameters (see :func:`export_html`).
        pooled: ``True``: the pooled snapshot (any size); ``False``: the full export, refused
            with a ``ValueError`` above ``MAX_EXPORT_CELLS``; ``None``: whichever fits.
    """
    params = _params_of(source)
    if pooled is None:
        pooled = not fits_full_export(params)
    if pooled:
        return _pooled_document(params)
    if not fits_full_export(params):
        pg = PlaygroundState(**params)
        T, H = pg.seq_len, pg.num_heads
        raise ValueError(
            f"expected seq_len**2 * num_heads <= {MAX_EXPORT_CELLS} for a full static export (e.g. "
            f"T=256 with 16 heads) but found T={T}, H={H} ({T * T * H}): export it pooled "
            f"(pooled=True, --pooled) or use the served app")
    both = {c: PlaygroundState(**{**params, "causal": c}) for c in (True, False)}
    pg = both[bool(params.get("causal", True))]
    r: PlaygroundResult = pg.result
    T, H = r.seq_len, r.num_heads

    tables = {c: _invariance_table(p) for c, p in both.items()}
    store = ColumnDataSource(data={
        "w_causal": [both[True].result.weights.numpy().reshape(-1)],
        "w_full": [both[False].result.weights.numpy().reshape(-1)],
        "diff_causal": [tables[True][0].reshape(-1)], "diff_full": [tables[False][0].reshape(-1)],
        "max_diff_causal": [tables[True][1]], "max_diff_full": [tables[False][1]],
        "passed_causal": [tables[True][2]], "passed_full": [tables[False][2]],
    })
    meta = dict(
        T=T, H=H, labels=[token_label(r.tokens, i) for i in range(T)],
        max_future_causal=both[True].result.max_future_weight,
        max_future_full=both[False].result.max_future_weight,
        future_atol=FUTURE_ATOL,
        atol=float(r.invariance.atol), atol_text=f"{r.invariance.atol:g}",
    )

    # figures: the dashboard's own frames, drawn once by HoloViews
    heads = [LivePlot(plots.head_frame(r, h, pg.query)) for h in range(H)]
    query = LivePlot(plots.query_frame(r, pg.query))
    mask = LivePlot(plots.mask_frame(r))
    inv = LivePlot(plots.invariance_frame(r))
    colorbar = render(plots.colorbar_strip()).state
    for i, live in enumerate(heads):
        live.figure.css_classes = ["ap-head-heatmap", f"ap-head-{i}"]
    query.figure.css_classes = ["ap-query-plot"]
    mask.figure.css_classes = ["ap-mask"]
    inv.figure.css_classes = ["ap-invariance-chart"]
    for fig in (colorbar, *[h.figure for h in heads], query.figure, mask.figure, inv.figure):
        fig.styles = {**fig.styles, "flex": "none"}       # a stretched figure is cut off in rows

    causal_box = Checkbox(label="Causal mask", active=pg.causal, css_classes=["ap-causal"])
    prefix_slider = Slider(title="Prefix L", start=0, end=max(T - 1, 1), value=pg.prefix, step=1,
                           disabled=T == 1, css_classes=["ap-prefix"], width=280)
    query_slider = Slider(title="Selected query", start=0, end=max(T - 1, 1), value=pg.query,
                          step=1, disabled=T == 1, css_classes=["ap-query"], width=280)
    verdict = Div(text=plots.verdict_html(r), stylesheets=[CSS], css_classes=["ap-verdict-pane"])
    stats = Div(text=plots.invariance_summary_html(r), stylesheets=[CSS],
                css_classes=["ap-stats-pane"])

    span, same, changed, vline, label, violated = inv.leaves
    update = CustomJS(args=dict(
        meta=meta, store=store, causal_box=causal_box, prefix_slider=prefix_slider,
        query_slider=query_slider,
        head_sources=[h.leaves[0].handles["source"] for h in heads],
        head_lines=[h.leaves[1].handles["glyph"] for h in heads],
        query_source=query.leaves[0].handles["source"], query_title=query.figure.title,
        mask_source=mask.leaves[0].handles["source"], mask_title=mask.figure.title,
        same_source=same.handles["source"], changed_source=changed.handles["source"],
        violated_source=violated.handles["source"],
        span=span.handles["glyph"], line=vline.handles["glyph"],
        label_source=label.handles["source"], inv_range=inv.figure.y_range,
        verdict=verdict, stats=stats,
    ), code=_UPDATE_JS)
    causal_box.js_on_change("active", update)
    prefix_slider.js_on_change("value", update)
    query_slider.js_on_change("value", update)
    pick = CustomJS(args=dict(query_slider=query_slider, T=T),
                    code="query_slider.value = Math.min(Math.max(Math.round(cb_obj.y), 0), T - 1);")
    for live in heads:
        live.figure.js_on_event("tap", pick)

    settings = Div(text=(
        f"<p style='font-size:12px;color:#475569'>T = {T} tokens, H = {H} heads, D = {r.head_dim}, "
        f"seed = {pg.seed}, position signal = {pg.position_scale:g}"
        + (f"<br>text: <i>{html.escape(pg.text)}</i>" if pg.text.strip() else "")
        + "<br>A static copy: the causal mask, L and the selected query (slider or a click on a "
        "map) stay interactive. For other settings run the app.</p>"))
    sidebar = column(
        Div(text="<b>Controls</b>"), causal_box, prefix_slider, query_slider, settings,
        Div(text=_md("caveat"), css_classes=["ap-caveat"], stylesheets=[_PAGE_CSS], width=280),
        width=300,
    )
    main = column(
        Div(text=_md("intro"), css_classes=["ap-section"], stylesheets=[_PAGE_CSS],
            sizing_mode="stretch_width"),
        _section("heads", row(colorbar, *[h.figure for h in heads], styles={"flex-wrap": "wrap"},
                              css_classes=["ap-heads"])),
        _section("query_static", query.figure),
        _section("causal", row(mask.figure, column(verdict, stats, width=380), inv.figure,
                               styles={"flex-wrap": "wrap"}, css_classes=["ap-invariance"])),
        sizing_mode="stretch_width",
    )
    # the band is the Div itself (its host element stretches; a div inside it only fits its text)
    header = Div(text="Attention Playground", css_classes=["ap-header"], sizing_mode="stretch_width",
                 styles=_HEADER_STYLE)
    return column(header, row(sidebar, main, sizing_mode="stretch_width"),
                  sizing_mode="stretch_width")


def _pooled_document(params: dict[str, Any]):
    """A snapshot of one setting above the full export's limit: the dashboard's pooled mosaic, the
    selected query's exact row, the keep-mask and the invariance check for the current L."""
    pg = PlaygroundState(**params)
    r: PlaygroundResult = pg.result
    T, H = r.seq_len, r.num_heads
    f = plots.HeadGrid.of_result(r).f
    frame = plots.heads_frame(r, pg.query)
    # the served page's hover asks the server for the exact weight: here only the pixel's value
    frame = replace(frame, tooltips=[t for t in frame.tooltips if "{exact}" not in t[1]])
    heads = LivePlot(frame)
    query = LivePlot(plots.query_frame(r, pg.query))
    mask = LivePlot(plots.mask_frame(r))
    inv = LivePlot(plots.invariance_frame(r, max_bars=plots.MAX_BARS))
    colorbar = render(plots.colorbar_strip()).state
    heads.figure.css_classes = ["ap-heads-map", "ap-pooled-map"]
    query.figure.css_classes = ["ap-query-plot"]
    mask.figure.css_classes = ["ap-mask"]
    inv.figure.css_classes = ["ap-invariance-chart"]
    for fig in (colorbar, heads.figure, query.figure, mask.figure, inv.figure):
        fig.styles = {**fig.styles, "flex": "none"}
    pooling = (f"every pixel of a head map is the <b>max of {f}×{f}</b> weights" if f > 1 else
               "the head maps are exact")
    note = Div(text=(
        f"<div class='ap-pooled-note' data-pooled-factor='{f}'><b>Pooled export.</b> "
        f"T = {T} tokens with H = {H} heads is {T * T * H:,} weights, above the full export's "
        f"{MAX_EXPORT_CELLS:,}: this file is a snapshot. {pooling.capitalize()} (as the dashboard "
        f"shows them); the query plot holds query {pg.query}'s exact weights; the invariance check "
        f"is for L = {pg.prefix}. The causal mask, L and the query are fixed here: run the app "
        f"(it sharpens a zoomed map) to change them.</div>"),
        css_classes=["ap-pooled-export"], stylesheets=[_PAGE_CSS], sizing_mode="stretch_width",
        styles={"background": "#fff7ed", "border-left": "3px solid #f97316", "padding": "2px 8px"})
    settings = Div(text=(
        f"<p style='font-size:12px;color:#475569'>T = {T} tokens, H = {H} heads, D = {r.head_dim}, "
        f"seed = {pg.seed}, position signal = {pg.position_scale:g}, causal = {pg.causal}, "
        f"L = {pg.prefix}, query = {pg.query}"
        + (f"<br>text: <i>{html.escape(pg.text[:200])}</i>" if pg.text.strip() else "") + "</p>"))
    verdict = Div(text=plots.verdict_html(r), stylesheets=[CSS], css_classes=["ap-verdict-pane"])
    stats = Div(text=plots.invariance_summary_html(r), stylesheets=[CSS],
                css_classes=["ap-stats-pane"])
    sidebar = column(Div(text="<b>Settings (fixed)</b>"), settings,
                     Div(text=_md("caveat"), css_classes=["ap-caveat"], stylesheets=[_PAGE_CSS],
                         width=280), width=300)
    main = column(
        note,
        Div(text=_md("intro"), css_classes=["ap-section"], stylesheets=[_PAGE_CSS],
            sizing_mode="stretch_width"),
        _section("heads", row(colorbar, heads.figure, css_classes=["ap-heads"])),
        _section("query_static", query.figure),
        _section("causal", row(mask.figure, column(verdict, stats, width=380), inv.figure,
                               styles={"flex-wrap": "wrap"}, css_classes=["ap-invariance"])),
        sizing_mode="stretch_width",
    )
    header = Div(text="Attention Playground · pooled export", css_classes=["ap-header"],
                 sizing_mode="stretch_width", styles=_HEADER_STYLE)
    return column(header, row(sidebar, main, sizing_mode="stretch_width"),
                  sizing_mode="stretch_width")


# BokehJS carries lazy loaders for optional features this page never uses (MathJax for TeX
# labels). They would fetch from a CDN only if triggered; point them at an inert data: URL so
# that the file holds no network address a browser could load at all.
_LAZY_CDN = {
    'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js"': 'src="data:text/javascript,"',
}
# What a browser would fetch: src/href attributes (HTML or JS), CSS url(...) and @import.
RESOURCE_URL = re.compile(
    r"""(?:\bsrc|\bhref)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
    r"""@import\s+(?:url\()?\s*["']?(?:https?:)?//""", re.IGNORECASE)


# <script src=...> tags Bokeh adds for extensions of every imported model (Panel's, here): the
# page uses none of them, and their relative paths would only fail to load.
_EXTERNAL_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["'](?!data:)[^"']*["'][^>]*>\s*</script>\s*""",
                              re.IGNORECASE)
_EXTERNAL_LINK = re.compile(r"""<link\b[^>]*\bhref\s*=\s*["'](?!data:)[^"']*["'][^>]*>\s*""", re.IGNORECASE)


def offline(page: str) -> str:
    """``page`` without external script/link tags and with the known lazy CDN loaders neutralised.

    Raises ``RuntimeError`` if any network resource URL is left.
    """
    page = _EXTERNAL_LINK.sub("", _EXTERNAL_SCRIPT.sub("", page))
    for url, inert in _LAZY_CDN.items():
        page = page.replace(url, inert)
    left = [m.group(0) for m in RESOURCE_URL.finditer(page)]
    if left:
        raise RuntimeError(f"expected no network resource URLs in the export but found {left[:5]}")
    return page


def render_html(source: PlaygroundState | dict[str, Any] | None = None,
                pooled: bool | None = False) -> str:
    """The standalone HTML page as a string (all resources inline, no network address);
    ``pooled``: see :func:`build_document`."""
    title = "Attention Playground" + (" (pooled)" if pooled or (
        pooled is None and not fits_full_export(source)) else "")
    return offline(file_html(build_document(source, pooled), resources=INLINE, title=title))


def export_html(source: PlaygroundState | dict[str, Any] | None, file: IO | str,
                pooled: bool | None = False) -> int:
    """Write the standalone page to ``file`` (a path, or a text/binary file object).

    Args:
        source: an ``AttentionPlayground`` (any ``PlaygroundState``) (its current parameters) or a dict of parameters
            among ``EXPORT_PARAMS``; ``None`` for the defaults.
        file: where to write; nothing touches the disk unless this is a path.
        pooled: ``False`` (default): the full interactive export, ``ValueError`` above
            ``MAX_EXPORT_CELLS``; ``True``: the pooled snapshot; ``None``: whichever fits.

    Returns:
        the number of bytes written (UTF-8).
    """
    data = render_html(source, pooled).encode("utf-8")
    if isinstance(file, str):
        with open(file, "wb") as fh:
            fh.write(data)
    elif isinstance(file, io.TextIOBase):
        file.write(data.decode("utf-8"))
    else:
        file.write(data)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboard.export", description=(
        "Write the Attention Playground as one standalone HTML file (no network needed; the "
        "causal checkbox, prefix L and selected query stay interactive)."))
    ap.add_argument("out", help="output .html path")
    d = PlaygroundState.param
    ap.add_argument("--seq-len", type=int, default=d.seq_len.default, help="sequence length T")
    ap.add_argument("--num-heads", type=int, default=d.num_heads.default, help="heads H")
    ap.add_argument("--head-dim", type=int, default=d.head_dim.default, help="head dimension D")
    ap.add_argument("--seed", type=int, default=d.seed.default, help="random seed")
    ap.add_argument("--text", default="", help="a sentence: its words become the tokens")
    ap.add_argument("--prefix", type=int, default=None, help="initial prefix L")
    ap.add_argument("--query", type=int, default=None, help="initial selected query")
    ap.add_argument("--no-causal", action="store_true", help="start with the causal mask off")
    ap.add_argument("--pooled", action="store_true", help=(
        "above the full export's limit (T*T*H > 2**20) write a pooled snapshot instead (max-pooled "
        "head maps, fixed controls)"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)      # small matmuls: one thread is far faster than two contending
    params: dict[str, Any] = dict(seq_len=args.seq_len, num_heads=args.num_heads,
                                  head_dim=args.head_dim, seed=args.seed, text=args.text,
                                  causal=not args.no_causal)
    T = min(len(words_of(args.text)), MAX_SEQ_LEN) if words_of(args.text) else args.seq_len
    params["prefix"] = args.prefix if args.prefix is not None else min(d.prefix.default, T - 1)
    params["query"] = args.query if args.query is not None else min(d.query.default, T - 1)
    try:
        pooled = args.pooled and not fits_full_export(params)
        n = export_html(params, args.out, pooled=pooled)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({n / 1e6:.2f} MB{', pooled' if pooled else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
