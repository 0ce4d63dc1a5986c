"""The verification script ``python -m attention.verify``: exit codes, table, JSON, --help."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import attention.verify.__main__ as cli
from attention import MultiHeadAttention

ROOT = Path(__file__).resolve().parents[2]


def _start(*args: str) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1"}        # two runs at once: don't oversubscribe
    return subprocess.Popen([sys.executable, "-m", "attention.verify", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run(*args: str) -> subprocess.CompletedProcess:
    return _finish(_start(*args))


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    """The table run and the --json run, started together (each takes several seconds)."""
    procs = {"table": _start(), "json": _start("--json")}
    return {name: _finish(proc) for name, proc in procs.items()}


@pytest.fixture
def table_run(runs):
    return runs["table"]


@pytest.fixture
def json_run(runs):
    return runs["json"]


def test_script_exits_zero_and_prints_a_table_with_a_summary(table_run):
    assert table_run.returncode == 0, table_run.stdout + table_run.stderr
    out = table_run.stdout
    assert "max future w" in out and "PASS" in out and "FAIL (expected)" in out
    assert "check has no teeth" not in out
    summary = out.strip().splitlines()[-1]
    assert "causal cases PASS" in summary and "no look-ahead proven" in summary


def test_json_output_parses_and_every_causal_case_passes(json_run):
    assert json_run.returncode == 0, json_run.stderr
    report = json.loads(json_run.stdout)
    assert report["passed"] is True and report["dtype"] == "float32"
    causal = [c for c in report["cases"] if c["kind"] == "causal"]
    controls = [c for c in report["cases"] if c["kind"] == "control"]
    assert causal and controls, "the negative controls must be part of the run"
    for c in causal:
        assert c["expected"] and c["weight_ok"] and c["invariance_ok"], c
        assert c["max_future_weight"] <= 1e-6 and c["max_output_diff"] <= report["atol"]
    for c in controls:
        assert c["expected"], c
        assert c["max_future_weight"] > 1e-6 and c["max_output_diff"] > report["atol"]


def test_json_grid_covers_the_required_configurations(json_run):
    causal = [c for c in json.loads(json_run.stdout)["cases"] if c["kind"] == "causal"]
    assert 1 in {c["T"] for c in causal} and max(c["T"] for c in causal) > 8
    heads = {c["heads"] for c in causal}
    assert min(heads) == 1 and max(heads) == 8
    assert {c["batch"] > 1 for c in causal} == {True, False}
    assert {c["padding"] for c in causal} == {True, False}
    assert any(c["kv_heads"] == c["heads"] for c in causal), "MHA"
    assert any(1 < c["kv_heads"] < c["heads"] for c in causal), "GQA"
    assert any(c["kv_heads"] == 1 < c["heads"] for c in causal), "MQA"


def test_json_summary_matches_the_table_run(json_run, table_run):
    assert json.loads(json_run.stdout)["summary"] == table_run.stdout.strip().splitlines()[-1]


def test_help_explains_the_script():
    run = _run("--help")
    assert run.returncode == 0
    assert "--json" in run.stdout and "Exit status" in run.stdout and "control" in run.stdout


# ---------------------------------------------------------------------------------------------
# The exit code is non-zero when the checks fail (in-process, with a broken model patched in)


class _IgnoresIsCausal(MultiHeadAttention):
    """A model with a look-ahead bug: it drops ``is_causal`` on the floor."""

    def forward(self, *args, is_causal=False, **kwargs):
        return super().forward(*args, **kwargs)


class _AlwaysCausal(MultiHeadAttention):
    """A model that is causal even when asked not to be: the unmasked controls cannot fail."""

    def forward(self, *args, is_causal=False, **kwargs):
        return super().forward(*args, is_causal=True, **kwargs)


@pytest.fixture
def small_grid(monkeypatch):
    monkeypatch.setattr(cli, "_SEQ_LENS", (1, 2, 8), raising=False)   # keep the in-process runs fast


def test_main_returns_1_when_the_model_looks_ahead(monkeypatch, capsys, small_grid):
    monkeypatch.setattr(cli, "MultiHeadAttention", _IgnoresIsCausal)
    assert cli.main(["--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    leaking = [c for c in report["cases"] if c["kind"] == "causal" and not c["expected"]]
    assert leaking and all(c["T"] > 1 for c in leaking)
    assert all(c["expected"] for c in report["cases"] if c["T"] == 1), "T=1 cannot look ahead"


def test_main_returns_1_when_the_controls_do_not_fail(monkeypatch, capsys, small_grid):
    monkeypatch.setattr(cli, "MultiHeadAttention", _AlwaysCausal)
    assert cli.main([]) == 1
    out = capsys.readouterr().out
    assert "check has no teeth" in out and "VERIFICATION FAILED" in out


def test_main_returns_0_for_the_real_model_on_the_small_grid(capsys, small_grid):
    assert cli.main([]) == 0
    assert "no look-ahead proven" in capsys.readouterr().out
