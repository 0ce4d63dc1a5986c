"""examples/tour.ipynb runs clean in a fresh kernel, shows a figure at every step, and renders to
offline HTML (scripts/render_notebooks.py, the docs' copy)."""
from __future__ import annotations

import importlib.util

import pytest

from _jupyter import REPO_ROOT

pytestmark = pytest.mark.slow

TOUR = REPO_ROOT / "examples" / "tour.ipynb"
EXEC_MIME = "application/vnd.holoviews_exec.v0+json"


def _render_module():
    spec = importlib.util.spec_from_file_location("render_notebooks", REPO_ROOT / "scripts" / "render_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def executed():
    return _render_module().execute(TOUR)


def test_the_tour_runs_and_shows_every_step(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "largest weight on a future key: causal 0.0" in text
    assert "max change, causal : 0.0" in text
    assert "leaks, the largest: [Leak(out_pos=0, in_pos=1" in text      # the planted look-ahead
    assert "previous-token" in text and "induction" in text
    figures = [c for c in code[1:] if any(EXEC_MIME in o.get("data", {}) for o in c.outputs)]
    assert len(figures) >= 8, "every step after the set-up shows a figure or a live view"


def test_the_tour_renders_to_offline_html(executed):
    render = _render_module()
    html = render.to_html(executed)
    assert render.remote_references(html) == []
    assert len(html) < 8_000_000
