"""examples/your_model.ipynb (all-MiniLM-L6-v2, offline) runs clean in a fresh kernel."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "your_model.ipynb"


@pytest.fixture
def kernel_of_this_python(tmp_path, monkeypatch):
    """A "python3" kernel spec pointing at ``sys.executable`` (the .venv), found first through a
    temporary JUPYTER_PATH; the kernel runs offline (HF_HUB_OFFLINE=1) with a temporary cache dir."""
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (attention-playground)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return "python3"


@pytest.mark.slow
def test_the_your_model_notebook_runs_offline_without_errors(kernel_of_this_python, tmp_path):
    pytest.importorskip("transformers")
    from attention.hf import MINILM_INSTALL, loading

    if loading._minilm_zip() is None:
        pytest.skip(f"all-MiniLM-L6-v2 is not installed: {MINILM_INSTALL}")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=kernel_of_this_python, timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "BertModel: 6 layers x 12 heads" in text and "attention 'eager'" in text
    assert "equal to output_attentions: True" in text
    assert "'[CLS]', 'the', 'cat'" in text
    assert "L0H2: previous-token (1.00)" in text
    assert "Model heads: 6 x 12 maps, main map layer 0 head 2" in text
    assert "causal: FAIL (28 forbidden pairs" in text and "full: PASS" in text
    shown = [o for o in outputs if "application/vnd.holoviews_exec.v0+json" in o.get("data", {})]
    assert len(shown) >= 2, "the heads are displayed as live Panel views (the notebook's, ModelHeads)"
    assert (tmp_path / "cache" / "attention-playground" / "all-MiniLM-L6-v2" / "config.json").is_file()
