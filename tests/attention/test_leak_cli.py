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

ROOT = Path(__file__).resolve().parents[2]
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

    import types
    from attention.masks import make_padding_mask
    from attention.zoo.layers import MaskedSelfAttention

    class ReversedCumsumNaN(nn.Module):  # looks ahead, and its first output row is NaN
        def __init__(self, dim):
            super().__init__()
            self.proj = nn.Linear(dim, dim)
        def forward(self, x):
            y = self.proj(x.flip(1).cumsum(1).flip(1)).clone()
            y[:, 0] = float("nan")
            return y

    def nan_first_row(dim):
        return ReversedCumsumNaN(dim)

    class Encoder(nn.Module):            # states its width and its bidirectionality, HF style
        def __init__(self):
            super().__init__()
            self.config = types.SimpleNamespace(hidden_size=8)
            self.is_causal = False
            self.embeddings = nn.Embedding(30, 8)
            self.attn = MultiHeadAttention(8, 2)
        def get_input_embeddings(self):
            return self.embeddings
        def forward(self, x):
            h = self.attn(x, need_weights=False)[0]
            return types.SimpleNamespace(last_hidden_state=h, pooler_output=h.mean(1))

    class TwoWindows(nn.Module):         # two stacked sliding windows of 4: reaches 7 positions
        sliding_window, num_hidden_layers = 4, 2
        def __init__(self, dim=8):
            super().__init__()
            self.l1 = MaskedSelfAttention(dim, lambda T: sliding_window(4))
            self.l2 = MaskedSelfAttention(dim, lambda T: sliding_window(4))
        def forward(self, x):
            return self.l2(x + self.l1(x))

    class FixedBatch(nn.Module):         # a padding mask built for batch 2: no other batch size works
        def __init__(self, dim, seq_len):
            super().__init__()
            self.attn = MultiHeadAttention(dim, 2)
            self.pad = make_padding_mask([seq_len, seq_len - 3], seq_len)
        def forward(self, x):
            return self.attn(x, padding_mask=self.pad, need_weights=False)[0]

    def fixed_batch(dim, seq_len):
        return FixedBatch(dim, seq_len).eval()

    def fixed_batch_causal(dim, seq_len):
        m = FixedBatch(dim, seq_len).eval()
        return lambda x: m.attn(x, padding_mask=m.pad, is_causal=True, need_weights=False)[0]
''')


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("user")
    (d / "usermodels.py").write_text(USER_MODULE)
    return d


def run(args, cwd: Path):
    """``python -m attention.verify ARGS`` in a subprocess: (exit code, stdout, stderr)."""
    paths = [str(cwd), str(ROOT), os.environ.get("PYTHONPATH", "")]   # this checkout's attention
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
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
    (["--model", "usermodels:pools_time", "--dim", "16"], "to map x of shape (B, T, E) = (2, 12, 16) to y of shape "
                                           "(B, T, ...) = (2, 12, ...) but found (2, 16)"),
    (["--model", "usermodels:wrong_dim", "--dim", "16"], "failed on x of shape (B, T, E) = (2, 12, 16)"),
    (["--model", "usermodels:pools_time"], "cannot infer --dim: the model states no width"),
    (["--model", "usermodels:clean", "--allowed", "diagonal"], "expected --allowed to be causal, full, "
                                                              "sliding:W, prefix:P, document:IDS, "
                                                              "padding:LENS or auto but found 'diagonal'"),
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
    assert "dependency maps in float64" in out.splitlines()[0]
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


# ------------------------------------------------------------------------------------------------
# Soundness: NaN/inf is no verdict (exit 3), the precision and the input scale are reported
# ------------------------------------------------------------------------------------------------
def test_nan_output_exits_3_naming_the_positions_never_pass(run_inproc):
    rc, out, _ = run_inproc(["--model", "usermodels:nan_first_row", "--seq-len", "6", "--dim", "8"])
    assert rc == 3
    assert out.startswith("NO VERDICT (exit 3): model output holds NaN at (batch b, position t) = "
                          "(0, 0), (1, 0)") and "PASS" not in out
    rc, out, _ = run_inproc(["--model", "usermodels:nan_first_row", "--dim", "8", "--json"])
    data = json.loads(out)
    assert rc == 3 and data["passed"] is False and data["verdict"] == "undecided"
    assert data["positions"] == [[0, 0], [1, 0]]


def test_help_documents_exit_codes_relations_and_the_cost_formula(run_inproc, capsys):
    with pytest.raises(SystemExit):
        run_inproc(["--model", "x:y", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "0 pass; 1 leak found" in out and "2 usage error; 3 no verdict: NaN or inf" in out
    for text in ("full (every input: an encoder)", "padding:LENS", "auto (from what the model states",
                 "N stacked layers of window W reach N*(W-1)+1 positions", "B*T*min(E, F)",
                 "--no-sweep", "--output NAME", "--input-scale S|embedding"):
        assert text in out, text


def test_report_says_the_precision_and_the_input_scale(run_inproc):
    rc, out, _ = run_inproc(["--model", "usermodels:instance", "--seq-len", "5", "--dim", "8",
                             "--allowed", "sliding:3", "--input-scale", "0.05"])
    assert rc == 0
    assert "precision: dependency map float64, sweep float32" in out
    assert "input: N(0, 0.05^2) entries, rms 0.0" in out
    rc, out, _ = run_inproc(["--model", "usermodels:clean", "--seq-len", "5", "--dim", "8", "--json"])
    data = json.loads(out)
    assert data["precision"] == {"dependency_map": "float32", "sweep": "float32"}     # a closure
    assert any("rejects float64 input" in n for n in data["notes"])


def test_embedding_rows_as_input_and_dim_and_relation_read_from_the_model(run_inproc):
    rc, out, _ = run_inproc(["--model", "usermodels:Encoder", "--seq-len", "6", "--allowed", "auto",
                             "--input-scale", "embedding"])
    assert rc == 0, out
    assert "E = 8 from model.config.hidden_size" in out
    assert "auto -> full: model.is_causal = False" in out
    assert "input: random rows of the embedding table model.get_input_embeddings()" in out
    rc, out, _ = run_inproc(["--model", "usermodels:Encoder", "--seq-len", "6"])   # default causal
    assert rc == 1 and "LEAK" in out                                 # last_hidden_state checked


def test_output_option_picks_another_output(run_inproc):
    rc, _, err = run_inproc(["--model", "usermodels:Encoder", "--output", "pooler_output"])
    assert rc == 2 and "to y of shape (B, T, ...) = (2, 12, ...) but found (2, 8)" in err
    rc, _, err = run_inproc(["--model", "usermodels:Encoder", "--output", "logits"])
    assert rc == 2 and "output 'logits' is not an attribute of the model's SimpleNamespace output" in err


def test_stacked_windows_auto_relation_is_their_reach_and_a_narrower_window_names_it(run_inproc):
    rc, out, _ = run_inproc(["--model", "usermodels:TwoWindows", "--seq-len", "10", "--allowed", "auto"])
    assert rc == 0 and "auto -> sliding:7: model.sliding_window = 4 over 2 layers" in out
    rc, out, _ = run_inproc(["--model", "usermodels:TwoWindows", "--seq-len", "10", "--allowed", "sliding:4"])
    assert rc == 1
    assert "the model looks back 7 positions" in out and "check --allowed sliding:7" in out


def test_fixed_batch_model_is_swept_copy_by_copy_or_not_at_all(run_inproc):
    args = ["--model", "usermodels:fixed_batch_causal", "--seq-len", "8", "--dim", "8"]
    rc, out, _ = run_inproc(args)
    assert rc == 0 and "copies run one by one (the model failed on batch 18" in out
    rc, out, _ = run_inproc(args + ["--no-sweep"])
    assert rc == 0 and "prefix sweep: skipped (--no-sweep)" in out


def test_padding_relation_per_batch_item(run_inproc):
    args = ["--model", "usermodels:fixed_batch", "--seq-len", "8", "--dim", "8"]
    rc, out, _ = run_inproc(args + ["--allowed", "padding:8,5"])
    assert rc == 0 and "allowed relation: padding([8, 5])" in out
    rc, out, _ = run_inproc(args + ["--allowed", "padding:8,3", "--json"])
    assert rc == 1 and {l["batch"] for l in json.loads(out)["leaks"]} == {1}


@pytest.mark.parametrize("args, message", [
    (["--allowed", "padding:8"], "--allowed padding:LENS needs one length per batch item (--batch 2) "
                                 "but found 1 in 'padding:8'"),
    (["--allowed", "padding:8,99"], "padding:LENS needs lengths in 0..T=12 but found [8, 99]"),
    (["--input-scale", "-1"], "expected --input-scale to be a positive finite number but found '-1'"),
    (["--input-scale", "big"], "expected --input-scale to be a positive number or 'embedding' but found 'big'"),
    (["--input-scale", "embedding"], "--input-scale embedding: the model has no nn.Embedding of width E=8"),
    (["--output", "logits"], "output 'logits' is not an attribute of the model's Tensor output"),
])
def test_new_options_usage_errors_exit_2_by_message(run_inproc, args, message):
    rc, _, err = run_inproc(["--model", "usermodels:clean", "--dim", "8", *args])
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# The user's module is imported from the working directory, also through ./dev
# ------------------------------------------------------------------------------------------------
def test_model_module_is_imported_from_the_working_directory_without_pythonpath(user_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT))                     # user_dir is NOT on the path
    p = subprocess.run([sys.executable, "-P", "-m", "attention.verify", "--model", "usermodels:clean",
                        "--seq-len", "4", "--dim", "8"], cwd=user_dir, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stderr


def test_dev_verify_runs_in_the_callers_directory(user_dir, tmp_path):
    repo = tmp_path / "repo"                                         # ./dev with a ready .venv
    (repo / ".venv" / "bin").mkdir(parents=True)
    for name in ("dev", "pyproject.toml", "constraints.txt"):
        (repo / name).write_bytes((ROOT / name).read_bytes())
    (repo / "dev").chmod(0o755)
    python = repo / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    stamp = subprocess.run("cat pyproject.toml constraints.txt | sha256sum | cut -c1-16", shell=True,
                           cwd=repo, capture_output=True, text=True, check=True).stdout
    (repo / ".venv" / ".stamp").write_text(stamp)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([str(repo / "dev"), "verify", "--model", "usermodels:clean", "--seq-len", "4",
                        "--dim", "8"], cwd=user_dir, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr
