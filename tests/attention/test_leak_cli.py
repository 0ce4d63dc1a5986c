"""``python -m attention.verify --model pkg.module:factory`` / ``--zoo``: exit codes and output.

The user's factories live in a temporary module. The main paths run as real subprocesses
(``PYTHONPATH`` pointing there); the many usage-error cases call the same ``main(argv)`` in-process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn
    from attention import MultiHeadAttention
    from attention.masks import sliding_window

    def leaky(dim):                     # forgot is_causal: every position sees the future
        m = MultiHeadAttention(dim, 2).eval()
        return lambda x: m(x)

    def clean(dim):
        m = MultiHeadAttention(dim, 2).eval()
        return lambda x: m(x, is_causal=True, need_weights=False)[0]

    class Windowed(nn.Module):
        def __init__(self, dim, window=3):
            super().__init__()
            self.attn, self.window = MultiHeadAttention(dim, 2), window
        def forward(self, x):
            return self.attn(x, mask=sliding_window(self.window))[0]

    instance = Windowed(8)               # an nn.Module instance works too

    def pools_time():                    # (B, T, E) -> (B, E): not a sequence model
        return lambda x: x.mean(dim=1)

    def wrong_dim():                     # takes E=4 only
        return nn.Linear(4, 4)

    def returns_number():
        return 3

    def raises():
        raise RuntimeError("no weights on disk")

    not_a_factory = 42
''')


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("user")
    (d / "usermodels.py").write_text(USER_MODULE)
    return d


def run(args, cwd: Path):
    """``python -m attention.verify ARGS`` in a subprocess: (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(cwd))
    p = subprocess.run([sys.executable, "-m", "attention.verify", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def run_inproc(user_dir, monkeypatch, capsys):
    """The same CLI entry point, in this process: (exit code, stdout, stderr)."""
    from attention.verify.__main__ import main

    monkeypatch.syspath_prepend(str(user_dir))
    sys.modules.pop("usermodels", None)

    def call(args):
        rc = main(args)
        cap = capsys.readouterr()
        return rc, cap.out, cap.err

    return call


def test_leaking_factory_exits_1_and_names_a_forbidden_pair(user_dir):
    rc, out, err = run(["--model", "usermodels:leaky", "--seq-len", "6", "--dim", "8", "--top", "3"], user_dir)
    assert rc == 1, err
    assert "LEAK: 15 forbidden dependencies" in out and out.rstrip().endswith("FAIL")
    rows = [l.split() for l in out.splitlines() if l.strip() and l.split()[0].isdigit()]
    assert len(rows) == 3
    assert all(int(j) > int(i) for i, j, _ in rows)            # every printed pair looks ahead


def test_clean_factory_exits_0_with_pass(user_dir):
    rc, out, err = run(["--model", "usermodels:clean", "--seq-len", "6", "--dim", "8"], user_dir)
    assert rc == 0, err
    assert "PASS" in out and "allowed relation: causal" in out


def test_module_instance_with_its_relation_passes_and_a_narrower_relation_fails(run_inproc):
    args = ["--model", "usermodels:instance", "--seq-len", "7", "--dim", "8"]
    rc, out, _ = run_inproc(args + ["--allowed", "sliding:3"])
    assert rc == 0 and "sliding_window(3)" in out
    rc, out, _ = run_inproc(args + ["--allowed", "sliding:2", "--json"])
    assert rc == 1
    data = json.loads(out)
    assert data["passed"] is False and data["allowed"] == "sliding_window(2)"
    assert all(l["out_pos"] - l["in_pos"] == 2 for l in data["leaks"])   # exactly one step too far


def test_document_relation_is_parsed_from_ids(run_inproc):
    rc, out, _ = run_inproc(["--model", "usermodels:clean", "--seq-len", "6", "--dim", "8",
                             "--allowed", "document:0,0,0,1,1,2", "--json", "--top", "100"])
    assert rc == 1
    data = json.loads(out)
    cross_document = {(i, j) for i in range(3, 5) for j in range(3)} | {(5, j) for j in range(5)}
    assert {(l["out_pos"], l["in_pos"]) for l in data["leaks"]} == cross_document


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuchpkg.models:make"], "error: cannot import module 'nosuchpkg.models' (from --model "
                                           "nosuchpkg.models:make): ModuleNotFoundError"),
    (["--model", "usermodels"], "error: expected --model as pkg.module:factory but found 'usermodels'"),
    (["--model", "usermodels:missing"], "error: module 'usermodels' has no attribute 'missing'"),
    (["--model", "usermodels:not_a_factory"], "names an object of type int, not a factory"),
    (["--model", "usermodels:returns_number"], "returned an object of type int, not an nn.Module"),
    (["--model", "usermodels:raises"], "factory usermodels:raises raised RuntimeError: no weights on disk"),
    (["--model", "usermodels:pools_time"], "to map x of shape (B, T, E) = (2, 12, 16) to y of shape "
                                           "(B, T, ...) = (2, 12, ...) but found (2, 16)"),
    (["--model", "usermodels:wrong_dim"], "failed on x of shape (B, T, E) = (2, 12, 16)"),
    (["--model", "usermodels:clean", "--allowed", "diagonal"], "expected --allowed to be causal, "
                                                              "sliding:W, prefix:P or document:IDS"),
    (["--model", "usermodels:clean", "--allowed", "sliding:x"], "--allowed: bad relation 'sliding:x'"),
    (["--model", "usermodels:clean", "--allowed", "document:0,1"], "needs one id per position (T=12)"),
    (["--zoo", "--allowed", "prefix:2"], "--allowed applies to --model only"),
])
def test_usage_errors_exit_2_with_one_line_and_no_traceback(run_inproc, args, message):
    rc, out, err = run_inproc(args)
    assert rc == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_import_in_a_real_process_exits_2_without_traceback(user_dir):
    rc, out, err = run(["--model", "nosuchpkg.models:make"], user_dir)
    assert rc == 2 and out == ""
    assert err.strip() == ("error: cannot import module 'nosuchpkg.models' (from --model "
                           "nosuchpkg.models:make): ModuleNotFoundError: No module named 'nosuchpkg'")


def test_json_error_is_json_too(run_inproc):
    rc, out, err = run_inproc(["--model", "usermodels:raises", "--json"])
    assert rc == 2 and json.loads(out) == {"passed": False, "error": err.strip()[len("error: "):]}


def test_zoo_catches_every_bug_and_passes_every_correct_model(user_dir):
    rc, out, err = run(["--zoo", "--json"], user_dir)
    assert rc == 0, err
    data = json.loads(out)
    assert data["passed"] is True
    bugs = [e for e in data["entries"] if e["buggy"]]
    good = [e for e in data["entries"] if not e["buggy"]]
    assert len(bugs) >= 10 and len(good) >= 8
    assert all(e["ok"] and e["first_leak"] for e in bugs)
    assert all(e["ok"] and e["n_leaks"] == 0 for e in good)


def test_zoo_table_is_readable(run_inproc):
    rc, out, _ = run_inproc(["--zoo", "--seq-len", "8", "--dim", "8", "--batch", "1"])
    assert rc == 0
    assert "off_by_one_causal_mask" in out and "caught" in out and "MISSED" not in out
    assert out.rstrip().splitlines()[-1].startswith("10/10 bugs caught, 10/10 correct models pass")


def test_default_grid_mode_is_unchanged(user_dir):
    rc, out, _ = run(["--help"], user_dir)
    assert rc == 0 and "--dtype" in out and "--model pkg.module:factory" in out


def test_probes_option_reports_the_same_pairs_as_the_exact_map(run_inproc):
    args = ["--model", "usermodels:leaky", "--seq-len", "5", "--dim", "8", "--json", "--top", "100"]
    rc_exact, out_exact, _ = run_inproc(args)
    rc_probe, out_probe, _ = run_inproc(args + ["--probes", "1"])
    assert rc_exact == rc_probe == 1
    pairs = lambda out: {(l["out_pos"], l["in_pos"]) for l in json.loads(out)["leaks"]}  # noqa: E731
    assert pairs(out_probe) == pairs(out_exact) == {(i, j) for i in range(5) for j in range(i + 1, 5)}
    rc, _, err = run_inproc(["--model", "usermodels:leaky", "--probes", "0"])
    assert rc == 2 and "expected --probes >= 1 but found 0" in err
