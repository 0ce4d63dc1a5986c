"""The "Leak detector" tab's live view: ``LeakDetector`` (state + display) and ``LeakDetectorView``.

Pick a zoo model and an allowed relation, see every forbidden dependency. ``pn.panel(ld)``
shows the live view, built when first shown (``common.lazy.BuiltWhenShown``).

CSS-class hooks for browser tests (on the component's host element):

==========================  ==================================================================
``.ap-leak-detector``       the tab's root (a ``pn.Row``: sidebar + main column)
``.ap-leak-model``          zoo model (``Select`` grouped into buggy / correct, plus "Served (--hf)":
                            the Hugging Face models the server was started with)
``.ap-leak-allowed``        allowed relation (``Select``)
``.ap-leak-seq-len``        sequence length T (``IntSlider``)
``.ap-leak-seed``           seed (``IntInput``)
``.ap-leak-description``    the model's one-sentence description and its own relation
``.ap-leak-verdict``        holds ``.ap-leak-badge`` with ``data-verdict="PASS"`` / ``"FAIL"``
``.ap-leak-first``          the largest leak in words ("Output 3 depends on input 4, ...")
``.ap-leak-map``            the dependency map figure (allowed region outlined, leaks marked)
``.ap-leak-sweep``          the prefix-sweep figure
``.ap-leak-gallery``        the mask-zoo thumbnails (``.ap-leak-mask`` each)
``.ap-state``               the state id every figure shows (see ``common.live``)
==========================  ==================================================================
"""
from __future__ import annotations

import html
import threading

import panel as pn

from attention.zoo import mask_gallery

from ..common.lazy import BuiltWhenShown
from ..common.figures import copy_drawing, render
from ..common.live import LiveHTML, LiveView
from ..common.panes import figure_pane, markdown, prompt, widgets_from_spec, wrap_row
from ..common.style import CSS as BADGE_CSS
from ..common.style import SECTION_STYLES
from . import plots
from .state import BUGGY, CORRECT, LeakResult, LeakState
from .text import CSS, TEXT

__all__ = ["LeakDetector", "LeakDetectorView", "WIDGETS"]

WIDGETS = {
    "allowed": {"type": pn.widgets.Select, "css_classes": ["ap-leak-allowed"],
                "sizing_mode": "stretch_width"},
    "seq_len": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-leak-seq-len"],
                "sizing_mode": "stretch_width"},
    "seed": {"type": pn.widgets.IntInput, "css_classes": ["ap-leak-seed"],
             "sizing_mode": "stretch_width"},
}
"""The sidebar's widgets besides the grouped model list: ``{parameter: {"type": Widget, ...}}``."""


def _md(key: str, **kw) -> pn.pane.Markdown:
    return markdown(TEXT[key], f"ap-leak-text-{key}", **kw)


def _draw(element, *classes: str):
    """The rendered HoloViews plot of ``element``; its figure carries ``classes`` (see figure_pane)."""
    plot = render(element)
    figure_pane(plot.state, *classes)      # sizes and classes the figure; the pane is not kept
    return plot


def state_id(res: LeakResult) -> str:
    """What the figures show: the model, the relation, T and seed of one report."""
    return f"model={res.model} relation={res.allowed} T={res.seq_len} seed={res.seed}"


class LeakDetectorView(LiveView):
    """Widgets and figures for one ``LeakDetector`` (one per browser session or output).

    A new measurement (model, T or seed) draws the map and the sweep anew and writes what they
    show into the figures on the page (:func:`dashboard.common.figures.copy_drawing`), so the page
    is not laid out again; a new allowed relation on the same measurement rewrites only the
    relation's parts of the existing figures (:func:`dashboard.leaks.plots.patch_relation`).

    Attributes:
        layout: the Panel component to show.
        map_plot, sweep_plot: the rendered HoloViews plots (``.state`` is the Bokeh figure) in
            ``map_pane`` / ``sweep_pane``; ``n_copies`` counts new maps written into them,
            ``n_redraws`` figures replaced instead (a drawing of another structure).
        gallery: the mask thumbnails (redrawn only when T changes).
    """

    def __init__(self, ld: LeakState):
        super().__init__(ld)
        self.ld = ld
        res = ld.result
        self._local = threading.local()
        self.model_select = prompt(pn.widgets.Select(
            label=ld.param.model.label, groups={"Buggy: must FAIL": BUGGY, "Correct: must PASS": CORRECT,
                                                **({"Served (--hf)": ld.served} if ld.served else {})},
            value=ld.model, description=" ".join(ld.param.model.doc.split()),
            css_classes=["ap-leak-model"], sizing_mode="stretch_width"))
        self.model_select.param.watch(self._on_model_widget, "value")
        ld.param.watch(self._on_model_param, "model")
        self.widgets = [self.model_select, *widgets_from_spec(ld, WIDGETS).values()]
        self.description = LiveHTML(plots.description_html(res), css_classes=["ap-leak-description"],
                                        stylesheets=[CSS], sizing_mode="stretch_width")
        self.verdict = LiveHTML(plots.verdict_html(res.report), css_classes=["ap-leak-verdict"],
                                    stylesheets=[BADGE_CSS])
        self.first = LiveHTML(plots.first_leak_html(res.report), css_classes=["ap-leak-first"],
                                  stylesheets=[CSS], sizing_mode="stretch_width")
        self._shown = res
        self.map_plot = _draw(plots.dependency_heatmap(res.report), "ap-leak-map")
        self.sweep_plot = _draw(plots.sweep_chart(res.report), "ap-leak-sweep")
        self.map_pane = pn.pane.Bokeh(self.map_plot.state, margin=(0, 4), styles={"flex": "none"})
        self.sweep_pane = pn.pane.Bokeh(self.sweep_plot.state, margin=(0, 4), styles={"flex": "none"})
        self.n_redraws = 0                     # figures replaced on the page (none so far: see show)
        self.n_copies = 0                      # new maps written into the figures on the page
        self._gallery_T = None
        self.gallery = wrap_row(css_classes=["ap-leak-gallery"], sizing_mode="stretch_width")
        self._sync_gallery(res.seq_len)
        self.layout = self._assemble()
        self.start(["result"])

    # -- model select (grouped options cannot come from from_param) ----------------------------
    def _on_model_widget(self, event) -> None:
        if event.new is not None and event.new != self.ld.model:
            self._local.from_widget = True     # the param change below must not echo back
            try:
                self.ld.model = event.new
            finally:
                self._local.from_widget = False

    def _on_model_param(self, event) -> None:
        """A model set from code (not from this widget) shows in the widget."""
        if not getattr(self._local, "from_widget", False) and self.model_select.value != event.new:
            self.model_select.value = event.new

    # -- the pipeline's parts --------------------------------------------------------------------
    def state_id(self) -> str:
        return state_id(self.ld.result)

    def figures(self) -> list:
        return [self.map_plot.state, self.sweep_plot.state]

    def busy_badge(self) -> bool:
        return True

    def show(self, changed: set[str]) -> str:
        """New result: patch the figures in place if only the relation changed, else draw anew."""
        res, shown = self.ld.result, self._shown
        if res is not shown:
            r = res.report
            self.verdict.object = plots.verdict_html(r)
            self.first.object = plots.first_leak_html(r)
            self.description.object = plots.description_html(res)
            if r.dep_map is shown.report.dep_map and r.sweep is shown.report.sweep:   # one measurement
                plots.patch_relation(self.map_plot, self.sweep_plot, r)
            else:
                # another map: draw it, then write what it shows into the figures on the page
                # (a new figure in the pane would lay the whole page out again)
                map_plot = _draw(plots.dependency_heatmap(r), "ap-leak-map")
                sweep_plot = _draw(plots.sweep_chart(r), "ap-leak-sweep")
                if copy_drawing(self.map_plot.state, map_plot.state) and \
                        copy_drawing(self.sweep_plot.state, sweep_plot.state):
                    self.n_copies += 1
                else:
                    self.map_plot, self.sweep_plot = map_plot, sweep_plot
                    self.map_pane.object = self.map_plot.state
                    self.sweep_pane.object = self.sweep_plot.state
                    self.n_redraws += 1
            self._shown = res
            self._sync_gallery(res.seq_len)
        return state_id(res)

    def _sync_gallery(self, T: int) -> None:
        if T == self._gallery_T:
            return
        self._gallery_T = T
        with pn.config.set(design=None):       # styled by the template, see BuiltWhenShown
            self.gallery.objects = self._gallery_cards(T)

    @staticmethod
    def _gallery_cards(T: int) -> list:
        return [pn.Column(
                     pn.pane.HTML(html.escape(name), width=plots.THUMB_SIZE + 36, height=34, margin=(0, 4),
                                  styles={"font-size": "12px", "font-weight": "600",
                                          "line-height": "1.2"}),
                     figure_pane(_draw(plots.mask_thumbnail(name, keep, title=False)).state,
                                 "ap-leak-mask"),
                     width=plots.THUMB_SIZE + 40, margin=(0, 2, 10, 0))
                for name, keep in mask_gallery(T).items()]

    # -- layout --------------------------------------------------------------------------------
    def _assemble(self) -> pn.viewable.Viewable:
        sidebar = pn.Column(
            pn.pane.Markdown("#### Model and relation", margin=(0, 10)),
            *self.widgets, self.description, self.state_pane, self.busy_pane, self.page_scripts, width=310,
            css_classes=["ap-leak-sidebar"],
        )
        border = dict(SECTION_STYLES)
        section = dict(sizing_mode="stretch_width", styles=border)
        header = pn.Row(self.verdict, self.first, sizing_mode="stretch_width",
                        styles={"align-items": "center"})
        maps = wrap_row(self.map_pane, _md("map", max_width=520, min_width=320),
                        sizing_mode="stretch_width", styles=border)
        sweep = wrap_row(self.sweep_pane, _md("sweep", max_width=520, min_width=320),
                         sizing_mode="stretch_width", styles=border)
        self.results = pn.Column(header, maps, sweep, sizing_mode="stretch_width")
        gallery = pn.Column(_md("gallery", max_width=900), self.gallery, **section)
        main = pn.Column(_md("intro", max_width=900), self.results, gallery,
                         sizing_mode="stretch_width", css_classes=["ap-leak-main"])
        return pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["ap-leak-detector"],
                      name="Leak detector")


class LeakDetector(LeakState, pn.viewable.Viewer):
    """``LeakState`` that displays itself (``pn.panel(ld)``, or ``ld`` in a notebook)."""

    def __panel__(self) -> pn.viewable.Viewable:
        """A new live view each time (Bokeh figures belong to one document), built when first
        shown: drawing it costs about a second that a visitor who never opens the tab should not
        wait for."""
        return BuiltWhenShown(lambda: LeakDetectorView(self).layout, name="Leak detector")
