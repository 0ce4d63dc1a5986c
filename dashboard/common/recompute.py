"""``Recomputing``: the one "recompute on change" idiom of every tab's state (param + threads only).

A tab's state is a ``param.Parameterized`` whose inputs are watched; each change calls
:meth:`Recomputing.refresh`, which recomputes from the parameters' *current* values. Latest wins:
while one thread computes, changes arriving from other threads only mark the state dirty and
return at once; the computing thread loops until no change is left. A burst of 40 slider steps
served by a thread pool therefore costs one or two computations, not 40, and the last result
always belongs to the final parameter values. Used from one thread (tests, notebooks, scripts)
it is plain synchronous recomputation: after ``state.x = 1`` the result is current.

Served, Panel hands a session's events to its handlers one after another, so a computation run
inside the handler delays every later event (40 slider steps meant 40 computations in a row).
``compute_in_background()`` (the served app calls it) makes ``refresh()`` return at once: one
worker thread per state computes from the latest parameters until nothing is left to do.

Parameters are written under one lock (``use_lock``; the served app passes the session's lock,
which its event handling holds too, ``common.ordered``): param's watcher machinery keeps per-object
state (``_BATCH_WATCH``, queued events) that two threads writing the same object at once can
corrupt, and then a change reaches no watcher. The worker holds the lock while it runs
``_recompute`` except inside ``_working()`` (the slow part), where input may keep arriving.

No Panel, HoloViews or Bokeh here: states stay headless.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import param

__all__ = ["Recomputing"]

log = logging.getLogger(__name__)


class Recomputing(param.Parameterized):
    """Base of a tab's state: watches ``_inputs`` and recomputes, latest wins.

    Subclasses list the watched parameter names in ``_inputs`` and implement ``_recompute()``
    (read the current parameters, set the results with ``param.edit_constant``). Wrap slow work
    in ``with self._working():`` so that ``busy`` drives the views' loading indicators.
    ``n_refreshes`` counts computations actually run.
    """

    busy = param.Boolean(default=False, constant=True, precedence=-1, doc="""
        True while the state recomputes (drives the loading indicator).""")

    _inputs: tuple[str, ...] = ()

    def __init__(self, **params):
        self._compute_lock = threading.Lock()
        self._dirty_lock = threading.Lock()
        self._dirty = False
        self._background = False
        self._worker: threading.Thread | None = None
        self._param_lock = threading.RLock()
        self._held = threading.local()           # how deep this thread holds it in _recompute
        self.n_refreshes = 0
        super().__init__(**params)
        if self._inputs:
            self.param.watch(self._on_inputs, list(self._inputs))

    def _on_inputs(self, *events) -> None:
        """Parameter watcher; subclasses may validate the batch of ``events`` first."""
        self.refresh()

    def use_lock(self, lock) -> None:
        """Write parameters under ``lock`` (an ``RLock``; served: the session's, see module doc)."""
        self._param_lock = lock

    @contextmanager
    def locked(self):
        """Hold the parameter lock (writes from a thread of our own, inside ``_working``)."""
        with self._param_lock:
            yield

    def compute_in_background(self, on: bool = True) -> None:
        """From now on ``refresh()`` returns at once and a worker thread computes (served apps)."""
        self._background = on

    def refresh(self) -> None:
        """Bring the results up to date with the current parameters (latest wins, see module doc)."""
        with self._dirty_lock:
            self._dirty = True
            if self._background:
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._work, daemon=True,
                                                    name=f"{type(self).__name__}-recompute")
                    self._worker.start()
                return
        self._drain()

    def _work(self) -> None:
        """The worker thread: compute until no change is left; a failure is logged, not lost."""
        while True:
            try:
                self._drain()
            except Exception:                    # noqa: BLE001  (the thread has no caller to raise to)
                log.exception("%s: recomputing failed", type(self).__name__)
            with self._dirty_lock:
                if not self._dirty:
                    self._worker = None
                    return

    def _drain(self) -> None:
        while True:
            if not self._compute_lock.acquire(blocking=False):
                return                       # another thread computes and will see the dirty flag
            try:
                with self._dirty_lock:
                    if not self._dirty:
                        return
                    self._dirty = False
                self.n_refreshes += 1
                with self._param_lock:
                    depth = getattr(self._held, "depth", 0)
                    self._held.depth = depth + 1
                    try:
                        self._recompute()
                    finally:
                        self._held.depth = depth
            finally:
                self._compute_lock.release()
            with self._dirty_lock:           # a change that came while we computed: go again
                if not self._dirty:
                    return

    def _recompute(self) -> None:
        raise NotImplementedError

    @contextmanager
    def _working(self):
        """``busy`` is True inside the block; inside ``_recompute`` the block runs without the
        parameter lock (wrap a parameter write in there in ``with self.locked():``)."""
        with self.locked(), param.edit_constant(self):
            self.busy = True
        depth = getattr(self._held, "depth", 0)
        if depth:                          # released once: a _working() nested in this one keeps it so
            self._held.depth = 0
            self._param_lock.release()
        try:
            yield
        finally:
            if depth:
                self._param_lock.acquire()
                self._held.depth = depth
            with self.locked(), param.edit_constant(self):
                self.busy = False
