"""The live Panel view of an ``AttentionPlayground``: controls, linked plots and explanations.

``PlaygroundView(pg).layout`` is what ``pn.panel(pg)`` shows (bare, for notebooks) and what the
served app puts in its first tab. Every figure is drawn once from a ``plots.py`` element and then
updated in place (``dashboard.live.LivePlot``): a parameter change sends new data to existing
figures, never a new layout. Only what depends on the change is touched:

- new weights (T, H, D, causal, seed, text, position signal): head maps, query plot,
  step-by-step view, mask (only if T or causal changed), invariance;
- only the prefix L changed: invariance chart and numbers;
- only the selected query / viewed head changed: the query line on the head maps, the query plot
  and the step-by-step view (no attention is recomputed: ``pg.n_computes`` stays).

The per-head grid (one figure per head) changes only when H changes: the figures of heads >= H
are hidden (and reused if H grows again), new heads get new figures, the others stay.
"""
from __future__ import annotations

import threading

import panel as pn
from bokeh.events import Tap

from . import plots
from .live import LivePlot, hold_documents, render
from .playground import AttentionPlayground, PlaygroundResult, single_token_steps

__all__ = ["PlaygroundView", "CSS", "TEXT"]

CSS = """
:host { --ap-muted: #475569; }
.ap-verdict { display: flex; align-items: center; gap: 10px; font-family: system-ui, sans-serif; }
.ap-badge { font-weight: 800; font-size: 20px; letter-spacing: .06em; padding: 4px 14px;
            border-radius: 6px; color: white; }
.ap-pass { background: #16a34a; }
.ap-fail { background: #dc2626; }
.ap-verdict-why { color: var(--ap-muted); font-size: 13px; }
table.ap-stats { border-collapse: collapse; font-size: 13px; font-family: system-ui, sans-serif; }
table.ap-stats td { padding: 3px 8px; border-bottom: 1px solid #e2e8f0; }
td.ap-num { font-family: ui-monospace, monospace; font-weight: 600; text-align: right; }
td.ap-want { color: var(--ap-muted); }
.ap-note { color: #b45309; font-size: 12px; margin-top: 4px; }
"""

TEXT = {
    "intro": """
**What you are looking at:** an untrained multi-head self-attention layer (this project's PyTorch library, weights drawn from
the seed) applied to a sequence of tokens. Change the controls on the left and every view below
is recomputed and redrawn in place. Hover a map for exact numbers; click a row to select a query.
""",
    "heads": """
### Attention heads
One map per head. **Row i** is query i, **column j** is key j, and the colour is the share of
query i's attention that goes to key j, so every row adds up to 1. Each head has its own
projection weights and spreads its attention in its own way. With the causal mask on, the
upper-right triangle is black: no query reads a later token. The dashed line marks the selected
query; click any row to select another.
""",
    "query": """
### One query across heads
The selected query's row from every head, stacked: where each head sends that token's
attention. Click a row here to show that head step by step below.
""",
    "single": """
### Step by step: one query in one head
How one row of a map comes about. (1) The query vector is compared with every key by a dot
product, (2) the scores are divided by √D so their spread does not grow with the head size,
(3) the keep-mask removes blocked keys (grey bars), (4) a softmax turns the kept scores into
weights that sum to 1, and (5) the output is the weight-averaged value vectors.
""",
    "causal": """
### Causal mask and the invariance test
A model that generates text one token at a time must not use tokens it has not produced yet.
The **keep-mask** lets query i read keys 0..i only. The proof is an experiment: keep tokens
**0..L**, replace every token after **L** with random values and run the layer again. If the
mask works, the outputs at positions 0..L do not move at all (green bars stay at 0) while later
positions do (orange). Turn the causal mask off and the test fails: earlier outputs now depend
on later tokens, and every position 0..L that moved is drawn red.
""",
    "caveat": """
**A caution.** Attention weights say where each position *reads from*, not *why* a model does
what it does: the values that are read, the other layers and the output projection matter as
much. Read the maps as a view of one mechanism, not as an explanation of a model's behaviour.
""",
}

WIDGETS = {
    "text": {"type": pn.widgets.TextInput, "placeholder": "optional: type a sentence, press Enter",
             "css_classes": ["ap-text"]},
    "seq_len": {"type": pn.widgets.EditableIntSlider, "throttled": True, "css_classes": ["ap-seq-len"]},
    "num_heads": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-num-heads"]},
    "head_dim": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-head-dim"]},
    "causal": {"type": pn.widgets.Checkbox, "css_classes": ["ap-causal"]},
    "prefix": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-prefix"]},
    "query": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-query"]},
    "view_head": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-view-head"]},
    "seed": {"type": pn.widgets.IntInput, "css_classes": ["ap-seed"]},
    "position_scale": {"type": pn.widgets.FloatSlider, "throttled": True,
                       "css_classes": ["ap-position-scale"]},
}


LOADING_MIN_WORK = 2**18      # T*T*H from which a recompute shows loading spinners (T=256, H=4)


def _md(key: str, **kw) -> pn.pane.Markdown:
    return pn.pane.Markdown(TEXT[key].strip(), css_classes=[f"ap-text-{key}"], **kw)


def _Wrap(*objects, **kw) -> pn.Row:
    """A row that wraps onto new lines (``pn.FlexBox`` left figures blank inside ``pn.Tabs``)."""
    styles = {"flex-wrap": "wrap", **kw.pop("styles", {})}
    return pn.Row(*objects, styles=styles, **kw)


def _widget(pg: AttentionPlayground, name: str, spec: dict) -> pn.widgets.Widget:
    """The widget for parameter ``name``, linked both ways (label, bounds, disabled follow it)."""
    spec = dict(spec)
    kind = spec.pop("type")
    # sliders leave room for the tooltip icon beside them; inputs (own tooltip) fill the sidebar
    spec.setdefault("width", 225 if "description" not in kind.param else 250)
    return kind.from_param(pg.param[name], **spec)


def _with_tooltip(widget: pn.widgets.Widget, doc: str | None):
    """Widgets without a ``description`` (sliders, checkbox) get a tooltip icon with the doc."""
    if "description" in widget.param or not doc:
        return widget
    text = " ".join(doc.split())
    return pn.Row(widget, pn.widgets.TooltipIcon(value=text, margin=(12, 0, 0, -8), width=20),
                  margin=0)


def _set_head_class(live: LivePlot, cls: str) -> None:
    """Mark a head figure shown (``ap-head-heatmap``) or hidden (``ap-head-hidden``)."""
    classes = [c for c in live.figure.css_classes if c not in ("ap-head-heatmap", "ap-head-hidden")]
    if cls not in live.figure.css_classes:
        live.figure.css_classes = [cls, *classes]


def _figure_pane(live: LivePlot, *classes: str) -> pn.pane.Bokeh:
    """A pane for a live figure; the classes go on the figure itself (the element in the DOM).

    ``flex: none`` keeps fixed-size figures from being squeezed to nothing by flex layouts
    (seen inside ``pn.Tabs``). It must be on the figure too: the figure is the flex item, and
    stretched by a row its frame outgrows its canvas and the plot is cut off.
    """
    live.figure.css_classes = [*live.figure.css_classes, *classes]
    live.figure.styles = {**live.figure.styles, "flex": "none"}
    return pn.pane.Bokeh(live.figure, margin=(0, 4), styles={"flex": "none"})


def _clamp(value: float | None, n: int) -> int | None:
    """Nearest index in ``0..n-1`` of a tap coordinate (``None`` outside any figure)."""
    if value is None:
        return None
    return int(min(max(round(value), 0), n - 1))


class PlaygroundView:
    """Widgets and live figures for one ``AttentionPlayground`` (one per browser session).

    Attributes:
        layout: the Panel component to show.
        head_plots: one ``LivePlot`` per head; ``query_plot``, ``single_plots`` (five),
            ``mask_plot``, ``invariance_plot``: the other figures.
    """

    def __init__(self, pg: AttentionPlayground):
        self.pg = pg
        r = pg.result
        self._last: PlaygroundResult = r
        self._head_frames: dict[int, plots.Frame] = {}
        self._mask_key = None
        self._lock = threading.RLock()

        self.widgets = {name: _widget(pg, name, spec) for name, spec in WIDGETS.items()}
        self.controls = pn.Column(*[_with_tooltip(w, pg.param[name].doc)
                                    for name, w in self.widgets.items()],
                                  width=260, css_classes=["ap-controls"])
        self.download = pn.widgets.FileDownload(
            callback=self._download_html, filename="attention-playground.html",
            label="Download as HTML", color="primary", embed=False,
            css_classes=["ap-download"], sizing_mode="stretch_width",
        )

        colorbar = render(plots.colorbar_strip()).state
        colorbar.css_classes = ["ap-colorbar"]
        colorbar.styles = {**colorbar.styles, "flex": "none"}
        self.colorbar = pn.pane.Bokeh(colorbar, margin=(0, 4), styles={"flex": "none"})
        self.heads_box = _Wrap(self.colorbar, css_classes=["ap-heads"], sizing_mode="stretch_width")
        self.head_plots: list[LivePlot] = []
        self._head_panes: list[tuple[LivePlot, pn.pane.Bokeh]] = []
        self._sync_grid(r)

        self.query_plot = LivePlot(self._query_frame(r))
        self.query_plot.figure.on_event(Tap, self._on_tap_head)
        self.query_pane = _figure_pane(self.query_plot, "ap-query-plot")

        self.single_plots = [LivePlot(f) for f in self._single_frames(r)]
        self.single_pane = _Wrap(*[_figure_pane(p, f"ap-step-{i + 1}")
                                        for i, p in enumerate(self.single_plots)],
                                      css_classes=["ap-single-token"], sizing_mode="stretch_width")

        self.mask_plot = LivePlot(plots.mask_frame(r))
        self._mask_key = (r.seq_len, r.causal, r.tokens)
        self.mask_pane = _figure_pane(self.mask_plot, "ap-mask")
        self.invariance_plot = LivePlot(plots.invariance_frame(r))
        self.inv_pane = _figure_pane(self.invariance_plot, "ap-invariance-chart")
        self.verdict = pn.pane.HTML(plots.verdict_html(r), css_classes=["ap-verdict-pane"],
                                    stylesheets=[CSS])
        self.stats = pn.pane.HTML(plots.invariance_summary_html(r), css_classes=["ap-stats-pane"],
                                  stylesheets=[CSS])

        self.layout = self._assemble()
        pg.param.watch(self._on_change, ["result", "query", "view_head"])
        pg.param.watch(self._on_busy, "busy")

    # -- frames ------------------------------------------------------------------------------
    def _head_frame(self, r: PlaygroundResult, head: int, query: int) -> plots.Frame:
        frame = self._head_frames.get(head)
        if frame is None:                         # cached per result: a query change resends no image
            frame = self._head_frames[head] = plots.head_frame(r, head)
        return plots.with_marker(frame, min(query, r.seq_len - 1))

    def _query_frame(self, r: PlaygroundResult) -> plots.Frame:
        return plots.query_frame(r, min(self.pg.query, r.seq_len - 1))

    def _single_frames(self, r: PlaygroundResult) -> list[plots.Frame]:
        steps = single_token_steps(r, min(self.pg.view_head, r.num_heads - 1),
                                   min(self.pg.query, r.seq_len - 1))
        return plots.single_token_frames(steps, r.tokens)

    # -- updates -------------------------------------------------------------------------------
    def _sync_grid(self, r: PlaygroundResult) -> None:
        """Show one figure per head: hide the figures of heads >= H, show or add figures for new ones.

        A hidden figure stays in the page (figure ``visible=False``, its class ``ap-head-heatmap``
        swapped for ``ap-head-hidden``) and is shown again with new data when H grows: adding a
        figure to a live page costs 100-300 ms (a new Bokeh model graph), toggling one a few ms.
        """
        H, n = r.num_heads, len(self.head_plots)
        for h in range(H, n):                                    # fewer heads: hide the rest
            live, pane = self._head_panes[h]
            _set_head_class(live, "ap-head-hidden")
            live.figure.visible = False      # on the figure: pn.pane.Bokeh(visible=...) breaks here
        new = []
        for h in range(n, H):                                    # more heads: reuse, then draw
            frame = self._head_frame(r, h, self.pg.query)
            if h < len(self._head_panes):
                live, pane = self._head_panes[h]
                live.update(frame)
                _set_head_class(live, "ap-head-heatmap")
                live.figure.visible = True
            else:
                live = LivePlot(frame)
                live.figure.on_event(Tap, self._on_tap_query)
                pane = _figure_pane(live, "ap-head-heatmap", f"ap-head-{h}")
                self._head_panes.append((live, pane))
                new.append(pane)
        self.head_plots = [live for live, _ in self._head_panes[:H]]
        if new:
            self.heads_box.extend(new)

    def _on_change(self, *events) -> None:
        """Send what changed to the figures, inside one ``hold`` per document (one patch)."""
        with self._lock, hold_documents(self.query_pane, self.verdict):
            self._update(self.pg.result, {e.name for e in events})

    def _update(self, r: PlaygroundResult, changed: set[str]) -> None:
        last, self._last = self._last, r
        q = self.pg.query
        new_weights = r.weights is not last.weights
        if new_weights:
            self._head_frames.clear()
            self._sync_grid(r)
        if new_weights or "query" in changed:
            for h, live in enumerate(self.head_plots):
                live.update(self._head_frame(r, h, q))
            self.query_plot.update(self._query_frame(r))
        if new_weights or changed & {"query", "view_head"}:
            for live, frame in zip(self.single_plots, self._single_frames(r)):
                live.update(frame)
        if new_weights and (r.seq_len, r.causal, r.tokens) != self._mask_key:
            self._mask_key = (r.seq_len, r.causal, r.tokens)
            self.mask_plot.update(plots.mask_frame(r))
        if r is not last:
            self.invariance_plot.update(plots.invariance_frame(r))
            self.verdict.object = plots.verdict_html(r)
            self.stats.object = plots.invariance_summary_html(r)

    def _on_busy(self, event) -> None:
        """Loading spinners, only for work that takes longer than a blink (about T*T*H >= 2**18)."""
        pg = self.pg
        if event.new and pg.seq_len**2 * pg.num_heads < LOADING_MIN_WORK:
            return
        # on layouts only: loading= on a pn.pane.Bokeh re-syncs the figure's stylesheets and fails
        for layout in (self.heads_box, self.query_row, self.single_pane, self.analysis):
            layout.loading = event.new

    def _on_tap_query(self, event) -> None:
        q = _clamp(event.y, self.pg.seq_len)
        if q is not None:
            self.pg.query = q

    def _on_tap_head(self, event) -> None:
        h = _clamp(event.y, self.pg.num_heads)
        if h is not None:
            self.pg.view_head = h

    def _download_html(self):
        from io import BytesIO

        from .export import export_html
        buf = BytesIO()
        export_html(self.pg, buf)
        buf.seek(0)
        return buf

    # -- layout --------------------------------------------------------------------------------
    def _assemble(self) -> pn.viewable.Viewable:
        sidebar = pn.Column(
            pn.pane.Markdown("#### Controls", margin=(0, 10)),
            self.controls, self.download,
            pn.pane.Markdown(TEXT["caveat"].strip(), css_classes=["ap-caveat"],
                             styles={"background": "#fff7ed", "border-left": "3px solid #f97316",
                                     "padding": "0 8px", "font-size": "12px"}),
            width=275, css_classes=["ap-sidebar"],
        )
        section = dict(sizing_mode="stretch_width", styles={"border-top": "1px solid #e2e8f0"})
        heads = pn.Column(_md("heads", max_width=900), self.heads_box, **section)
        self.query_row = query = pn.Row(self.query_pane, _md("query", width=330), **section)
        single = pn.Column(_md("single", max_width=900), self.single_pane, **section)
        self.analysis = _Wrap(
            self.mask_pane, pn.Column(self.verdict, self.stats, width=310), self.inv_pane,
            sizing_mode="stretch_width", css_classes=["ap-invariance"],
        )
        causal = pn.Column(_md("causal", max_width=900), self.analysis, **section)
        main = pn.Column(_md("intro"), heads, query, single, causal, sizing_mode="stretch_width",
                         css_classes=["ap-main"])
        return pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["ap-playground"],
                      name="Playground")
