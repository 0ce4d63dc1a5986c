"""The Leak detector with Hugging Face models given to the server (``--hf PATH``): offered next to
the zoo, checked against their own relation from the config (tiny random-init GPT-2 and BERT)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dashboard.leaks import LeakDetector, LeakDetectorView
from dashboard.leaks import plots as leak_plots
from harness import rendered
from harness import only_model_with_class as only

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "attention"))
import _hf_tiny  # noqa: E402  (tests/attention/_hf_tiny.py)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    return str(_hf_tiny.save("gpt2", root / "gpt2")), str(_hf_tiny.save("bert", root / "bert"))


def test_served_models_are_offered_and_checked_against_their_own_relation(served, tmp_path):
    gpt2, bert = served
    ld = LeakDetector(served=[gpt2, bert, str(tmp_path)])         # tmp_path is no model: left out
    assert ld.served == [f"hf:{gpt2}", f"hf:{bert}"]
    assert ld.param.model.objects[-2:] == ld.served
    view = LeakDetectorView(ld)
    assert view.model_select.groups["Served (--hf)"] == ld.served
    with rendered(view.layout):
        ld.param.update(model=f"hf:{gpt2}", seq_len=8)
        assert ld.report.passed and ld.report.allowed_name == "causal"
        assert "Must respect: <b>causal</b>" in leak_plots.description_html(ld.result)
        ld.model = f"hf:{bert}"
        assert ld.report.passed and ld.report.allowed_name == "full"
        ld.allowed = "causal"
        assert not ld.report.passed and ld.report.leaks
        assert "SERVED" in view.description.object


def test_without_served_models_the_picker_is_the_zoo():
    ld = LeakDetector()
    assert ld.served == [] and "Served (--hf)" not in LeakDetectorView(ld).model_select.groups
