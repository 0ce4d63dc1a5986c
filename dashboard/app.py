"""``panel serve dashboard/app.py``: the Attention Playground app.

The app is a ``pn.Tabs`` built from ``TABS``, a list of ``(title, factory)`` entries; the
playground is the first tab. Each tab is a package (``dashboard/playground``, ``heads``,
``leaks``; see docs/ARCHITECTURE.md for how to add one) whose displayable state builds its view
when the tab is first shown. Adding a tab to the app is one line::

    TABS.append(("Leak detector", lambda: served(LeakDetector())))

Every browser session runs this module anew, so each visitor gets their own states
(independent sessions).

Hugging Face models to offer in the "Model heads" tab (next to the trained model, random weights
and all-MiniLM-L6-v2) are given as script arguments, one ``--hf PATH`` each (a local directory
with config.json and model.safetensors)::

    ./dev serve --args --hf ./my-bert --hf ./my-gpt2
    panel serve dashboard/app.py --args --hf ./my-bert --hf ./my-gpt2

Each is loaded once per server process, the first time a session picks it. The Leak detector
offers them too (group "Served (--hf)"), checked against their own relation (causal or full, from
their config). Served, the tabs sit in a ``BootstrapTemplate``;
imported (tests, notebooks) ``build_app()`` returns the bare tabs.

Hooks for browser tests (stable CSS classes; Bokeh puts ``css_classes`` on the component's host
element, and playwright locators see through the open shadow roots):

==========================  ==================================================================
``.ap-tabs``                the app's tabs (``pn.Tabs``); the playground is the first tab
``.ap-playground``          the playground view (a ``pn.Row``: sidebar + main column)
``.ap-controls``            the parameter widgets (``pn.Param``)
``.ap-seq-len``             sequence length T (``IntInput``: any number may be typed; the server
                            clamps it to 1..1024 and says so in ``.ap-input-message``; disabled
                            while text is set); ``.ap-seq-len-slider`` the same T as a slider
``.ap-num-heads``           heads H (``IntSlider``, throttled)
``.ap-head-dim``            head dimension D (``IntSlider``)
``.ap-causal``              the causal toggle (``Checkbox``; ``input[type=checkbox]`` inside)
``.ap-prefix``              prefix L (``IntSlider``)
``.ap-query``               the selected query (``IntSlider``)
``.ap-view-head``           head of the step-by-step view (``IntSlider``)
``.ap-seed``                random seed (``IntInput``; out of range: clamped, said on the page)
``.ap-input-message``       why a typed value was not used as typed (empty when all is fine)
``.ap-text``                optional sentence (``TextInput``; commits on Enter)
``.ap-position-scale``      position signal (``FloatSlider``)
``.ap-download``            "Download as HTML" (``FileDownload``; builds the export in memory)
``.ap-heads``               the heads row (``Row``): ``.ap-colorbar`` + ``.ap-heads-map``
``.ap-heads-map``           every head's map in one figure (a fixed 706 x 364 px frame: four to a
                            row up to 8 heads, more columns above), each labelled "head h"
                            (a Text glyph: as many labels as H); its tag ``ap-heads:H=.. T=..
                            stride=.. ncols=..`` says where head h's key k / query q is drawn
                            (x = (h % ncols)*stride + k, y = (h // ncols)*stride + q); a click in
                            a row selects that query. (The exported HTML has one figure per head:
                            ``.ap-head-heatmap`` / ``.ap-head-<h>``.)
``.ap-query-plot``          heads x keys for the selected query; title "Query i ..."; a click in
                            a row selects the head of the step-by-step view
``.ap-single-token``        the step-by-step view: ``.ap-steps`` (steps 1-4 for the selected query and
                            head as four bands over one key axis; hover: step, key, value) and
                            ``.ap-step-output`` (step 5, the output over the head's dimensions)
``.ap-mask``                the keep-mask image
``.ap-verdict-pane``        holds ``.ap-badge`` with ``data-verdict="PASS"`` or ``"FAIL"``
                            (text PASS / FAIL; also ``.ap-pass`` / ``.ap-fail``)
``.ap-stats-pane``          numbers: ``[data-stat=max-future]``, ``[data-stat=max-diff]``
``.ap-invariance-chart``    per-position output change with L marked
``.ap-caveat``              the "attention is not explanation" note
``.ap-model-heads``         the "Model heads" tab (hooks ``.ap-th-*``: ``dashboard/heads/view.py``)
``.ap-state``               the state id every figure of the view shows (``data-state`` on
                            ``.ap-state-id``; each live figure has ``tags=["ap-state:<id>"]``
                            or only the part of the id it draws, ``LiveView.figure_state``)
==========================  ==================================================================

The widget *values* can also be read from the server side in tests through
``AttentionPlayground`` (e.g. serve ``build_app`` with ``pn.serve`` and keep the object).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable, Sequence

import panel as pn
import torch
from tornado.ioloop import IOLoop

from dashboard.common.gcfreeze import freeze_once
from dashboard.common.lazy import BuiltWhenShown
from dashboard.common.ordered import handle_in_order, session_lock
from dashboard.heads import ModelHeads, preload_hf
from dashboard.leaks import LeakDetector
from dashboard.playground import AttentionPlayground

__all__ = ["SERVED_MODELS", "TABS", "TITLE", "build_app", "keep_until_connected", "preload_after_first_page", "served",
           "served_models", "serve_app"]

TITLE = "Attention Playground"


def served_models(argv: Sequence[str] | None = None) -> tuple[str, ...]:
    """The ``--hf PATH`` (or ``--hf=PATH``) script arguments, in order (``sys.argv`` by default:
    ``panel serve dashboard/app.py --args --hf PATH`` puts them there). Other arguments are left
    alone."""
    args = list(sys.argv[1:] if argv is None else argv)
    found = []
    for i, arg in enumerate(args):
        if arg == "--hf" and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--hf="):
            found.append(arg[len("--hf="):])
    return tuple(p for p in found if p)


SERVED_MODELS = served_models()
"""Hugging Face model directories this server offers in the "Model heads" tab."""

def served(state):
    """``state``'s view for a served session: its computations run in a worker thread, so the
    session's events are never queued behind one (``Recomputing.compute_in_background``); it
    writes the state's parameters under the session's lock, which the session's event handling
    holds too (``common.ordered``)."""
    doc = pn.state.curdoc
    if doc is not None:
        state.use_lock(session_lock(doc))
    state.compute_in_background()
    return state.__panel__()


def when_shown(make_state):
    """A tab whose *state* is made (and computes its first result) only when the tab is first
    shown: a visitor who never opens it costs nothing (the Model heads and Leak detector states
    computed 0.6 s and 1 s of CPU in every new session's page build before)."""
    return BuiltWhenShown(lambda: served(make_state()))


# (title, factory): each factory returns a fresh Panel component for one session.
TABS: list[tuple[str, Callable[[], pn.viewable.Viewable]]] = [
    ("Playground", lambda: served(AttentionPlayground())),
    ("Model heads", lambda: when_shown(lambda: ModelHeads(served=SERVED_MODELS))),
    ("Leak detector", lambda: when_shown(lambda: LeakDetector(served=SERVED_MODELS))),
]


def build_app() -> pn.Tabs:
    """The app's tabs, one per ``TABS`` entry (only the visible tab is rendered)."""
    return pn.Tabs(*[(title, factory()) for title, factory in TABS], dynamic=True,
                   css_classes=["ap-tabs"], sizing_mode="stretch_width")


def serve_app() -> pn.viewable.Viewable:
    """``build_app()`` in a ``BootstrapTemplate`` (used when served).

    Every tab's view carries the page's scripts (``LiveView.page_scripts``: fast clicks on a
    slider's track are let through; Bokeh's sliders drop a click within 300 ms of the last one).

    No template busy indicator: each tab shows its own (``common.live``: a floating badge).

    Not ``FastListTemplate``: its design fetches a Google font, a network request (and a console
    error) on machines without internet. The Bootstrap template's resources are all served
    locally.
    """
    return pn.template.BootstrapTemplate(
        title=TITLE, main=[build_app()], header_background="#1e293b",
        busy_indicator=None,    # its spinner is a css_classes change on every event: in the
    )                           # browser each one lays the page out and repaints every figure


def keep_until_connected(doc=None, max_wait_s: float = 600.0) -> None:
    """Keep this session alive until its browser has connected (at most ``max_wait_s``).

    Bokeh discards a session nobody is connected to once ``--unused-session-lifetime`` has passed
    (15 s by default), and it counts a session whose page is still loading as unused. When many
    pages open at once on a busy server, the page's WebSocket arrives later than that: the session
    was dropped, and Bokeh builds the whole app *again* for it, on the already busy server (measured:
    ten pages at once, each opened twice), and the rebuilt document skips Panel's page-time patch of
    its stylesheets, which then point at cdn.holoviz.org (failed requests offline). Blocking the
    session's expiration from its creation until the page's ``onload`` fixes both; a page that never
    connects is released after ``max_wait_s`` and then expires as usual. A closed page's session
    still goes after the configured lifetime (the memory tests run with 0.5 s).
    """
    doc = doc or pn.state.curdoc
    if doc is None or doc.session_context is None:
        return
    held = {"session": None, "connected": False}

    def block() -> None:                     # next tick: the ServerSession exists by then
        session = getattr(doc.session_context, "_session", None)
        if session is None or held["connected"] or held["session"] is not None:
            return
        held["session"] = session
        session.block_expiration()
        IOLoop.current().call_later(max_wait_s, release)

    def release() -> None:
        held["connected"] = True
        session, held["session"] = held["session"], None
        if session is not None and session.expiration_blocked:
            session.unblock_expiration()

    doc.add_next_tick_callback(block)
    pn.state.onload(release)


def preload_after_first_page(environ=None) -> bool:
    """Start loading all-MiniLM-L6-v2 in the background once the first page of this server process
    has loaded (``pn.state.onload``), so that a visitor who picks it in the "Model heads" tab does
    not wait for ``import transformers`` and the weights (~6 CPU-s, ~200 MB of RSS per process;
    issue 11: first pick <= 5 s). After the first page, not at import: the first visitor's page
    build does not compete with it for the GIL. Once per process (``preload_hf`` keeps one thread).

    ``AP_PRELOAD=0`` in the environment turns it off (the test suite's servers, memory-tight hosts);
    the tab then starts the same preload when it is first shown. Returns whether it is on.
    """
    env = os.environ if environ is None else environ
    if env.get("AP_PRELOAD", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    pn.state.onload(_start_preload)
    return True


def _start_preload() -> None:
    thread = preload_hf()
    if thread is not None:        # then the model's objects (transformers, ~200 000) out of the
        threading.Thread(target=_freeze_after, args=(thread,), daemon=True,   # GC's walks too
                         name="freeze after preload").start()


def _freeze_after(thread: threading.Thread) -> None:
    """Once the preload is done, freeze what is alive (``common.gcfreeze``). The sessions open at
    that moment are frozen with the model: their reference cycles stay in memory after they close
    (usually the first visitor's page, ~6 MB; once per process). Not freezing would leave the
    model's ~200 000 objects in every full collection (pauses of 150-300 ms, measured)."""
    thread.join()
    freeze_once("preload")


if pn.state.served:
    # Sessions may share a thread pool (``--num-threads``): one intra-op thread per computation
    # avoids oversubscribing the cores (measured: tiny matmuls went from 15 us to 16 ms with 2).
    torch.set_num_threads(1)
    handle_in_order()             # one session's events one after another, even in a thread pool
    freeze_once("imports")        # before the first session: the modules out of the GC's walks
    pn.extension(notifications=True)
    keep_until_connected()
    serve_app().servable(title=TITLE)
    preload_after_first_page()
