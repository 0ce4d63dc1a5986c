"""``common.gcfreeze``: a served process moves its long-lived objects out of the garbage
collector's full walks, once per stage."""
from __future__ import annotations

import gc

from dashboard.common import gcfreeze


def test_freeze_once_freezes_what_is_alive_then_and_only_the_first_time(monkeypatch):
    monkeypatch.setattr(gcfreeze, "_done", set())
    try:
        before = gc.get_freeze_count()
        assert gcfreeze.freeze_once("imports") is True
        frozen = gc.get_freeze_count()
        assert frozen > before and frozen > 10_000       # the modules of torch, Panel, Bokeh ...
        late = [[] for _ in range(1000)]                 # made after the freeze: still collectable
        assert gcfreeze.freeze_once("imports") is False
        assert gc.get_freeze_count() == frozen and gc.is_tracked(late)
        assert gcfreeze.freeze_once("preload") is True and gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()

