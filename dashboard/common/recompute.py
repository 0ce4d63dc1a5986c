"""``Recomputing``: the one "recompute on change" idiom of every tab's state (param + threads only).

A tab's state is a ``param.Parameterized`` whose inputs are watched; each change calls
:meth:`Recomputing.refresh`, which recomputes from the parameters' *current* values. Latest wins:
while one thread computes, changes arriving from other threads only mark the state dirty and
return at once; the computing thread loops until no change is left. A burst of 40 slider steps
served by a thread pool therefore costs one or two computations, not 40, and the last result
always belongs to the final parameter values. Used from one thread (tests, notebooks, scripts)
it is plain synchronous recomputation: after ``state.x = 1`` the result is current.

No Panel, HoloViews or Bokeh here: states stay headless.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import param

__all__ = ["Recomputing"]


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
        self.n_refreshes = 0
        super().__init__(**params)
        if self._inputs:
            self.param.watch(self._on_inputs, list(self._inputs))

    def _on_inputs(self, *events) -> None:
        """Parameter watcher; subclasses may validate the batch of ``events`` first."""
        self.refresh()

    def refresh(self) -> None:
        """Bring the results up to date with the current parameters (latest wins, see module doc)."""
        with self._dirty_lock:
            self._dirty = True
        while True:
            if not self._compute_lock.acquire(blocking=False):
                return                       # another thread computes and will see the dirty flag
            try:
                with self._dirty_lock:
                    if not self._dirty:
                        return
                    self._dirty = False
                self.n_refreshes += 1
                self._recompute()
            finally:
                self._compute_lock.release()
            with self._dirty_lock:           # a change that came while we computed: go again
                if not self._dirty:
                    return

    def _recompute(self) -> None:
        raise NotImplementedError

    @contextmanager
    def _working(self):
        """``busy`` is True inside the block."""
        with param.edit_constant(self):
            self.busy = True
        try:
            yield
        finally:
            with param.edit_constant(self):
                self.busy = False
