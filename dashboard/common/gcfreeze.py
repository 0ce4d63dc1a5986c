"""Long-lived objects out of the way of Python's garbage collector, in a served process.

A full (generation 2) collection walks every object the process tracks. A served app holds
hundreds of thousands (torch, Panel, Bokeh, HoloViews and their modules; more with each session),
and such a collection stops the server's one event loop for all sessions at once: measured here
127-423 ms, every few seconds of use, and one seed change in nine at T=16 was felt after
~700 ms instead of ~250. ``gc.freeze()`` moves every object alive at that moment into a permanent
generation that collections skip.

Freeze only what lives as long as the process: call it before the first session is built, never
while sessions are open (a frozen object is never collected, so a closed session's reference
cycles would stay in memory for good).
"""
from __future__ import annotations

import gc
import logging
import threading

__all__ = ["freeze_once"]

log = logging.getLogger(__name__)

_done: set[str] = set()
_lock = threading.Lock()


def freeze_once(stage: str) -> bool:
    """Collect, then freeze every object alive now, the first time ``stage`` is named in this
    process. Returns whether it did."""
    with _lock:
        if stage in _done:
            return False
        _done.add(stage)
    gc.collect()
    gc.freeze()
    log.info("froze the objects alive after %s: %d in all", stage, gc.get_freeze_count())
    return True
