"""examples/playground.ipynb runs clean in a fresh kernel of this environment's Python."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "examples" / "playground.ipynb"


@pytest.fixture
def kernel_of_this_python(tmp_path, monkeypatch):
    """A "python3" kernel spec pointing at ``sys.executable`` (the .venv), found first through a
    temporary JUPYTER_PATH: works without any kernel installed globally. The repository comes first
    on the kernel's PYTHONPATH, so that a checkout imports its own ``dashboard`` (not the one an
    editable install elsewhere points at)."""
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (attention-playground)", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    return "python3"


def test_the_playground_notebook_runs_without_errors(kernel_of_this_python, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=kernel_of_this_python, timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "-> PASS" in text and "without the mask: FAIL" in text
    assert "alike: True" in text
    shown = [o for o in outputs if "application/vnd.holoviews_exec.v0+json" in o.get("data", {})]
    assert len(shown) >= 2, "the playground and the plots are displayed as live Panel views"
