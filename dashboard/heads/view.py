"""The "Trained heads" tab's live view: ``TrainedHeads`` (state + display) and ``TrainedHeadsView``.

``TrainedHeadsView`` (built by ``pn.panel(th)``, one per browser session or notebook output)
draws a layers x heads overview of small maps (click one to open it in the main map), the main
map with token ids on its axes (click a row to read that query), the head-metrics table and the
explanations. Every figure is drawn once and updated in place through the view's update pipeline
(``common.live.LiveView``).

CSS-class hooks for browser tests:

========================  ======================================================================
``.ap-trained-heads``     the whole tab (``pn.Row``: sidebar + main column)
``.ap-th-model``          model selector (``RadioButtonGroup``: trained / random)
``.ap-th-random-seed``    seed of the random weights (``IntInput``; shown for the random model)
``.ap-th-input``          input selector (``RadioButtonGroup``: preset / custom)
``.ap-th-seed``           seed of the preset tokens (``IntInput``; shown for the preset)
``.ap-th-tokens``         custom token ids (``TextInput``, commits on Enter; shown for custom)
``.ap-th-message``        input message pane; holds ``.ap-th-error`` when the input is invalid
``.ap-th-layer``          layer selector, ``.ap-th-head`` head selector (``RadioButtonGroup``)
``.ap-th-overview``       the grid: ``.ap-th-cell`` figures, also ``.ap-th-cell-<layer>-<head>``;
                          the selected one also has ``.ap-th-selected``
``.ap-th-main``           the main map (title "Layer l · head h ...")
``.ap-th-reading``        what the selected query reads (``[data-query]``, ``[data-top-key]``)
``.ap-th-metrics``        the metrics table (rows ``tr[data-layer][data-head]``, badges
                          ``.ap-th-badge[data-role]``, ``.ap-th-best`` for the flagged heads)
``.ap-th-summary``        the model's next-token predictions on the input
``.ap-th-caveat``         the "weights are not explanations" note
``.ap-state``             the state id every figure shows (see ``common.live``)
========================  ======================================================================
"""
from __future__ import annotations

import panel as pn

from ..common.frames import with_marker
from ..common.lazy import BuiltWhenShown
from ..common.figures import LivePlot
from ..common.live import LiveView
from ..common.panes import caveat, clamp_index, figure_pane, markdown, widgets_from_spec
from ..common.style import SECTION_STYLES
from . import plots
from .state import RANDOM_STD, HeadsState
from .text import CSS, TEXT

__all__ = ["TrainedHeads", "TrainedHeadsView", "WIDGETS"]

_BUTTONS = dict(type=pn.widgets.RadioButtonGroup, color="primary", variant="outline")
WIDGETS = {
    "model": {**_BUTTONS, "css_classes": ["ap-th-model"], "orientation": "vertical"},
    "random_seed": {"type": pn.widgets.IntInput, "css_classes": ["ap-th-random-seed"]},
    "input_kind": {**_BUTTONS, "css_classes": ["ap-th-input"], "orientation": "vertical"},
    "seed": {"type": pn.widgets.IntInput, "css_classes": ["ap-th-seed"]},
    "custom_tokens": {"type": pn.widgets.TextInput, "css_classes": ["ap-th-tokens"],
                      "placeholder": "e.g. 5 9 2 7 5 9 2, then Enter"},
    "layer": {**_BUTTONS, "css_classes": ["ap-th-layer"]},
    "head": {**_BUTTONS, "css_classes": ["ap-th-head"]},
}
"""The sidebar's widgets: ``{parameter: {"type": Widget, **options}}`` (``widgets_from_spec``)."""

_OUTLINE = {True: dict(outline_line_color="#0891b2", outline_line_width=4, outline_line_alpha=1.0),
            False: dict(outline_line_color="#e5e5e5", outline_line_width=1, outline_line_alpha=1.0)}


def _md(key: str, **fmt) -> pn.pane.Markdown:
    return markdown(TEXT[key].format(**fmt), f"ap-th-text-{key}", max_width=900,
                    sizing_mode="stretch_width")


def state_id(th: HeadsState) -> str:
    """What the figures show: model, input and selection."""
    r = th.result
    seed = "-" if r.random_seed is None else r.random_seed
    return (f"model={r.model} weights_seed={seed} tokens={','.join(map(str, r.tokens))} "
            f"layer={th.layer} head={th.head} q={min(th.query, r.seq_len - 1)}")


class TrainedHeadsView(LiveView):
    """Widgets and live figures for one ``TrainedHeads`` (one per browser session or output).

    Attributes:
        layout: the Panel component to show.
        cells: ``{(layer, head): LivePlot}`` of the overview; ``main_plot``: the main map.
    """

    def __init__(self, th: HeadsState):
        super().__init__(th)
        self.th = th
        self.widgets = widgets_from_spec(th, WIDGETS)
        r = th.result
        self.cells: dict[tuple[int, int], LivePlot] = {}
        for l in range(r.num_layers):
            for h in range(r.num_heads):
                live = LivePlot(self._cell_frame(l, h))
                live.figure.on_event("tap", lambda event, l=l, h=h: self._on_tap_cell(l, h))
                self.cells[l, h] = live
        self.main_plot = LivePlot(self._main_frame())
        self.main_plot.figure.on_event("tap", self._on_tap_main)
        self.reading = pn.pane.HTML(plots.reading_html(th), css_classes=["ap-th-reading"],
                                    stylesheets=[CSS], width=330)
        self.table = pn.pane.HTML(self._table_html(), css_classes=["ap-th-metrics"], stylesheets=[CSS])
        self.summary = pn.pane.HTML(plots.summary_html(th), css_classes=["ap-th-summary"],
                                    stylesheets=[CSS], sizing_mode="stretch_width")
        self.message = pn.pane.HTML(plots.message_html(th), css_classes=["ap-th-message"],
                                    stylesheets=[CSS], sizing_mode="stretch_width")
        self.random_note = _md("random", std=RANDOM_STD)
        self._shown = (r, th.metrics, th.layer, th.head, th.query, th.input_error, th.model,
                       th.input_kind)
        self._show_selection()
        self._show_widgets()
        self.layout = self._assemble()
        self.start(["result", "metrics", "layer", "head", "query", "input_error", "model", "input_kind"])

    # -- the pipeline's parts ----------------------------------------------------------------------
    def state_id(self) -> str:
        return state_id(self.th)

    def figures(self) -> list:
        return [live.figure for live in self.cells.values()] + [self.main_plot.figure]

    def show(self, changed: set[str]) -> str:
        th = self.th
        now = (th.result, th.metrics, th.layer, th.head, th.query, th.input_error, th.model,
               th.input_kind)
        sid = state_id(th)
        r0, m0, l0, h0, q0, e0, model0, kind0 = self._shown
        r, m, l, h, q, e, model, kind = now
        new_data = r is not r0 or m is not m0
        if new_data:
            for (cl, ch), live in self.cells.items():
                live.update(self._cell_frame(cl, ch))
            self.summary.object = plots.summary_html(th)
        if new_data or (l, h, q) != (l0, h0, q0):
            self.main_plot.update(self._main_frame())
            self.reading.object = plots.reading_html(th)
        if m is not m0 or (l, h) != (l0, h0):
            self.table.object = self._table_html()
            self._show_selection()
        if (e, kind) != (e0, kind0) or r is not r0:
            self.message.object = plots.message_html(th)
        if (model, kind) != (model0, kind0):
            self._show_widgets()
        self._shown = now
        return sid

    # -- frames ------------------------------------------------------------------------------------
    def _cell_frame(self, l: int, h: int):
        m = self.th.head_metrics_of(l, h)
        return plots.cell_frame(self.th.result.weights[l, h], l, h, plots.head_role(m))

    def _main_frame(self):
        th = self.th
        frame = plots.main_frame(th.selected_weights(), th.result.tokens, th.layer, th.head,
                                 th.head_metrics_of(th.layer, th.head))
        return with_marker(frame, min(th.query, th.result.seq_len - 1))

    def _table_html(self) -> str:
        return plots.metrics_table_html(self.th.metrics, selected=(self.th.layer, self.th.head))

    def _show_selection(self) -> None:
        """Outline the selected overview map (and give it the class ``ap-th-selected``)."""
        chosen = (self.th.layer, self.th.head)
        for key, live in self.cells.items():
            fig, on = live.figure, key == chosen
            fig.update(**{k: v for k, v in _OUTLINE[on].items() if getattr(fig, k) != v})
            classes = [c for c in fig.css_classes if c != "ap-th-selected"] + (["ap-th-selected"] if on else [])
            if classes != list(fig.css_classes):
                fig.css_classes = classes

    def _show_widgets(self) -> None:
        th, w = self.th, self.widgets
        w["random_seed"].visible = th.model == "random"
        w["seed"].visible = th.input_kind == "preset"
        w["custom_tokens"].visible = th.input_kind == "custom"
        self.random_note.visible = th.model == "random"

    # -- events ------------------------------------------------------------------------------------
    def _on_tap_cell(self, layer: int, head: int) -> None:
        self.th.param.update(layer=layer, head=head)

    def _on_tap_main(self, event) -> None:
        q = clamp_index(event.y, self.th.result.seq_len)
        if q is not None:
            self.th.query = q

    # -- layout ------------------------------------------------------------------------------------
    def _assemble(self) -> pn.viewable.Viewable:
        w = self.widgets
        label = lambda text: pn.pane.Markdown(f"**{text}**", margin=(8, 10, -6, 10))  # noqa: E731
        sidebar = pn.Column(
            pn.pane.Markdown("#### Controls", margin=(0, 10)),
            label("Model"), w["model"], w["random_seed"],
            label("Input"), w["input_kind"], w["seed"], w["custom_tokens"], self.message,
            label("Main map"), pn.Row(pn.pane.Markdown("layer", width=45, margin=(12, 0, 0, 10)), w["layer"]),
            pn.Row(pn.pane.Markdown("head", width=45, margin=(12, 0, 0, 10)), w["head"]),
            caveat(TEXT["caveat"], "ap-th-caveat"), self.state_pane,
            width=310, css_classes=["ap-th-sidebar"],
        )
        section = dict(sizing_mode="stretch_width", styles=dict(SECTION_STYLES))
        r = self.th.result
        rows = []
        for l in range(r.num_layers):
            name = pn.pane.HTML(f"<div class='ap-th-ok' style='writing-mode:vertical-rl;"
                                f"transform:rotate(180deg);font-weight:600'>layer {l}</div>",
                                width=24, stylesheets=[CSS], margin=(40, 0, 0, 0))
            rows.append(pn.Row(name, *[figure_pane(self.cells[l, h].figure, "ap-th-cell",
                                                   f"ap-th-cell-{l}-{h}")
                                       for h in range(r.num_heads)], margin=0))
        overview_grid = pn.Column(*rows, css_classes=["ap-th-overview"], margin=0)
        period = self.th.max_len // 2
        overview = pn.Column(_md("overview"), self.random_note, self.summary,
                             pn.Row(overview_grid, pn.Column(_md("kinds", offset=period - 1), width=420),
                                    styles={"flex-wrap": "wrap"}, sizing_mode="stretch_width"),
                             **section)
        main = pn.Column(_md("main"), pn.Row(figure_pane(self.main_plot.figure, "ap-th-main"),
                                             self.reading, styles={"flex-wrap": "wrap"},
                                             sizing_mode="stretch_width"), **section)
        metrics = pn.Column(_md("metrics"), self.table, **section)
        body = pn.Column(_md("intro"), overview, main, metrics, sizing_mode="stretch_width",
                         css_classes=["ap-th-body"])
        return pn.Row(sidebar, body, sizing_mode="stretch_width", css_classes=["ap-trained-heads"],
                      name="Trained heads")


class TrainedHeads(HeadsState, pn.viewable.Viewer):
    """``HeadsState`` that displays itself (``pn.panel(th)``, or ``th`` in a notebook)."""

    def __panel__(self) -> pn.viewable.Viewable:
        """A new live view each time (Bokeh figures belong to one document / output cell), built
        when first shown."""
        return BuiltWhenShown(lambda: TrainedHeadsView(self).layout, name="Trained heads")
