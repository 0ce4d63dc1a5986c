"""``LiveView``: the one update pipeline every tab's view uses.

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

Each update stamps a state id (what the figures show, e.g. ``T=16 H=4 ... q=7``) on the view's
``.ap-state`` element and on every live figure (``tags=["ap-state:<id>"]``), so a test can prove
that every figure shows the same state and that it matches the controls. A figure may carry only
the part of the id it shows (``figure_state``, e.g. the Playground's mask: ``T=16 causal=1
text=-``): its pairs must then all be in the view's id. A figure whose part did not change keeps
its tag: in BokehJS any change of a plot model (a new tag too) repaints every painter of the
figure (``PlotView``: ``model.change`` -> ``request_repaint``).

Nothing is shared between sessions: the figures are ``common.figures.LivePlot``s drawn by a
HoloViews renderer of their own.
"""
from __future__ import annotations

import html
import re
import threading
import time
from contextlib import ExitStack, contextmanager
from functools import partial

import panel as pn

from .ordered import session_lock
from .panes import page_scripts

__all__ = ["LiveHTML", "LiveView", "STATE_TAG", "busy_html", "hold_documents", "on_loop_after",
           "part_of_state", "state_html"]

MIN_INTERVAL = 0.2
"""Seconds between two updates of one served page: requests in between join the next one.

Computing a small state takes milliseconds, but a browser needs far longer to apply a patch that
rewrites a dozen figures (and to lay the page out again when H changes): a burst of 40 key presses
sent as 40 patches kept a page busy for half a minute. With this gap a burst costs a handful of
patches, and the page still ends on the latest state; a single change is sent at once."""

SPINNER_DELAY = 0.25
"""Seconds a served computation runs before its busy badge is sent (work that ends sooner shows
none): a badge that comes and goes within a quarter second only flickers, and at T=256 its two
page updates ran while the server computed, on the same two cores, for every change."""

STATE_TAG = "ap-state:"
"""Prefix of the state id in every live figure's ``tags``."""


def part_of_state(sid: str, keys) -> str:
    """The ``key=value`` pairs of the state id ``sid`` whose key is in ``keys``, in ``sid``'s order
    (values may hold spaces: a pair runs to the next `` key=``)."""
    pairs = re.findall(r"([A-Za-z_]+)=(.*?)(?= [A-Za-z_]+=|$)", sid)
    return " ".join(f"{k}={v}" for k, v in pairs if k in keys)


class LiveHTML(pn.pane.HTML):
    """An HTML pane whose content changes on every update (state id, verdict, numbers).

    Panel's HTML pane resends its ``stylesheets`` (new stylesheet models) with every new text;
    in the browser a ``stylesheets`` change lays the whole page out again and repaints every
    figure (about 0.3 s per update at T=16 in chromium). Here a new text sends the text only.
    (Only for panes whose ``object`` is a string.)
    """

    def _update(self, ref, model) -> None:
        # only the text: the pane's other properties (stylesheets, computed from the theme, ~7 ms
        # a call) are those of its first rendering and do not change with the content
        props = self._process_param_change({"object": self.object})
        if model.text != props["text"]:
            model.text = props["text"]


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


BUSY_CSS = """
.ap-busy-badge { position: fixed; top: 64px; right: 24px; z-index: 1000; display: flex;
  align-items: center; gap: 8px; padding: 6px 12px; border-radius: 16px; background: #1e293b;
  color: white; font: 13px system-ui, sans-serif; box-shadow: 0 2px 8px rgba(0,0,0,.25); }
.ap-busy-badge .ap-spin { width: 12px; height: 12px; border: 2px solid #94a3b8;
  border-top-color: white; border-radius: 50%; animation: ap-spin .8s linear infinite; }
@keyframes ap-spin { to { transform: rotate(360deg); } }
"""


def busy_html(busy: bool) -> str:
    """The busy badge's content: a floating "Computing…" pill while busy, nothing otherwise."""
    if not busy:
        return ""
    return ('<div class="ap-busy-badge" data-busy="1" role="status" aria-live="polite">'
            '<span class="ap-spin"></span>Computing…</div>')


def state_html(state_id: str) -> str:
    """The ``.ap-state`` element's content: the state id the figures show, for tests and readers."""
    sid = html.escape(state_id, quote=True)
    return f'<span class="ap-state-id" data-state="{sid}">{sid}</span>'


def on_loop_after(doc, callback, delay_ms: int) -> None:
    """Run ``callback`` on the session's loop after ``delay_ms`` (0: on its next tick), from any
    thread.

    Only ``add_next_tick_callback`` may be called from another thread: Bokeh's
    ``add_timeout_callback`` ends in the loop's ``call_later``, which from a worker thread files
    the timer without waking the loop, or loses it. That lost the last update of a burst of
    clicks on the query slider (the page kept showing query 14 after a click on 9, for good;
    CI run of stop 18). A timeout is therefore set from the loop itself, one tick later."""
    if delay_ms <= 0:
        doc.add_next_tick_callback(callback)
    else:
        doc.add_next_tick_callback(partial(doc.add_timeout_callback, callback, delay_ms))


class _BusyStill:
    """The pseudo-event of a computation still running ``SPINNER_DELAY`` after it began."""

    name = "busy-still"


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
        self._last_sent = 0.0
        self.state_pane = LiveHTML(state_html(""), css_classes=["ap-state"], margin=(0, 10),
                                       styles={"font-size": "10px", "color": "#94a3b8"})
        # the busy indicator of views that use it (``busy_badge() -> True``): a floating pill whose
        # text changes, unlike Panel's ``loading`` (a css_classes change: in the browser each one
        # lays the whole page out again and repaints every figure, 0.5 s per layout at T=256)
        self.busy_pane = LiveHTML("", css_classes=["ap-busy"], stylesheets=[BUSY_CSS],
                                      margin=0, width=0, height=0)
        # the page's scripts (fast slider clicks; notebook input never held back for good):
        # put it in the layout next to busy_pane
        self.page_scripts = page_scripts()

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

    def tags_of(self, figure) -> list[str]:
        """More tags for ``figure`` next to its state id (e.g. where a mosaic's cells are)."""
        return []

    def figure_state(self, figure, sid: str) -> str:
        """The part of the state id ``sid`` that ``figure`` shows (``part_of_state``); all of it
        unless a tab says less. Say less only for what ``show`` leaves alone: a figure that is
        not redrawn when a key changes must not carry that key."""
        return sid

    def wants_spinner(self) -> bool:
        return True

    def busy_badge(self) -> bool:
        """Show busy work with ``busy_pane`` (put it in the layout) instead of ``loading_targets``."""
        return False

    # -- the pipeline ----------------------------------------------------------------------------
    def request_update(self, *events) -> None:
        """Ask for the figures to follow the state (any thread; requests are coalesced)."""
        if events and {e.name for e in events} == {"busy"} and not self.wants_spinner() \
                and not any(layout.loading for layout in self.loading_targets()) \
                and not self.busy_pane.object:
            return            # quick work shows no spinner: nothing to send (and no gap to wait)
        docs = _documents(self.layout) if hasattr(self, "layout") else []
        served = [doc for doc in docs if doc.session_context is not None]
        if served and self.busy_badge() and events and {e.name for e in events} == {"busy"} \
                and self.state.busy and not self.busy_pane.object:
            for doc in served:              # the badge only if the work is still running then
                on_loop_after(doc, self._busy_later, int(SPINNER_DELAY * 1000))
            return
        with self._pending_lock:
            self._changed.update(e.name for e in events)
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
                wait = self._last_sent + MIN_INTERVAL - time.monotonic()
            # the page got an update a moment ago: wait for the rest of the gap
            on_loop_after(doc, partial(self._update_served, doc), int(wait * 1000) + 1 if wait > 0 else 0)

    def _busy_later(self) -> None:
        if self.state.busy and not self.busy_pane.object:
            self.request_update(_BusyStill())

    def _update_served(self, doc) -> None:
        with self._pending_lock:
            self._pending.discard(id(doc))
            figures = bool(self._changed - {"busy", "busy-still"})
        with session_lock(doc), pn.io.hold(doc):    # the state is not written meanwhile
            self.update()
        if figures:           # only a patch that rewrote figures keeps the next one waiting: the
            self._last_sent = time.monotonic()     # spinner going on must not delay the result

    def update(self) -> None:
        """Show the state's current result now (the caller holds the document lock, if any)."""
        with self._show_lock:
            with self._pending_lock:
                changed, self._changed = self._changed, set()
            self.stamp(self.show(changed))
            self.n_updates += 1
            busy = bool(self.state.busy) and self.wants_spinner()
            if self.busy_badge():
                if self.busy_pane.object != busy_html(busy):
                    self.busy_pane.object = busy_html(busy)
                return
            for layout in self.loading_targets():  # on layouts: loading= on a Bokeh pane fails
                if layout.loading != busy:
                    layout.loading = busy

    def stamp(self, sid: str) -> None:
        """Mark every figure and the ``.ap-state`` element as showing state ``sid``."""
        for fig in self.figures():
            tag = [STATE_TAG + self.figure_state(fig, sid), *self.tags_of(fig)]
            if list(fig.tags) != tag:
                fig.tags = tag
        if sid != self.shown_id:
            self.state_pane.object = state_html(sid)
            self.shown_id = sid
