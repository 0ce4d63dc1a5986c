"""Live figures and the one update pipeline every tab's view uses.

``LivePlot``: a Bokeh figure drawn once by HoloViews from a ``common.frames.Frame``, then updated
in place. HoloViews draws the figure the first time (styles, colour mapper, hover, axes) from
``to_element(frame)``. Later frames of the same shape only push their *data* into the existing
Bokeh models: glyph sources, annotation positions, title, axis ranges and tick labels. No model
is created or replaced, so the browser receives a small patch and the page layout is never rebuilt.

Why not ``hv.DynamicMap`` for the updates: a DynamicMap update builds a new HoloViews element
(about 1-6 ms each) and walks HoloViews' generic ``update_frame`` (ranges, labels, axes, hover,
hooks; measured at 12-20 ms per plot on this project's 2-core machine), against well under 1 ms
to write a ``ColumnDataSource``. ``tests/dashboard/test_live.py`` checks that an updated figure
holds exactly the data of a freshly drawn one.

``LiveView``: the base of every tab's view, one latest-wins update pipeline per view (one view
per browser session or notebook output). A state change (from any thread) only *requests* an
update; the view then shows whatever the state holds at that moment:

- served (a Bokeh server session): the update runs as a next-tick callback on the session's own
  event loop, under the document lock, inside one ``hold`` (one patch message). Requests that
  arrive while one is pending are coalesced into it. Writing Bokeh models from a worker thread
  outside the lock is what broke pages before (``_pending_writes should be non-None``, "reference
  pNNNN isn't known").
- in a notebook (a comm) or not displayed yet: the update runs at once, and notebook outputs get
  ``pn.io.push_notebook`` (Panel only pushes direct Bokeh edits itself when a Panel object changes
  in the same callback).

Each update stamps a state id (what the figures show, e.g. ``T=16 H=4 ... q=7``) on every live
figure (``tags=["ap-state:<id>"]``) and on the view's ``.ap-state`` element, so a test can prove
that every figure shows the same state and that it matches the controls.

Nothing here is shared between sessions: every render gets its own HoloViews renderer (a shared
one keeps the last plot and its document, and one session's failure there broke the others).
"""
from __future__ import annotations

import html
import math
import threading
from contextlib import ExitStack, contextmanager
from functools import partial

import numpy as np
import panel as pn
from bokeh.models import CustomJSHover, FixedTicker, HoverTool
from holoviews.core.util import dimension_sanitizer
from holoviews.plotting.bokeh import BokehRenderer

from .frames import Frame, Layer, to_element

__all__ = ["LivePlot", "LiveView", "STATE_TAG", "hold_documents", "layer_source_data", "render",
           "state_html"]

STATE_TAG = "ap-state:"
"""Prefix of the state id in every live figure's ``tags``."""


def _documents(*viewables) -> list:
    """The Bokeh documents the viewables are rendered in, with their comm (None when served)."""
    docs = {}
    for obj in viewables:
        for model, _ in list(obj._models.values()):
            doc = model.document
            if doc is not None:
                docs.setdefault(id(doc), doc)
    return list(docs.values())


@contextmanager
def hold_documents(*panes):
    """Hold every Bokeh document the panes are rendered in (one per session / notebook output),
    so that all the changes made inside the block reach each browser as one patch."""
    with ExitStack() as stack:
        for doc in _documents(*panes):
            stack.enter_context(pn.io.hold(doc))
        yield


def render(element):
    """The HoloViews (Bokeh) plot of ``element``, from a renderer of its own; ``.state`` is the figure."""
    return BokehRenderer.instance().get_plot(element)


def state_html(state_id: str) -> str:
    """The ``.ap-state`` element's content: the state id the figures show, for tests and readers."""
    sid = html.escape(state_id, quote=True)
    return f'<span class="ap-state-id" data-state="{sid}">{sid}</span>'


def layer_source_data(layer: Layer, columns) -> dict | None:
    """The ``ColumnDataSource.data`` HoloViews draws for ``layer`` (None: no source to fill).

    ``columns`` are the source's current column names (a bar layer also carries its dimension
    columns for the hover).
    """
    if layer.kind == "image":
        l, b, r, t = layer.bounds
        img = layer.array
        if img.dtype.kind == "b":
            img = img.astype(np.int8)
        return dict(x=[l], y=[b], dw=[r - l], dh=[t - b], image=[img])  # row 0 drawn at y = b
    if layer.kind == "bars":
        v = layer.values
        edges = np.arange(len(v) + 1, dtype=np.float64) - 0.5
        data = dict(top=v, left=edges[:-1], right=edges[1:])
        kdim = dimension_sanitizer(str(layer.style.get("kdims", ["x"])[0]))
        for col in columns:
            if col not in data:
                data[col] = edges[:-1] + 0.5 if col == kdim else v
        return data
    if layer.kind == "text":
        return dict(x=np.array([layer.x]), y=np.array([layer.y]), text=np.array([layer.text]))
    return None


class LivePlot:
    """One Bokeh figure kept alive across updates.

    Args:
        frame: the first frame; later frames must have the same layer kinds in the same order.

    Attributes:
        plot: the HoloViews plot that drew the figure (its handles name the Bokeh models).
        leaves: one HoloViews plot per layer, in the frame's order (``leaf.handles["source"]``,
            ``leaf.handles["glyph"]`` are that layer's Bokeh models).
        figure: the Bokeh figure (give it to ``pn.pane.Bokeh``).
        frame: the frame shown now; ``n_updates``: how many frames were pushed.
    """

    def __init__(self, frame: Frame):
        self.plot = render(to_element(frame))
        self.figure = self.plot.state
        if self.figure.sizing_mode == "fixed" and self.figure.width is None:
            self.figure.sizing_mode = None    # sized by frame_width/height; avoids Bokeh's W-1005
        self.leaves = list(self.plot.subplots.values()) if len(frame.layers) > 1 else [self.plot]
        self._kinds = [layer.kind for layer in frame.layers]
        self._hover = list(self.figure.select(type=HoverTool))   # select() walks the model graph
        self.frame = frame
        self.n_updates = 0

    # -- layers --------------------------------------------------------------------------------
    def _update_layer(self, leaf, layer: Layer) -> None:
        glyph = leaf.handles.get("glyph")
        if layer.kind in ("hline", "vline"):
            if glyph.location != layer.pos:
                glyph.location = layer.pos
        elif layer.kind == "vspan":
            if (glyph.left, glyph.right) != (layer.lo, layer.hi):
                glyph.update(left=layer.lo, right=layer.hi)
        else:
            source = leaf.handles["source"]
            source.data = layer_source_data(layer, list(source.data))

    # -- figure settings -----------------------------------------------------------------------
    @staticmethod
    def _set_range(rng, lim, inverted: bool) -> None:
        lo, hi = float(lim[0]), float(lim[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return
        start, end = (hi, lo) if inverted else (lo, hi)
        if (rng.start, rng.end) != (start, end):
            rng.update(start=start, end=end, reset_start=start, reset_end=end)

    @staticmethod
    def _set_ticks(axes, ticks, rotation) -> None:
        if ticks is None:
            return
        positions = [float(p) for p, _ in ticks]
        labels = {int(p): str(s) for p, s in ticks}
        for axis in axes:
            if isinstance(axis.ticker, FixedTicker) and list(axis.ticker.ticks) != positions:
                axis.ticker.ticks = positions
            if axis.major_label_overrides != labels:
                axis.major_label_overrides = labels
            if rotation is not None:
                orient = math.radians(rotation) if rotation else "horizontal"
                if axis.major_label_orientation != orient:
                    axis.major_label_orientation = orient

    def _update_figure(self, frame: Frame) -> None:
        fig = self.figure
        if fig.title is not None and fig.title.text != frame.title:
            fig.title.text = frame.title
        self._set_range(fig.x_range, frame.xlim, False)
        self._set_range(fig.y_range, frame.ylim, frame.invert_yaxis)
        self._set_ticks(fig.xaxis, frame.xticks, frame.xrotation)
        self._set_ticks(fig.yaxis, frame.yticks, None)
        height = frame.opts.get("frame_height")
        if height is not None and fig.frame_height != height:
            fig.frame_height = height
        if frame.tooltips:
            for tool in self._hover:
                if list(tool.tooltips) != list(frame.tooltips):
                    tool.tooltips = list(frame.tooltips)
        if frame.hover_labels is not None and frame.hover_labels != self.frame.hover_labels:
            labels = list(frame.hover_labels)
            for tool in self._hover:
                for fmt in {id(f): f for f in (tool.formatters or {}).values()}.values():
                    if isinstance(fmt, CustomJSHover) and "labels" in fmt.args:
                        fmt.args = {**fmt.args, "labels": labels}

    def update(self, frame: Frame) -> None:
        """Show ``frame`` in place; layers that are the very same objects as before are skipped."""
        if frame is self.frame:
            return
        kinds = [layer.kind for layer in frame.layers]
        if kinds != self._kinds:
            raise ValueError(f"expected a frame with layers {self._kinds} like the first one but "
                             f"found {kinds}")
        for leaf, layer, old in zip(self.leaves, frame.layers, self.frame.layers):
            if layer is not old:
                self._update_layer(leaf, layer)
        self._update_figure(frame)
        self.frame = frame
        self.n_updates += 1


class LiveView:
    """Base of every tab's view: its layout, live figures and one latest-wins update pipeline.

    Subclasses call ``super().__init__(state)``, build their widgets and figures, set
    ``self.layout``, call ``self.start(watch)`` (the state's parameters the figures follow) and
    implement:

    - ``state_id() -> str``: the id of what the state holds now: the parameters the figures depend
      on, read from the state's *result* where there is one, so that it names what is shown;
    - ``show(changed: set[str]) -> str``: write the state's current result into the figures and
      return the state id of exactly what was written (read each parameter once). ``changed``:
      the watched parameters that changed since the last update, coalesced. Skip what did not
      change;
    - ``figures() -> list``: the Bokeh figures to stamp with the state id;
    - optionally ``loading_targets()`` (layouts that show a spinner while the state is busy) and
      ``wants_spinner() -> bool`` (whether the work in progress is worth one).

    Attributes:
        state_pane: the ``.ap-state`` element (the state id the figures show).
        shown_id: that id; ``n_updates``: how many updates ran.
    """

    def __init__(self, state):
        self.state = state
        self.shown_id: str | None = None
        self.n_updates = 0
        self._changed: set[str] = set()
        self._pending: set[int] = set()
        self._pending_lock = threading.Lock()
        self._show_lock = threading.RLock()
        self.state_pane = pn.pane.HTML(state_html(""), css_classes=["ap-state"], margin=(0, 10),
                                       styles={"font-size": "10px", "color": "#94a3b8"})

    def start(self, watch: list[str]) -> None:
        """Follow the state from now on (call once, when the layout is built)."""
        self.stamp(self.state_id())
        self.state.param.watch(self.request_update, [*watch, "busy"])
        self.update()                             # anything that changed while the view was built

    # -- to be provided by the tab -------------------------------------------------------------
    def state_id(self) -> str:
        raise NotImplementedError

    def show(self, changed: set[str]) -> str:
        raise NotImplementedError

    def figures(self) -> list:
        return []

    def loading_targets(self) -> list:
        return []

    def wants_spinner(self) -> bool:
        return True

    # -- the pipeline ----------------------------------------------------------------------------
    def request_update(self, *events) -> None:
        """Ask for the figures to follow the state (any thread; requests are coalesced)."""
        with self._pending_lock:
            self._changed.update(e.name for e in events)
        docs = _documents(self.layout) if hasattr(self, "layout") else []
        served = [doc for doc in docs if doc.session_context is not None]
        if not served:
            self.update()
            if docs:                              # a notebook output: send the direct Bokeh edits
                pn.io.push_notebook(self.layout)
            return
        for doc in served:
            with self._pending_lock:
                if id(doc) in self._pending:
                    continue                      # an update is already queued: it will show this too
                self._pending.add(id(doc))
            doc.add_next_tick_callback(partial(self._update_served, doc))

    def _update_served(self, doc) -> None:
        with self._pending_lock:
            self._pending.discard(id(doc))
        with pn.io.hold(doc):
            self.update()

    def update(self) -> None:
        """Show the state's current result now (the caller holds the document lock, if any)."""
        with self._show_lock:
            with self._pending_lock:
                changed, self._changed = self._changed, set()
            self.stamp(self.show(changed))
            self.n_updates += 1
            busy = bool(self.state.busy) and self.wants_spinner()
            for layout in self.loading_targets():  # on layouts: loading= on a Bokeh pane fails
                if layout.loading != busy:
                    layout.loading = busy

    def stamp(self, sid: str) -> None:
        """Mark every figure and the ``.ap-state`` element as showing state ``sid``."""
        tag = [STATE_TAG + sid]
        for fig in self.figures():
            if list(fig.tags) != tag:
                fig.tags = tag
        if sid != self.shown_id:
            self.state_pane.object = state_html(sid)
            self.shown_id = sid
