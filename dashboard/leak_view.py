"""The "Leak detector" tab: pick a zoo model and an allowed relation, see every forbidden dependency.

``LeakDetector`` holds the knobs (zoo model, allowed relation, ``T``, seed) and the current
:class:`~attention.verify.leaks.LeakReport` (``ld.report``). The expensive part, the exact
dependency map and the prefix sweep, runs once per (model, ``T``, seed) through
:func:`attention.zoo.check_entry` and is cached; changing only the allowed relation re-checks the
cached map with :func:`~attention.verify.leaks.leaks_in_map` (no model call; ``ld.n_computes``
counts the real computations). ``pn.panel(ld)`` shows the live view.

CSS-class hooks for browser tests (on the component's host element):

==========================  ==================================================================
``.ap-leak-detector``       the tab's root (a ``pn.Row``: sidebar + main column)
``.ap-leak-model``          zoo model (``Select`` grouped into buggy / correct)
``.ap-leak-allowed``        allowed relation (``Select``)
``.ap-leak-seq-len``        sequence length T (``IntSlider``)
``.ap-leak-seed``           seed (``IntInput``)
``.ap-leak-description``    the model's one-sentence description and its own relation
``.ap-leak-verdict``        holds ``.ap-leak-badge`` with ``data-verdict="PASS"`` / ``"FAIL"``
``.ap-leak-first``          the largest leak in words ("Output 3 depends on input 4, ...")
``.ap-leak-map``            the dependency map figure (allowed region outlined, leaks marked)
``.ap-leak-sweep``          the prefix-sweep figure
``.ap-leak-gallery``        the mask-zoo thumbnails (``.ap-leak-mask`` each)
==========================  ==================================================================
"""
from __future__ import annotations

import html
import threading
from collections import OrderedDict
from dataclasses import replace

import panel as pn
import param

from attention.verify import (
    LeakReport,
    check_entry,
    dense_allowed,
    leaks_in_map,
    sweep_checked_prefixes,
)
from attention.zoo import ZOO, mask_gallery, parse_relation

__all__ = ["LeakDetector", "RELATION_CHOICES", "TEXT", "rechecked"]

DIM = 16                     # features of every zoo model and input
BATCH = 2                    # input batch (BatchNorm in training mode needs more than one item)
MAX_SEQ_LEN = 32             # the exact map costs B*T*F backward passes: keep it instant
MIN_SEQ_LEN = max(4, *(e.min_seq_len for e in ZOO.values()))   # every bug can show
CACHE_SIZE = 16              # cached (model, T, seed) measurements per session

OWN = "own"
RELATION_CHOICES: dict[str, str] = {
    "the model's own relation": OWN,
    "causal": "causal",
    "sliding window, 2 keys": "sliding:2",
    "sliding window, 3 keys": "sliding:3",
    "sliding window, 4 keys": "sliding:4",
    "prefix-LM, prefix 3": "prefix:3",
    "prefix-LM, prefix 6": "prefix:6",
    "packed documents of 4 tokens": "document",
    "full (anything may depend on anything)": "full",
}
"""Allowed relations offered in the tab: label -> ``OWN`` or a :func:`attention.zoo.parse_relation` spec."""

BUGGY = [name for name, e in ZOO.items() if e.buggy]
CORRECT = [name for name, e in ZOO.items() if not e.buggy]


def rechecked(report: LeakReport, allowed, name: str | None = None) -> LeakReport:
    """``report`` checked against another allowed relation, from its cached map (no model call).

    The dependency map and the sweep values stay; the leaks (:func:`leaks_in_map` with the report's
    own ``atol``), the allowed keep-mask, the checked prefixes and the verdict follow ``allowed``.
    Equals :func:`~attention.verify.leaks.leak_report` run with ``allowed`` on the same model and
    input, for relations that do not depend on the batch item.

    Args:
        report: a report whose ``dep_map`` is the ``(T, T)`` map.
        allowed: ``mask_mod`` or ``(T, T)`` keep-mask (``True`` = output may depend on input).
        name: readable name of the relation. Default: ``allowed.__name__`` (or "dense mask").
    """
    T, S = report.dep_map.shape
    keep = dense_allowed(allowed, T, S, batch=2)      # (T, S), or (2, T, S) if it reads the batch item
    if keep.dim() != 2:
        raise ValueError(f"expected an allowed relation that is the same for every batch item but "
                         f"found {name or getattr(allowed, '__name__', 'a mask')} of shape "
                         f"{tuple(keep.shape)}: use leak_report with the model instead")
    leaks = leaks_in_map(report.dep_map, keep, report.atol)
    checked = sweep_checked_prefixes(keep)
    moved = bool((checked & (report.sweep > report.sweep_atol)).any())
    if name is None:
        name = getattr(allowed, "__name__", None) or f"dense mask {tuple(keep.shape)}"
    return replace(report, leaks=leaks, allowed_dense=keep, sweep_checked=checked,
                   allowed_name=name, passed=not leaks and not moved)


class LeakDetector(pn.viewable.Viewer):
    """Zoo model, allowed relation, ``T`` and seed, and the leak report for them (``ld.report``).

    The model (weights from ``seed``) runs on a random ``(BATCH, seq_len, DIM)`` input drawn from
    ``seed`` (see :func:`attention.zoo.check_entry`). ``n_computes`` counts dependency maps
    actually computed: changing only ``allowed`` never adds one, nor does returning to a
    (model, T, seed) seen before in this session.
    """

    model = param.Selector(objects=list(ZOO), default="off_by_one_causal_mask", label="Zoo model",
                           doc="""
        A small sequence model from the bug zoo: ten realistic leaks and ten correct twins. Each
        has a relation it must respect (usually causal).""")
    allowed = param.Selector(objects=RELATION_CHOICES, default=OWN, label="Allowed relation", doc="""
        Which (output i, input j) pairs may depend on each other. The model's own relation is the
        one it was written for; pick another to see what it would break (or satisfy).""")
    seq_len = param.Integer(default=12, bounds=(MIN_SEQ_LEN, MAX_SEQ_LEN), label="Sequence length T",
                            doc="""
        Positions T of the random input. The map is exact (T*T pairs, one backward pass per
        output entry), so T stays small.""")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Random seed", doc="""
        Seeds the model's weights, the random input and the sweep's perturbations.""")

    report = param.ClassSelector(class_=LeakReport, constant=True, precedence=-1, doc="""
        The leak report for the current parameters (read-only).""")
    busy = param.Boolean(default=False, constant=True, precedence=-1, doc="""
        True while a dependency map is being computed (drives the loading indicator).""")

    def __init__(self, **params):
        self.n_computes = 0
        self._cache: OrderedDict[tuple, LeakReport] = OrderedDict()
        self._lock = threading.RLock()       # served with --num-threads, events may run in parallel
        super().__init__(**params)

    @property
    def entry(self):
        """The :class:`attention.zoo.ZooEntry` of the selected model."""
        return ZOO[self.model]

    def relation(self):
        """The selected allowed relation at ``seq_len`` as a ``mask_mod``."""
        if self.allowed == OWN:
            return self.entry.allowed(self.seq_len)
        return parse_relation(self.allowed, self.seq_len)

    def measurement(self) -> LeakReport:
        """The report against the model's own relation for (model, T, seed): cached, or computed now."""
        key = (self.model, self.seq_len, self.seed)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            with param.edit_constant(self):
                self.busy = True
            try:
                report = check_entry(self.model, seq_len=self.seq_len, dim=DIM, batch=BATCH,
                                     seed=self.seed)
                self.n_computes += 1
            finally:
                with param.edit_constant(self):
                    self.busy = False
            self._cache[key] = report
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return report

    @param.depends("model", "allowed", "seq_len", "seed", watch=True, on_init=True)
    def _refresh(self) -> None:
        with self._lock:
            base = self.measurement()
            report = base if self.allowed == OWN else rechecked(base, self.relation())
            with param.edit_constant(self):
                self.report = report

    def __panel__(self):
        """A new live view each time (Bokeh figures belong to one document).

        Built lazily, when first rendered: the app builds every tab for each session, and drawing
        this one costs about a second that a visitor who never opens it should not wait for.
        """
        return _BuiltWhenShown(lambda: LeakDetectorView(self).layout)


class _BuiltWhenShown(pn.Column):
    """A column whose content ``build()`` makes just before the column is first rendered.

    The content is built with ``config.design`` unset, as the eagerly built tabs are (``app.py``
    builds them before the template sets the session's design). Components created while a
    served template's design is set take that design as their own and render it *isolated*, with
    the full Bootstrap stylesheets on top of Panel's (seen in 1.9.4: Markdown headings at 28 px
    instead of 14 px); without one, the template's hooks style them like the rest of the page.
    """

    def __init__(self, build, **params):
        super().__init__(sizing_mode="stretch_width", margin=0, **params)
        self._build = build

    def _get_model(self, doc, root=None, parent=None, comm=None):
        if self._build is not None:
            build, self._build = self._build, None
            with pn.config.set(design=None):
                self.objects = [build()]
        return super()._get_model(doc, root, parent, comm)


# ----------------------------------------------------------------------------------------------
# the view
TEXT = {
    "intro": """
**Does any output see an input it must not?** Pick a model from the bug zoo, ten realistic
mistakes and ten correct twins, and the relation it has to respect. The detector measures how
strongly every output position depends on every input position, then flags each dependency the
relation forbids. The verdict is about this model *against the relation you pick*: a correct
causal model fails a 3-key sliding window, and any model passes "full".
""",
    "map": """
### Dependency map
Cell (i, j) is **‖∂y_i/∂x_j‖**: how much output i moves when input j is nudged, over all features
(the norm of that block of the Jacobian). White means there is no path from input j to output i
at all. The **orange outline** encloses what the relation allows; every **red ×** is a dependency
outside it, a leak, and the ring marks the largest. Hover a cell for its numbers.

**Exact, not sampled.** The map comes from autograd on a float64 copy of the model: every row of
the Jacobian, computed in batches with `torch.func.vmap`. A blocked path gives an exact zero, so
anything above 10⁻⁹ of the strongest dependency is a real path, not rounding noise.

**Why not read attention weights?** Weights describe one attention layer. The map describes the
whole model from input to output: LayerNorm, MLPs, convolutions, cumulative sums, BatchNorm
statistics pooled over time, residual paths. Five of the ten bugs here contain no attention at
all, and a sixth has a textbook causal layer: its mistake is the relation, not the mask.
""",
    "sweep": """
### Prefix sweep
The black-box cross-check: for every prefix L, replace all inputs after L with fresh random
values, run the model and measure how far outputs 0..L move (all L in one batched call).
**Green**: the relation forbids outputs 0..L to see anything after L, and they stayed within
the tolerance. **Red**: they moved. **Grey**: not checked, because the relation lets some output
≤ L see a later input (inside a prefix-LM's prefix, for instance). The sweep only tests the
future: a leak into the past (a window one too wide, a packed document reading the previous one)
shows in the map alone.
""",
    "gallery": """
### The mask zoo
The relations as keep-masks at this T (row = output / query, column = input / key; blue = may
depend). Each is a predicate `mask_mod(b, h, q_idx, kv_idx)` in FlexAttention's form, composable
with `and_masks` / `or_masks`; any of them can be an attention layer's mask or the allowed
relation of the check above.
""",
}

CSS = """
.ap-leak-sentence { font-size: 14px; font-family: system-ui, sans-serif; }
.ap-leak-pair { font-weight: 600; color: #b91c1c; }
.ap-leak-ok { font-weight: 600; color: #15803d; }
.ap-leak-card { font-family: system-ui, sans-serif; font-size: 13px; line-height: 1.4;
                background: #f8fafc; border: 1px solid #e2e8f0; border-radius: 6px; padding: 8px 10px; }
.ap-leak-tag { display: inline-block; font-size: 11px; font-weight: 700; letter-spacing: .04em;
               padding: 1px 7px; border-radius: 4px; color: white; margin-bottom: 4px; }
.ap-leak-tag.ap-buggy { background: #dc2626; }
.ap-leak-tag.ap-correct { background: #16a34a; }
.ap-leak-rel { color: #475569; margin-top: 6px; }
"""

WIDGETS = {
    "allowed": {"type": pn.widgets.Select, "css_classes": ["ap-leak-allowed"]},
    "seq_len": {"type": pn.widgets.IntSlider, "throttled": True, "css_classes": ["ap-leak-seq-len"]},
    "seed": {"type": pn.widgets.IntInput, "css_classes": ["ap-leak-seed"]},
}


def _md(key: str, **kw) -> pn.pane.Markdown:
    return pn.pane.Markdown(TEXT[key].strip(), css_classes=[f"ap-leak-text-{key}"], **kw)


def _draw(element, *classes: str):
    """The rendered HoloViews plot of ``element``; its figure (``.state``) is sized by its frame and
    tagged with ``classes``.

    ``flex: none`` (as in the playground view): a fixed-size figure stretched by a flex row
    outgrows its canvas and is cut off.
    """
    from .live import render

    plot = render(element)
    fig = plot.state
    if fig.sizing_mode == "fixed" and fig.width is None:
        fig.sizing_mode = None                 # sized by frame_width/height; avoids Bokeh's W-1005
    fig.css_classes = [*fig.css_classes, *classes]
    fig.styles = {**fig.styles, "flex": "none"}
    return plot


def _figure(element, *classes: str):
    """The Bokeh figure of ``element`` (see :func:`_draw`)."""
    return _draw(element, *classes).state


def _description_html(ld: LeakDetector) -> str:
    e = ld.entry
    tag = ('<span class="ap-leak-tag ap-buggy">BUGGY</span>' if e.buggy
           else '<span class="ap-leak-tag ap-correct">CORRECT</span>')
    own = getattr(e.allowed(ld.seq_len), "__name__", "its relation")
    return (f'<div class="ap-leak-card">{tag}<div>{html.escape(e.description)}</div>'
            f'<div class="ap-leak-rel">Must respect: <b>{html.escape(own)}</b></div></div>')


def _first_leak_html(report: LeakReport) -> str:
    from .leak_plots import first_leak_sentence

    cls = "ap-leak-ok" if report.passed else "ap-leak-pair"
    text = html.escape(first_leak_sentence(report))
    return f'<div class="ap-leak-sentence"><span class="{cls}">{text}</span></div>'


class LeakDetectorView:
    """Widgets and figures for one ``LeakDetector`` (one per browser session).

    A new measurement (model, T or seed) draws the map and the sweep anew; a new allowed relation
    on the same measurement rewrites only the relation's parts of the existing figures
    (:func:`dashboard.leak_plots.patch_relation`).

    Attributes:
        layout: the Panel component to show.
        map_plot, sweep_plot: the rendered HoloViews plots (``.state`` is the Bokeh figure) in
            ``map_pane`` / ``sweep_pane``; ``n_redraws`` counts new drawings after the first.
        gallery: the mask thumbnails (redrawn only when T changes).
    """

    def __init__(self, ld: LeakDetector):
        from .leak_plots import dependency_heatmap, sweep_chart, verdict_html
        from .view import CSS as VIEW_CSS

        self.ld = ld
        r = ld.report
        self.model_select = pn.widgets.Select(
            label=ld.param.model.label, groups={"Buggy: must FAIL": BUGGY, "Correct: must PASS": CORRECT},
            value=ld.model, description=" ".join(ld.param.model.doc.split()),
            css_classes=["ap-leak-model"], sizing_mode="stretch_width")
        self.model_select.param.watch(self._on_model_widget, "value")
        self.widgets = [self.model_select] + [
            spec["type"].from_param(ld.param[name], **{k: v for k, v in spec.items() if k != "type"},
                                    sizing_mode="stretch_width")
            for name, spec in WIDGETS.items()]
        self.description = pn.pane.HTML(_description_html(ld), css_classes=["ap-leak-description"],
                                        stylesheets=[CSS], sizing_mode="stretch_width")
        self.verdict = pn.pane.HTML(verdict_html(r), css_classes=["ap-leak-verdict"],
                                    stylesheets=[VIEW_CSS])
        self.first = pn.pane.HTML(_first_leak_html(r), css_classes=["ap-leak-first"],
                                  stylesheets=[CSS], sizing_mode="stretch_width")
        self._shown = r
        self.map_plot = _draw(dependency_heatmap(r), "ap-leak-map")
        self.sweep_plot = _draw(sweep_chart(r), "ap-leak-sweep")
        self.map_pane = pn.pane.Bokeh(self.map_plot.state, margin=(0, 4), styles={"flex": "none"})
        self.sweep_pane = pn.pane.Bokeh(self.sweep_plot.state, margin=(0, 4), styles={"flex": "none"})
        self.n_redraws = 0                     # figures drawn anew (a new map); relation changes patch
        self._gallery_T = None
        self.gallery = pn.Row(css_classes=["ap-leak-gallery"], sizing_mode="stretch_width",
                              styles={"flex-wrap": "wrap"})
        self._sync_gallery()
        self.layout = self._assemble()
        ld.param.watch(self._on_report, "report")
        ld.param.watch(self._on_busy, "busy")
        ld.param.watch(self._on_model_param, "model")

    # -- model select (grouped options cannot come from from_param) ----------------------------
    def _on_model_widget(self, event) -> None:
        if event.new is not None and event.new != self.ld.model:
            self.ld.model = event.new

    def _on_model_param(self, event) -> None:
        if self.model_select.value != event.new:
            self.model_select.value = event.new

    # -- updates -------------------------------------------------------------------------------
    def _sync_gallery(self) -> None:
        T = self.ld.seq_len
        if T == self._gallery_T:
            return
        self._gallery_T = T
        with pn.config.set(design=None):       # styled by the template, see _BuiltWhenShown
            self.gallery.objects = self._gallery_cards(T)

    @staticmethod
    def _gallery_cards(T: int) -> list:
        from .leak_plots import THUMB_SIZE, mask_thumbnail

        return [pn.Column(
                     pn.pane.HTML(html.escape(name), width=THUMB_SIZE + 36, height=34, margin=(0, 4),
                                  styles={"font-size": "12px", "font-weight": "600",
                                          "line-height": "1.2"}),
                     pn.pane.Bokeh(_figure(mask_thumbnail(name, keep, title=False), "ap-leak-mask"),
                                   margin=(0, 4), styles={"flex": "none"}),
                     width=THUMB_SIZE + 40, margin=(0, 2, 10, 0))
                for name, keep in mask_gallery(T).items()]

    def _on_report(self, event) -> None:
        """New report: patch the figures in place if only the relation changed, else draw anew."""
        from .leak_plots import dependency_heatmap, patch_relation, sweep_chart, verdict_html

        r, shown = event.new, self._shown
        from .live import hold_documents

        with hold_documents(self.verdict):
            self.verdict.object = verdict_html(r)
            self.first.object = _first_leak_html(r)
            self.description.object = _description_html(self.ld)
            if r.dep_map is shown.dep_map and r.sweep is shown.sweep:    # one cached measurement
                patch_relation(self.map_plot, self.sweep_plot, r)
            else:
                self.map_plot = _draw(dependency_heatmap(r), "ap-leak-map")
                self.sweep_plot = _draw(sweep_chart(r), "ap-leak-sweep")
                self.map_pane.object = self.map_plot.state
                self.sweep_pane.object = self.sweep_plot.state
                self.n_redraws += 1
            self._shown = r
            self._sync_gallery()

    def _on_busy(self, event) -> None:
        # on layouts only: loading= on a pn.pane.Bokeh re-syncs the figure's stylesheets and fails
        self.results.loading = event.new

    # -- layout --------------------------------------------------------------------------------
    def _assemble(self) -> pn.viewable.Viewable:
        sidebar = pn.Column(
            pn.pane.Markdown("#### Model and relation", margin=(0, 10)),
            *self.widgets, self.description, width=310, css_classes=["ap-leak-sidebar"],
        )
        border = {"border-top": "1px solid #e2e8f0"}
        section = dict(sizing_mode="stretch_width", styles=border)
        wrap = dict(sizing_mode="stretch_width", styles={**border, "flex-wrap": "wrap"})
        header = pn.Row(self.verdict, self.first, sizing_mode="stretch_width",
                        styles={"align-items": "center"})
        maps = pn.Row(self.map_pane, _md("map", max_width=520, min_width=320), **wrap)
        sweep = pn.Row(self.sweep_pane, _md("sweep", max_width=520, min_width=320), **wrap)
        self.results = pn.Column(header, maps, sweep, sizing_mode="stretch_width")
        gallery = pn.Column(_md("gallery", max_width=900), self.gallery, **section)
        main = pn.Column(_md("intro", max_width=900), self.results, gallery,
                         sizing_mode="stretch_width", css_classes=["ap-leak-main"])
        return pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["ap-leak-detector"],
                      name="Leak detector")
