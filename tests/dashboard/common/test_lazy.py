"""One "build when first shown" idiom for every tab: ``pn.panel(state)`` builds no view until
the output is rendered, then exactly one."""
from __future__ import annotations

import panel as pn
import pytest
from harness import rendered

import dashboard.heads.view as heads_view
import dashboard.leaks.view as leaks_view
import dashboard.playground.view as playground_view
from dashboard.common.lazy import BuiltWhenShown
from dashboard.heads import ModelHeads
from dashboard.leaks import LeakDetector
from dashboard.playground import AttentionPlayground


@pytest.mark.parametrize("state_cls, module, view_name", [
    (AttentionPlayground, playground_view, "PlaygroundView"),
    (ModelHeads, heads_view, "ModelHeadsView"),
    (LeakDetector, leaks_view, "LeakDetectorView"),
])
def test_every_tab_builds_its_view_when_first_rendered(monkeypatch, state_cls, module, view_name):
    view_cls = getattr(module, view_name)
    built = []
    original = view_cls.__init__
    monkeypatch.setattr(view_cls, "__init__", lambda self, state: built.append(1) or original(self, state))
    panel = pn.panel(state_cls())
    assert isinstance(panel, BuiltWhenShown) and built == []
    with rendered(panel) as page:
        assert built == [1]
        assert len(page.doc.roots) == 1
    with rendered(panel):
        assert built == [1]                       # rendered again: the same view, not a new one
