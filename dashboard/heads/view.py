"""The "Model heads" tab's live view: ``ModelHeads`` (state + display) and ``ModelHeadsView``.

``ModelHeadsView`` (built by ``pn.panel(mh)``, one per browser session or notebook output) draws
the layers x heads overview as **one** figure (every head's map side by side; click one to open
it in the main map), the main map with positions and tokens on its axes (click a row to read that
query), the per-query sentence, the head-metrics table with role badges and the explanations.
Every figure is drawn once and updated in place through the view's update pipeline
(``common.live.LiveView``); a model with another number of layers or heads only changes the
overview's data, ranges and size. Loading a Hugging Face model (MiniLM: transformers' import and
the weights, once per process) shows the floating "Computing…" badge (``LiveView.busy_pane``; not
Panel's ``loading``, whose class swap lays the whole page out again) and says so in the message
pane. Served, the view starts loading MiniLM in a background thread as soon as the tab is first
shown (``HeadsState.start_preload``), so that picking it a few seconds later is immediate.

CSS-class hooks for browser tests:

========================  ======================================================================
``.ap-model-heads``       the whole tab (``pn.Row``: sidebar + main column); also
                          ``.ap-trained-heads`` (the tab's former name)
``.ap-th-model``          model picker (``RadioButtonGroup``: trained / random / all-MiniLM-L6-v2
                          / one button per ``--hf PATH`` the server was started with)
``.ap-th-random-seed``    seed of the random weights (``IntInput``; shown for the random model)
``.ap-th-input``          input selector (``RadioButtonGroup``: preset / custom; tiny models)
``.ap-th-seed``           seed of the preset tokens (``IntInput``; shown for the preset)
``.ap-th-tokens``         custom token ids (``TextInput``, commits on Enter; shown for custom)
``.ap-th-text``           your text (``TextInput``, commits on Enter; shown for Hugging Face models)
``.ap-th-message``        message pane; holds ``.ap-th-error`` (``data-error="model"``: the model
                          cannot be loaded, e.g. MiniLM not installed, with the pip command;
                          ``data-error="input"``: the input was rejected) and ``.ap-th-loading``
                          while a Hugging Face model loads (its first pick in the process)
``.ap-th-layer``          layer selector, ``.ap-th-head`` head selector (``RadioButtonGroup``)
``.ap-th-aggregate``      "Mean over the layer's heads" (``Checkbox``)
``.ap-th-overview``       the overview figure: title "L layers × H heads = N maps", heads ``H0 ..``
                          on the x axis, layers ``L0 ..`` on the y axis; the selected map is
                          outlined. A click on a map opens it in the main map
``.ap-th-main``           the main map (title "Layer l · head h ..." or "Layer l · mean of its
                          H heads"; a long text's adds "· max-pooled f×f" and, zoomed, "· zoom:
                          exact weights" / "· zoom: max of g×g"); tick labels ``position:token``;
                          box / wheel zoom, and the tooltip's "weight (exact)" when pooled
``.ap-th-reading``        what the selected query reads (``[data-query]``, ``[data-top-key]``,
                          ``[data-relation]``)
``.ap-th-metrics``        the metrics table (rows ``tr[data-layer][data-head]``, the selected row
                          ``tr.ap-th-selected``, badges ``.ap-th-badge[data-role]``,
                          ``.ap-th-best`` for the flagged heads)
``.ap-th-summary``        the model's next-token predictions on the input, or what the model is
``.ap-th-caveat``         the "weights are not explanations" note
``.ap-state``             the state id every figure shows (see ``common.live``)
========================  ======================================================================
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import panel as pn
from bokeh.events import MouseMove, RangesUpdate
from bokeh.models import ColumnDataSource

from ..common.figures import LivePlot, exact_hover, zoom_tools
from ..common.frames import with_marker
from ..common.lazy import BuiltWhenShown
from ..common.live import LiveHTML, LiveView
from ..common.panes import TEXT_MAX_CHARS, caveat, clamp_index, figure_pane, markdown, widgets_from_spec
from ..common.style import SECTION_STYLES
from . import plots
from .state import MINILM, RANDOM_STD, HeadsState, cell_px, is_hf
from .text import CSS, TEXT

__all__ = ["ModelHeads", "ModelHeadsView", "TrainedHeads", "TrainedHeadsView", "WIDGETS", "cell_px"]

_BUTTONS = dict(type=pn.widgets.RadioButtonGroup, color="primary", variant="outline")
WRAP_BUTTONS = """
.bk-btn-group { flex-wrap: wrap; }
.bk-btn-group > .bk-btn { flex: 1 0 34px; min-width: 34px; }
"""
"""12 head buttons do not fit the sidebar in one row: let them wrap (MiniLM)."""
WIDGETS = {
    "model": {**_BUTTONS, "css_classes": ["ap-th-model"], "orientation": "vertical"},
    "random_seed": {"type": pn.widgets.IntInput, "css_classes": ["ap-th-random-seed"]},
    "input_kind": {**_BUTTONS, "css_classes": ["ap-th-input"], "orientation": "vertical"},
    "seed": {"type": pn.widgets.IntInput, "css_classes": ["ap-th-seed"]},
    "custom_tokens": {"type": pn.widgets.TextInput, "css_classes": ["ap-th-tokens"],
                      "placeholder": "e.g. 5 9 2 7 5 9 2, then Enter"},
    "text": {"type": pn.widgets.TextInput, "css_classes": ["ap-th-text"],
             "placeholder": "a sentence, then Enter", "max_length": TEXT_MAX_CHARS},
    "layer": {**_BUTTONS, "css_classes": ["ap-th-layer"], "sizing_mode": "stretch_width",
              "stylesheets": [WRAP_BUTTONS]},
    "head": {**_BUTTONS, "css_classes": ["ap-th-head"], "sizing_mode": "stretch_width",
             "stylesheets": [WRAP_BUTTONS]},
    "aggregate": {"type": pn.widgets.Checkbox, "css_classes": ["ap-th-aggregate"]},
}
"""The sidebar's widgets: ``{parameter: {"type": Widget, **options}}`` (``widgets_from_spec``)."""

NOTES = {"trained": "", "random": "random", MINILM: "minilm"}
"""Which ``TEXT`` note goes with a model key (served models: ``"served"``)."""


def _md(key: str, **fmt) -> pn.pane.Markdown:
    return markdown(TEXT[key].format(**fmt), f"ap-th-text-{key}", max_width=900,
                    sizing_mode="stretch_width")


STATE_ID_TOKENS = 256
"""Up to this many tokens the state id lists them; a longer text is named by its length and a digest."""


def state_id(th: HeadsState) -> str:
    """What the figures show: model, input and selection."""
    r = th.result
    seed = "-" if r.random_seed is None else r.random_seed
    head = "mean" if th.aggregate else min(th.head, r.num_heads - 1)
    tokens = ','.join(map(str, r.tokens)) if r.seq_len <= STATE_ID_TOKENS else \
        f"{r.seq_len}:" + hashlib.sha256(repr(r.tokens).encode()).hexdigest()[:12]
    return (f"model={r.model} weights_seed={seed} tokens={tokens} "
            f"layer={min(th.layer, r.num_layers - 1)} head={head} q={min(th.query, r.seq_len - 1)}")


class _Zoom:
    """The pseudo-event a zoom of the main map sends down the update pipeline (``show`` sees
    ``"zoom"``)."""

    name = "zoom"


class ModelHeadsView(LiveView):
    """Widgets and live figures for one ``ModelHeads`` (one per browser session or output).

    Attributes:
        layout: the Panel component to show.
        overview: the overview ``LivePlot`` (every head in one figure; ``mosaic`` says where each
            head lies); ``main_plot``: the main map.
    """

    _WATCH = ["result", "metrics", "layer", "head", "query", "aggregate", "input_error", "input_note",
              "model_error", "model", "input_kind", "loading"]

    def __init__(self, th: HeadsState):
        super().__init__(th)
        self.th = th
        self.widgets = widgets_from_spec(th, WIDGETS)
        self._image_for = None                      # the result the overview image was made from
        self.overview = LivePlot(self._overview_frame())
        self.overview.figure.on_event("tap", self._on_tap_overview)
        # zoom sharpens a pooled main map: the visible window is recomputed finer (``_refined``);
        # hover names the exact weight of the cell under the cursor, computed here (``_on_hover``)
        self._zoom: tuple[float, float, float, float] | None = None
        self._refined_key, self._refined_maps = None, None
        self.main_plot = LivePlot(self._main_frame())
        self.main_plot.figure.on_event("tap", self._on_tap_main)
        self.exact_source = ColumnDataSource(data=dict(x=[], y=[], text=[]))
        zoom_tools(self.main_plot.figure)
        exact_hover(self.main_plot.figure, self.exact_source)
        self.main_plot.figure.on_event(RangesUpdate, self._on_zoom)
        self.main_plot.figure.on_event(MouseMove, self._on_hover)
        self.reading = LiveHTML(plots.reading_html(th), css_classes=["ap-th-reading"],
                                    stylesheets=[CSS], width=330)
        self.table = LiveHTML(self._table_html(), css_classes=["ap-th-metrics"], stylesheets=[CSS])
        self.summary = LiveHTML(plots.summary_html(th), css_classes=["ap-th-summary"],
                                    stylesheets=[CSS], sizing_mode="stretch_width")
        self.message = LiveHTML(plots.message_html(th), css_classes=["ap-th-message"],
                                    stylesheets=[CSS], sizing_mode="stretch_width")
        self.notes = {key: _md(key, std=RANDOM_STD) for key in ("random", "minilm", "served")}
        self.random_note = self.notes["random"]
        self.kinds = {"tiny": _md("kinds", offset=th.max_len // 2 - 1), "hf": _md("hf_kinds")}
        self.metrics_text = {"tiny": _md("metrics"), "hf": _md("hf_metrics")}
        self._shown = self._now()
        self._show_widgets()
        self.layout = self._assemble()
        self.start(self._WATCH)
        if th.preload_on_show:                      # served: MiniLM loads while the tab is read
            th.start_preload()

    def _now(self) -> tuple:
        th = self.th
        return tuple(getattr(th, name) for name in self._WATCH)

    # -- the pipeline's parts ----------------------------------------------------------------------
    def state_id(self) -> str:
        return state_id(self.th)

    def figures(self) -> list:
        return [self.overview.figure, self.main_plot.figure]

    def busy_badge(self) -> bool:
        return True

    def show(self, changed: set[str]) -> str:
        th = self.th
        now = self._now()
        sid = state_id(th)
        old = dict(zip(self._WATCH, self._shown))
        new = dict(zip(self._WATCH, now))
        diff = {k for k in self._WATCH if old[k] is not new[k] and old[k] != new[k]}
        new_data = bool(diff & {"result", "metrics"})
        selection = bool(diff & {"layer", "head", "aggregate"})
        if new_data or selection:
            self.overview.update(self._overview_frame())
        if new_data:
            self.summary.object = plots.summary_html(th)
        if new_data or selection or "query" in diff or "zoom" in changed:
            self.main_plot.update(self._main_frame())
        if new_data or selection or "query" in diff:
            self.reading.object = plots.reading_html(th)
        if new_data or selection:
            self.table.object = self._table_html()
        if diff & {"input_error", "input_note", "model_error", "input_kind", "result", "loading"}:
            self.message.object = plots.message_html(th)
        if diff & {"model", "input_kind", "result"}:
            self._show_widgets()
        self._shown = now
        return sid

    # -- frames ------------------------------------------------------------------------------------
    def _overview_frame(self):
        th, r = self.th, self.th.result
        px = cell_px(r.num_heads)
        if self._image_for is not r:
            self.mosaic = plots.Mosaic.of(r.num_layers, r.num_heads, r.seq_len, px)
            self._image = plots.overview_layer(r, self.mosaic)
            self._image_for = r
        layer, head = min(th.layer, r.num_layers - 1), min(th.head, r.num_heads - 1)
        selected = plots.selection_layer(self.mosaic, layer, None if th.aggregate else head)
        return plots.overview_frame(r, self._image, selected, self.mosaic, px)

    def _main_frame(self):
        th, r = self.th, self.th.result
        layer, head = min(th.layer, r.num_layers - 1), min(th.head, r.num_heads - 1)
        shown = th.selected_map()                   # exact, or pooled to MAIN_PIXELS for a long text
        if getattr(self, "main_plot", None) is not None and self.main_plot.frame.xlim != (-0.5, r.seq_len - 0.5):
            self._zoom = None                       # another length: the figure goes back to the overview
        frame = plots.main_frame(shown.maps[0].numpy(), r.labels, layer, None if th.aggregate else head,
                                 th.head_metrics_of(layer, head), of_heads=r.num_heads, factor=shown.factor,
                                 refined=self._refined(shown.factor))
        image = frame.layers[0]
        if shown is getattr(self, "_main_shown", None):
            image = self._main_image                # the same map: its pixels are not sent again
        self._main_shown, self._main_image = shown, image
        line = with_marker(frame, min(th.query, r.seq_len - 1)).layers[-1]
        return replace(frame, layers=(image, frame.layers[1], line))

    def _refined(self, factor: int):
        """The main map's visible window recomputed finer than the pooled ``factor``
        (``HeadsResult.window``: exact when it fits ``MAIN_PIXELS`` a side), or None (no zoom, an
        exact map, or nothing finer to show). Cached per (result, map, window)."""
        th, r = self.th, self.th.result
        if self._zoom is None or factor == 1:
            return None
        T = r.seq_len
        x0, x1, y0, y1 = self._zoom
        k0, k1 = max(0, math.floor(min(x0, x1) + 0.5)), min(T, math.ceil(max(x0, x1) + 0.5))
        q0, q1 = max(0, math.floor(min(y0, y1) + 0.5)), min(T, math.ceil(max(y0, y1) + 0.5))
        if k1 <= k0 or q1 <= q0:
            return None
        layer, head = th.selection()
        key = (r, layer, head, (q0, q1), (k0, k1))
        if key != self._refined_key:
            pm = r.window(layer, head, (q0, q1), (k0, k1))
            self._refined_key, self._refined_maps = key, (pm if pm.factor < factor else None)
        return self._refined_maps

    def _table_html(self) -> str:
        th = self.th
        selected = (th.layer, th.head)
        if is_hf(th.result.model):
            return plots.roles_table_html(th.metrics, selected=selected)
        return plots.metrics_table_html(th.metrics, selected=selected)

    def _show_widgets(self) -> None:
        th, w = self.th, self.widgets
        hf = is_hf(th.model)
        w["random_seed"].visible = th.model == "random"
        w["input_kind"].visible = not hf
        w["seed"].visible = not hf and th.input_kind == "preset"
        w["custom_tokens"].visible = not hf and th.input_kind == "custom"
        w["text"].visible = hf
        note = NOTES.get(th.model, "served")
        for key, pane in self.notes.items():
            pane.visible = key == note
        shown_hf = is_hf(th.result.model)
        for key in ("tiny", "hf"):
            self.kinds[key].visible = (key == "hf") == shown_hf
            self.metrics_text[key].visible = (key == "hf") == shown_hf

    # -- events ------------------------------------------------------------------------------------
    def _on_tap_overview(self, event) -> None:
        cell = self.mosaic.cell_at(event.x, event.y)
        if cell is not None:
            self.th.param.update(layer=cell[0], head=cell[1], aggregate=False)

    def _on_zoom(self, event) -> None:
        """A zoom, pan or reset of the main map: show its visible window finer (or, back at the
        whole map, drop the refined window) through the update pipeline."""
        window = (event.x0, event.x1, event.y0, event.y1)
        if any(v is None for v in window):
            return
        xlim, ylim = self.main_plot.frame.xlim, self.main_plot.frame.ylim
        whole = (min(window[:2]) <= xlim[0] + 0.5 and max(window[:2]) >= xlim[1] - 0.5
                 and min(window[2:]) <= ylim[0] + 0.5 and max(window[2:]) >= ylim[1] - 0.5)
        zoom = None if whole or not self.th.result.long else tuple(float(v) for v in window)
        if zoom == self._zoom:
            return
        self._zoom = zoom
        self.request_update(_Zoom())

    def _on_hover(self, event) -> None:
        """The cursor over a pooled main map: put the exact weight of the cell under it where the
        tooltip reads it (one row or weight computed per new cell; the pooled pixel is not used)."""
        th, r = self.th, self.th.result
        if not r.long or event.x is None or event.y is None:
            return
        k, q = round(event.x), round(event.y)
        if not (0 <= k < r.seq_len and 0 <= q < r.seq_len):
            return
        data = self.exact_source.data
        if list(data["x"]) == [k] and list(data["y"]) == [q]:
            return
        layer, head = th.selection()
        w = float(r.row(layer, q).mean(axis=0)[k]) if head is None else r.weight(layer, head, q, k)
        self.exact_source.data = dict(x=[k], y=[q], text=[f"{w:.6f}"])

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
            label("Input"), w["input_kind"], w["seed"], w["custom_tokens"], w["text"], self.message,
            label("Main map"), pn.Row(pn.pane.Markdown("layer", width=45, margin=(12, 0, 0, 10)), w["layer"]),
            pn.Row(pn.pane.Markdown("head", width=45, margin=(12, 0, 0, 10)), w["head"]),
            w["aggregate"],
            caveat(TEXT["caveat"], "ap-th-caveat"), self.state_pane, self.busy_pane, self.page_scripts,
            width=330, css_classes=["ap-th-sidebar"],
        )
        section = dict(sizing_mode="stretch_width", styles=dict(SECTION_STYLES))
        overview = pn.Column(_md("overview"), *self.notes.values(), self.summary,
                             pn.Row(figure_pane(self.overview.figure, "ap-th-overview"),
                                    pn.Column(*self.kinds.values(), width=420),
                                    styles={"flex-wrap": "wrap"}, sizing_mode="stretch_width"),
                             **section)
        main = pn.Column(_md("main"), pn.Row(figure_pane(self.main_plot.figure, "ap-th-main"),
                                             self.reading, styles={"flex-wrap": "wrap"},
                                             sizing_mode="stretch_width"), **section)
        metrics = pn.Column(*self.metrics_text.values(), self.table, **section)
        self.figure_column = pn.Column(overview, main, sizing_mode="stretch_width")
        body = pn.Column(_md("intro"), self.figure_column, metrics, sizing_mode="stretch_width",
                         css_classes=["ap-th-body"])
        return pn.Row(sidebar, body, sizing_mode="stretch_width",
                      css_classes=["ap-model-heads", "ap-trained-heads"], name="Model heads")


class ModelHeads(HeadsState, pn.viewable.Viewer):
    """``HeadsState`` that displays itself (``pn.panel(mh)``, or ``mh`` in a notebook)."""

    def __panel__(self) -> pn.viewable.Viewable:
        """A new live view each time (Bokeh figures belong to one document / output cell), built
        when first shown."""
        return BuiltWhenShown(lambda: ModelHeadsView(self).layout, name="Model heads")


TrainedHeads = ModelHeads
"""The tab's former name (kept for notebooks and scripts)."""
TrainedHeadsView = ModelHeadsView
