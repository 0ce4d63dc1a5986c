"""A served session's browser events are handled one after another, in the order they arrived.

``panel serve --num-threads N`` (``./dev serve`` uses 2) hands each batch of changes from the
browser to a thread pool. Two batches of one widget can then run at the same time on two threads,
and the older one can finish last: after track clicks on 14 then 9, the state would be set to 9
and then to 14, while the slider shows 9; Panel sends nothing back to the browser for a value
it takes for the browser's own, so the page would stay wrong.
``tests/dashboard/common/test_ordered.py`` replays it with a real Panel slider on two threads.
(The CI failure of stop 18 that looked like this had another cause, a timer set from a worker
thread: ``common.live.on_loop_after``.)

:func:`handle_in_order` makes every session's change batches and Bokeh events (taps) take one
lock per document. A batch takes its events from the widget when it holds the lock, so the
thread that runs later always takes the newer events; sessions still run in parallel.

This wraps two methods of ``panel.reactive.Syncable`` (``_change_event``, ``_process_bokeh_event``,
present in Panel 1.5-1.9 as the package's range allows); when a future Panel lacks them it logs
a warning and changes nothing.
"""
from __future__ import annotations

import functools
import logging
import threading
import weakref

__all__ = ["handle_in_order", "session_lock"]

log = logging.getLogger(__name__)

_locks: "weakref.WeakKeyDictionary[object, threading.RLock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()
_WRAPPED = "_ap_in_order"


def session_lock(doc) -> threading.RLock:
    """The lock of one Bokeh document (one browser session); created on first use."""
    with _locks_guard:
        lock = _locks.get(doc)
        if lock is None:
            lock = _locks[doc] = threading.RLock()
        return lock


def _in_order(method):
    @functools.wraps(method)
    def wrapper(self, doc, *args, **kwargs):
        if doc is None:
            return method(self, doc, *args, **kwargs)
        with session_lock(doc):
            return method(self, doc, *args, **kwargs)
    setattr(wrapper, _WRAPPED, True)
    return wrapper


def handle_in_order() -> bool:
    """Serialize each served session's event handling (idempotent). True when installed."""
    from panel.reactive import Syncable

    names = ("_change_event", "_process_bokeh_event")
    missing = [n for n in names if not callable(getattr(Syncable, n, None))]
    if missing:
        log.warning("panel %s has no Syncable.%s: a session's events are not serialized",
                    __import__("panel").__version__, ", ".join(missing))
        return False
    for name in names:
        method = getattr(Syncable, name)
        if not getattr(method, _WRAPPED, False):
            setattr(Syncable, name, _in_order(method))
    return True
