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

It also closes a second race, in Panel's echo check (``Syncable._update_model``): while a batch
from the browser is handled, Panel must not send its own values back, and it recognises them by
*identity* (``value is event_value``). A select's value goes out as its label, another string
object equal to the one that came in, so the check fails; if the browser's next value is already
pending, Panel then takes the handled (older) value for a newer one from Python: it sends it to the
page, which moves the list back, and drops the pending newer value. Eight ArrowDown presses in the
Leak detector's model list ended one to four models short (1 run in 8 with one core busy, and in a
full test run: ``test_fast_arrow_keys_through_the_model_list_end_on_the_ninth_model``; with Panel's 50 ms
debounce taken off the list too, 7 runs in 10). Sliders pass their value through as the same
object, so they were spared. :func:`handle_in_order` therefore also makes that check compare by
value: a value equal to the one being handled is the browser's own and is not sent back.

This wraps three methods of ``panel.reactive.Syncable`` (``_change_event``, ``_process_bokeh_event``,
``_update_model``, present in Panel 1.5-1.9 as the package's range allows); when a future Panel
lacks them it logs a warning and changes nothing.
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


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:                    # arrays and the like: no plain truth value
        return False


def _echo_by_value(method):
    @functools.wraps(method)
    def wrapper(self, events, msg, root, model, doc, comm):
        handled = getattr(self, "_in_process__events", {}).get(doc)
        if handled:
            for attr, value in msg.items():
                if attr in handled and value is not handled[attr] and _equal(value, handled[attr]):
                    msg[attr] = handled[attr]     # the browser's own object: Panel drops the echo
        return method(self, events, msg, root, model, doc, comm)
    setattr(wrapper, _WRAPPED, True)
    return wrapper


_WRAPPERS = {"_change_event": _in_order, "_process_bokeh_event": _in_order,
             "_update_model": _echo_by_value}


def handle_in_order() -> bool:
    """Serialize each served session's event handling, and recognise the browser's own values by
    equality (idempotent). True when installed."""
    from panel.reactive import Syncable

    missing = [n for n in _WRAPPERS if not callable(getattr(Syncable, n, None))]
    if missing:
        log.warning("panel %s has no Syncable.%s: a session's events are not serialized",
                    __import__("panel").__version__, ", ".join(missing))
        return False
    for name, wrap in _WRAPPERS.items():
        method = getattr(Syncable, name)
        if not getattr(method, _WRAPPED, False):
            setattr(Syncable, name, wrap(method))
    return True
