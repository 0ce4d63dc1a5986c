"""The live Playground: ``AttentionPlayground`` (state + display) and ``PlaygroundView``.

``PlaygroundView(pg).layout`` is what ``pn.panel(pg)`` shows (bare, for notebooks) and what the
served app puts in its first tab. Every figure is drawn once from a ``plots.py`` frame and then
updated in place (``common.live.LivePlot``) through the view's one update pipeline
(``common.live.LiveView``): a parameter change sends new data to existing figures, never a new
layout. Only what depends on the change is touched:

- new weights (T, H, D, causal, seed, text, position signal): head maps, query plot,
  step-by-step view (two figures: steps 1-4 share one key axis), mask (only if T or causal changed), invariance;
- only the prefix L changed: invariance chart and numbers;
- only the selected query / viewed head changed: the query line on the head maps, the query plot
  and the step-by-step view (no attention is recomputed: ``pg.n_computes`` stays).

All heads are one figure (``plots.heads_frame``, a mosaic of maps: one row up to five heads, then
rows of four to six): a heads step changes that figure's data, and its size only between 5 and 6
heads (``state.heads_box``). (One
figure per head made the browser lay the page out again and repaint every figure on each step:
2 s per step in chromium at T=16, H=4.)
"""
from __future__ import annotations

import hashlib
import math
from io import BytesIO

import panel as pn
from bokeh.events import MouseMove, RangesUpdate, Tap
from bokeh.models import ColumnDataSource

from ..common.frames import Frame
from ..common.lazy import BuiltWhenShown
from ..common.figures import LivePlot, render
from ..common.live import LiveHTML, LiveView, part_of_state
from ..common.panes import (
    TEXT_MAX_CHARS,
    caveat,
    checked_widget,
    clamp_index,
    figure_pane,
    markdown,
    prompt,
    widgets_from_spec,
    with_tooltip,
    wrap_row,
)
from ..common.style import CSS, SECTION_STYLES
from . import plots
from .export import export_html
from .state import PlaygroundResult, PlaygroundState, single_token_steps, words_of
from .text import TEXT

__all__ = ["AttentionPlayground", "PlaygroundView", "WIDGETS"]

WIDGETS = {
    "text": {"type": pn.widgets.TextInput, "placeholder": "a sentence, then Enter",
             "css_classes": ["ap-text"], "max_length": TEXT_MAX_CHARS},
    "seq_len": {"type": pn.widgets.IntInput, "checked": "value", "css_classes": ["ap-seq-len"]},
    "num_heads": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-num-heads"]},
    "head_dim": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-head-dim"]},
    "causal": {"type": pn.widgets.Checkbox, "css_classes": ["ap-causal"]},
    "prefix": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-prefix"]},
    "query": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-query"]},
    "view_head": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-view-head"]},
    "seed": {"type": pn.widgets.IntInput, "checked": "value", "css_classes": ["ap-seed"]},
    "position_scale": {"type": pn.widgets.FloatSlider, "throttled": True,
                       "css_classes": ["ap-position-scale"]},
}
"""The sidebar's widgets: ``{parameter: {"type": Widget, **options}}`` (``widgets_from_spec``);
``"checked": event`` marks a number typed by hand, clamped on the server with a message
(``common.panes.checked_widget``)."""

LOADING_MIN_WORK = 2**18      # T*T*H from which a recompute shows loading spinners (T=256, H=4)


def state_id(r: PlaygroundResult, query: int, view_head: int) -> str:
    """What the figures show: the result's parameters and the selection (clamped into range)."""
    text = hashlib.sha1(r.text.encode("utf-8")).hexdigest()[:8] if r.text.strip() else "-"
    return (f"T={r.seq_len} H={r.num_heads} D={r.head_dim} causal={int(r.causal)} seed={r.seed} "
            f"L={r.prefix} q={min(query, r.seq_len - 1)} head={min(view_head, r.num_heads - 1)} "
            f"pos={r.position_scale:g} text={text}")


WEIGHTS_KEYS = ("T", "H", "D", "causal", "seed", "pos", "text")
"""The state-id keys of a core computation (the weights and outputs)."""
MASK_KEYS = ("T", "causal", "text")
INVARIANCE_KEYS = (*WEIGHTS_KEYS, "L")


class _Zoom:
    """The pseudo-event a zoom sends down the update pipeline (``show`` sees ``"zoom"``)."""

    name = "zoom"


class PlaygroundView(LiveView):
    """Widgets and live figures for one ``AttentionPlayground`` (one per browser session or output).

    Attributes:
        layout: the Panel component to show.
        heads_plot: the ``LivePlot`` of every head's map (``plots.heads_frame``); ``query_plot``,
            ``single_plots`` (two: steps 1-4 over
            the keys in one figure, ``plots.steps_frame``, and step 5, the output),
            ``mask_plot``, ``invariance_plot``: the other figures.
    """

    def __init__(self, pg: PlaygroundState):
        super().__init__(pg)
        self.pg = pg
        r = pg.result
        self._last: PlaygroundResult = r
        self._q, self._head = min(pg.query, r.seq_len - 1), min(pg.view_head, r.num_heads - 1)

        self.message = LiveHTML("", css_classes=["ap-input-message"], stylesheets=[CSS],
                                    sizing_mode="stretch_width", margin=(0, 10))
        plain = {k: v for k, v in WIDGETS.items() if "checked" not in v}
        self.widgets = widgets_from_spec(pg, plain)
        for name, spec in WIDGETS.items():
            if "checked" in spec:
                options = {k: v for k, v in spec.items() if k not in ("type", "checked")}
                self.widgets[name] = checked_widget(pg, name, spec["type"], self.notify,
                                                    event=spec["checked"], **options)
        self.widgets = {name: self.widgets[name] for name in WIDGETS}      # the spec's order
        # T also has a slider (bounded, throttled) under the box where any number can be typed
        self.seq_len_slider = prompt(pn.widgets.IntSlider.from_param(
            pg.param.seq_len, throttled=True, name="", css_classes=["ap-seq-len-slider"], width=225,
            margin=(-8, 10, 5, 10)))
        for w in self.widgets.values():
            w.width = 225 if "description" not in w.param else 250
        pg.param.watch(self._on_text, "text")
        rows = [with_tooltip(w, pg.param[name].doc) for name, w in self.widgets.items()]
        rows.insert(list(self.widgets).index("seq_len") + 1, self.seq_len_slider)
        self.controls = pn.Column(*rows, self.message, width=260, css_classes=["ap-controls"])
        self.download = pn.widgets.FileDownload(
            callback=self._download_html, filename="attention-playground.html",
            label="Download as HTML", color="primary", embed=False,
            css_classes=["ap-download"], sizing_mode="stretch_width",
        )

        self.colorbar = figure_pane(render(plots.colorbar_strip()).state, "ap-colorbar")
        self._heads_frame = plots.heads_frame(r, self._q)
        self.heads_plot = LivePlot(self._heads_frame)
        self.heads_plot.figure.on_event(Tap, self._on_tap_query)
        # zoom sharpens: the visible window is recomputed finer (``plots.refine_zoom``); hover
        # names the exact weight of the cell under the cursor, computed here (``_on_hover``)
        self._zoom: tuple[float, float, float, float] | None = None
        self.refined = plots.refine_zoom(r, None)
        self.exact_source = ColumnDataSource(data=dict(x=[], y=[], text=[]))
        plots.zoom_tools(self.heads_plot.figure)
        plots.exact_hover(self.heads_plot.figure, self.exact_source)
        self.heads_plot.figure.on_event(RangesUpdate, self._on_zoom)
        self.heads_plot.figure.on_event(MouseMove, self._on_hover)
        self.heads_box = wrap_row(self.colorbar, figure_pane(self.heads_plot.figure, "ap-heads-map"),
                                  css_classes=["ap-heads"], sizing_mode="stretch_width")

        self.query_plot = LivePlot(plots.query_frame(r, self._q))
        self.query_plot.figure.on_event(Tap, self._on_tap_head)
        self.query_pane = figure_pane(self.query_plot.figure, "ap-query-plot")

        self.single_plots = [LivePlot(f) for f in self._single_frames(r, self._head, self._q)]
        self.single_pane = wrap_row(*[figure_pane(p.figure, css)
                                      for css, p in zip(("ap-steps", "ap-step-output"), self.single_plots)],
                                    css_classes=["ap-single-token"], sizing_mode="stretch_width")

        self.mask_plot = LivePlot(plots.mask_frame(r))
        self._mask_key = (r.seq_len, r.causal, r.tokens)
        self.mask_pane = figure_pane(self.mask_plot.figure, "ap-mask")
        self.invariance_plot = LivePlot(plots.invariance_frame(r, max_bars=plots.MAX_BARS))
        self.inv_pane = figure_pane(self.invariance_plot.figure, "ap-invariance-chart")
        self.verdict = LiveHTML(plots.verdict_html(r), css_classes=["ap-verdict-pane"],
                                    stylesheets=[CSS])
        self.stats = LiveHTML(plots.invariance_summary_html(r), css_classes=["ap-stats-pane"],
                                  stylesheets=[CSS])
        self.layout = self._assemble()
        self.start(["result", "query", "view_head"])
        self._follow_pixel_ratio()

    def _follow_pixel_ratio(self) -> None:
        """Pool the heads maps to the screen's pixels: the state's ``pixel_ratio`` follows the
        browser's ``devicePixelRatio`` (Panel's ``BrowserInfo``, known once the page has loaded)."""
        info = pn.state.browser_info
        if info is None:
            return

        def follow(*_) -> None:
            ratio = info.device_pixel_ratio
            if isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0:
                lo, hi = self.pg.param.pixel_ratio.bounds
                self.pg.pixel_ratio = min(max(float(ratio), lo), hi)

        info.param.watch(follow, "device_pixel_ratio")
        follow()

    # -- the pipeline's parts ------------------------------------------------------------------
    def state_id(self) -> str:
        return state_id(self.pg.result, self.pg.query, self.pg.view_head)

    def figures(self) -> list:
        return [p.figure for p in (self.heads_plot, self.query_plot, *self.single_plots, self.mask_plot,
                                   self.invariance_plot)]

    def figure_state(self, figure, sid: str) -> str:
        # what each figure shows, as ``show`` redraws it: the weights (a new core computation),
        # plus the query, plus the head; the mask only T, causal and the tokens; the invariance
        # test every input of a result but not the selection
        if figure is self.mask_plot.figure:
            return part_of_state(sid, MASK_KEYS)
        if figure is self.invariance_plot.figure:
            return part_of_state(sid, INVARIANCE_KEYS)
        if figure in (self.heads_plot.figure, self.query_plot.figure):
            return part_of_state(sid, (*WEIGHTS_KEYS, "q"))
        return part_of_state(sid, (*WEIGHTS_KEYS, "q", "head"))      # the step panels

    def tags_of(self, figure) -> list[str]:
        if figure is self.heads_plot.figure:
            return [plots.HeadGrid.of_result(self._last).tag()]
        return []

    def busy_badge(self) -> bool:
        return True

    def wants_spinner(self) -> bool:
        pg = self.pg
        return pg.seq_len**2 * pg.num_heads >= LOADING_MIN_WORK

    def show(self, changed: set[str]) -> str:
        r, query, view_head = self.pg.result, self.pg.query, self.pg.view_head
        q, head = min(query, r.seq_len - 1), min(view_head, r.num_heads - 1)
        last = self._last
        new_weights = r.maps is not last.maps            # a new core computation
        zoomed = "zoom" in changed
        if new_weights:
            frame = plots.heads_frame(r, q)
            if (frame.xlim, frame.ylim) != (self._heads_frame.xlim, self._heads_frame.ylim):
                self._zoom = None                         # the figure goes back to the overview
            self._heads_frame, zoomed = frame, self._zoom is not None
        elif q != self._q:
            self._heads_frame = plots.heads_with_query(self._heads_frame, r, q)
        if zoomed:
            self.refined = plots.refine_zoom(r, self._zoom)
            self._heads_frame = plots.with_refined(self._heads_frame, r, self.refined)
        elif new_weights:
            self.refined = plots.refine_zoom(r, None)
        if new_weights or q != self._q or zoomed:
            self.heads_plot.update(self._heads_frame)
        if new_weights or q != self._q:
            self.query_plot.update(plots.query_frame(r, q))
        if new_weights or q != self._q or head != self._head:
            for live, frame in zip(self.single_plots, self._single_frames(r, head, q)):
                live.update(frame)
        if new_weights and (r.seq_len, r.causal, r.tokens) != self._mask_key:
            self._mask_key = (r.seq_len, r.causal, r.tokens)
            self.mask_plot.update(plots.mask_frame(r))
        if r is not last:
            self.invariance_plot.update(plots.invariance_frame(r, max_bars=plots.MAX_BARS))
            self.verdict.object = plots.verdict_html(r)
            self.stats.object = plots.invariance_summary_html(r)
        self._last, self._q, self._head = r, q, head
        return state_id(r, query, view_head)

    # -- frames ------------------------------------------------------------------------------
    @staticmethod
    def _single_frames(r: PlaygroundResult, head: int, query: int) -> list[Frame]:
        return plots.single_token_frames(single_token_steps(r, head, query), r.tokens)

    # -- events --------------------------------------------------------------------------------
    def notify(self, sentence: str) -> None:
        """Say on the page why an input was not used as typed ("" clears the message)."""
        self.message.object = plots.message_html(sentence)

    def _on_text(self, event) -> None:
        n = len(words_of(event.new))
        limit = self.pg.seq_len_limit
        self.notify(f"Your text has {n} words: the first {limit} are used." if n > limit else "")

    def _on_tap_query(self, event) -> None:
        """A click on a head's map selects the query of that row."""
        r = self._last
        cell = plots.HeadGrid.of_result(r).locate(event.x, event.y)
        if cell is not None:
            self.pg.query = cell[1]

    def _on_zoom(self, event) -> None:
        """A zoom, pan or reset of the heads figure: show its visible window finer (or, back at the
        overview, drop the refined windows) through the update pipeline."""
        window = (event.x0, event.x1, event.y0, event.y1)
        if any(v is None for v in window):
            return
        g = plots.HeadGrid.of_result(self._last)
        xlim, ylim = self._heads_frame.xlim, self._heads_frame.ylim
        overview = (min(window[:2]) <= xlim[0] + 0.5 and max(window[:2]) >= xlim[1] - 0.5
                    and min(window[2:]) <= ylim[0] + 0.5 and max(window[2:]) >= ylim[1] - 0.5)
        zoom = None if overview or g.f == 1 else tuple(float(v) for v in window)
        if zoom == self._zoom:
            return
        self._zoom = zoom
        self.request_update(_Zoom())

    def _on_hover(self, event) -> None:
        """The cursor over the heads figure: put the exact weight of the cell under it where the
        tooltip reads it (one weight computed per new cell; the pooled pixel is not used)."""
        r = self._last
        g = plots.HeadGrid.of_result(r)
        if g.f == 1:
            return                                        # the pixels are the exact weights
        cell = g.locate(event.x, event.y)
        if cell is None:
            return
        h, q, k = cell
        ox, oy = g.origin(h)
        data = self.exact_source.data
        if list(data["x"]) == [ox + k] and list(data["y"]) == [oy + q]:
            return
        w = r.weight(h, q, k)
        self.exact_source.data = dict(x=[ox + k], y=[oy + q], text=[f"{w:.6f}"])

    def _on_tap_head(self, event) -> None:
        h = clamp_index(event.y, self.pg.num_heads)
        if h is not None:
            self.pg.view_head = h

    def _download_html(self) -> BytesIO:
        buf = BytesIO()
        export_html(self.pg, buf, pooled=None)           # pooled above the full export's limit
        buf.seek(0)
        return buf

    # -- layout --------------------------------------------------------------------------------
    def _assemble(self) -> pn.viewable.Viewable:
        sidebar = pn.Column(
            pn.pane.Markdown("#### Controls", margin=(0, 10)),
            self.controls, self.download, caveat(TEXT["caveat"], "ap-caveat"), self.state_pane,
            self.busy_pane, self.page_scripts,
            width=275, css_classes=["ap-sidebar"],
        )
        section = dict(sizing_mode="stretch_width", styles=dict(SECTION_STYLES))
        heads = pn.Column(markdown(TEXT["heads"], "ap-text-heads", max_width=900), self.heads_box, **section)
        self.query_row = query = pn.Row(self.query_pane, markdown(TEXT["query"], "ap-text-query", width=330),
                                        **section)
        single = pn.Column(markdown(TEXT["single"], "ap-text-single", max_width=900), self.single_pane,
                           **section)
        self.analysis = wrap_row(
            self.mask_pane, pn.Column(self.verdict, self.stats, width=310), self.inv_pane,
            sizing_mode="stretch_width", css_classes=["ap-invariance"],
        )
        causal = pn.Column(markdown(TEXT["causal"], "ap-text-causal", max_width=900), self.analysis,
                           **section)
        main = pn.Column(markdown(TEXT["intro"], "ap-text-intro"), heads, query, single, causal,
                         sizing_mode="stretch_width", css_classes=["ap-main"])
        return pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["ap-playground"],
                      name="Playground")


class AttentionPlayground(PlaygroundState, pn.viewable.Viewer):
    """``PlaygroundState`` that displays itself: ``pn.panel(pg)`` or ``pg`` in a notebook shows the
    live dashboard (see :class:`~dashboard.playground.state.PlaygroundState` for the parameters)."""

    def __panel__(self) -> pn.viewable.Viewable:
        """A new live view each time (Bokeh figures belong to one document / output cell), built
        when first shown."""
        return BuiltWhenShown(lambda: PlaygroundView(self).layout, name="Playground")
