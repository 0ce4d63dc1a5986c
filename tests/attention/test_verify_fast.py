"""The fast verdict (float32 probes through one forward and vmapped backward passes, float64 only for
the rows that leak)
loses nothing against the float64 map: every zoo entry gets the same verdict and the same leaking
pairs, and planted leaks down to 1e-7 of the largest dependency are still caught. Also the CLI's
choice of mode (fast by default, exact with --exact or when B*T*E is small) and its report."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from attention.verify import dependency_map, leak_report
from attention.verify.report import EXACT_LIMIT
from attention.zoo import ZOO
from attention.zoo.layers import BlockStack

T, E, B = 12, 16, 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pairs(report):
    return {(l.out_pos, l.in_pos, l.batch) for l in report.leaks}


@pytest.mark.parametrize("name", list(ZOO))
def test_fast_verdict_equals_the_float64_map_on_every_zoo_entry(name):
    entry = ZOO[name]
    n = max(T, entry.min_seq_len)
    x = torch.randn(B, n, E, generator=torch.Generator().manual_seed(0))
    exact = leak_report(entry.build(E, 0), x, entry.allowed(n))
    fast = leak_report(entry.build(E, 0), x, entry.allowed(n), fast=True)
    assert fast.passed is exact.passed is (not entry.buggy)
    assert _pairs(fast) == _pairs(exact)
    assert fast.mode == "fast"                # batch mixing too: one forward on the real batch
    assert torch.equal(fast.dep_map > 0, exact.dep_map > 0)          # the same pattern, every entry


class Planted(nn.Module):
    """A correct causal block stack plus ``eps * x[:, j] @ W`` added to output ``i < j``: one leak."""

    def __init__(self, eps: float, i: int = 3, j: int = 7):
        super().__init__()
        torch.manual_seed(0)
        self.base, self.eps, self.i, self.j = BlockStack(E).eval(), eps, i, j
        self.mix = nn.Linear(E, E, bias=False)

    def forward(self, x):
        y = self.base(x)
        leak = torch.zeros_like(y)
        leak[:, self.i] = self.eps * self.mix(x[:, self.j])
        return y + leak


@pytest.mark.parametrize("relative", [1e-3, 1e-5, 1e-7])
def test_a_planted_leak_down_to_1e_7_of_the_largest_dependency_is_caught(relative):
    x = torch.randn(1, T, E, generator=torch.Generator().manual_seed(1))
    unit = Planted(1.0)
    dep = dependency_map(unit, x)                                    # exact float64
    largest, leak_at_1 = float(dep.max()), float(dep[3, 7])
    model = Planted(relative * largest / leak_at_1)                  # leak = relative x the largest
    exact = leak_report(model, x)
    fast = leak_report(model, x, fast=True)
    assert _pairs(exact) == _pairs(fast) == {(3, 7, None)}
    assert fast.precision == "float32 pattern, float64 leaking rows"
    assert "1 row(s) with nonzero forbidden entries recomputed in float64" in fast.mode_detail
    assert fast.leaks[0].magnitude > fast.atol                       # judged in float64


def test_a_leak_below_the_float64_threshold_is_ignored_by_both():
    x = torch.randn(1, T, E, generator=torch.Generator().manual_seed(1))
    model = Planted(1e-14)
    assert leak_report(model, x).passed and leak_report(model, x, fast=True).passed


def test_fast_verdict_on_a_passing_model_needs_no_float64_and_says_so():
    x = torch.randn(1, T, E, generator=torch.Generator().manual_seed(1))
    r = leak_report(ZOO["gpt_block_stack"].build(E, 0), x, fast=True, probes=2)
    assert r.passed and r.mode == "fast" and r.precision == "float32"
    assert r.mode_detail.startswith("2 float32 probe(s) per position (24 vjps, one forward, vmapped "
                                    "backward passes)")
    assert r.to_dict()["mode"] == "fast"


class ValueReadingGrad(torch.autograd.Function):
    """Identity whose backward reads a value in Python (``float(...)``): it cannot run under vmap."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * (1.0 if float(g.abs().sum()) >= 0 else 0.0)


class Unvmappable(nn.Module):
    """``inner`` after an identity whose backward reads a value: the fast path must fall back."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(ValueReadingGrad.apply(x))


def test_vmapped_rows_equal_stacked_copies_and_share_one_forward():
    from attention.verify.dependency import probe_cotangents, replicated_rows, vmapped_rows

    model = ZOO["gpt_block_stack"].build(E, 0)
    x = torch.randn(B, T, E, generator=torch.Generator().manual_seed(3))
    cts = probe_cotangents(B, T, E, 2)
    calls = []
    hook = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    rows = torch.tensor([0, 5, 13, 23])
    D2, y, back = vmapped_rows(model, x, cts, rows, chunk_size=3)     # 8 jobs in 3 chunks
    hook.remove()
    assert calls == [B] and back is cts                               # one forward on the real batch
    ref = replicated_rows(model, x, cts, rows)
    torch.testing.assert_close(D2, ref, rtol=1e-4, atol=1e-7)
    assert torch.equal(D2 > 0, ref > 0)
    untouched = torch.ones(B * T, dtype=torch.bool)
    untouched[rows] = False
    assert bool((D2.view(B * T, T)[untouched] == 0).all())
    with pytest.raises(ValueError, match=r"expected cotangents of shape \(k, B, T, F\)"):
        vmapped_rows(model, x, cts[:, :1], rows)


def test_a_backward_that_cannot_be_vmapped_falls_back_to_stacked_copies_with_the_same_verdict():
    from attention.verify.dependency import VmapUnsupported, vmapped_rows

    x = torch.randn(B, T, E, generator=torch.Generator().manual_seed(4))
    with pytest.raises(VmapUnsupported, match="cannot be vmapped"):
        vmapped_rows(Unvmappable(ZOO["gpt_block_stack"].build(E, 0)), x, 1)
    for name in ("gpt_block_stack", "off_by_one_causal_mask", "batchnorm_over_time_train"):
        entry = ZOO[name]
        n = max(T, entry.min_seq_len)
        xn = torch.randn(B, n, E, generator=torch.Generator().manual_seed(0))
        exact = leak_report(entry.build(E, 0), xn, entry.allowed(n))
        fast = leak_report(Unvmappable(entry.build(E, 0)), xn, entry.allowed(n), fast=True)
        assert fast.passed is exact.passed and _pairs(fast) == _pairs(exact), name
        assert torch.equal(fast.dep_map > 0, exact.dep_map > 0), name
        assert fast.mode == "fast", name
        assert (("one backward pass at a time" if name == "batchnorm_over_time_train"  # mixes the batch
                 else "stacked copies of x") in fast.mode_detail), name


# ------------------------------------------------------------------------------------------------
# The CLI: fast by default, exact when small or asked for
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def cli(capsys):
    from attention.verify.__main__ import main

    def call(*args):
        rc = main([str(a) for a in args])
        cap = capsys.readouterr()
        return rc, cap.out, cap.err
    return call


MODEL = ["--model", "attention.zoo.layers:BlockStack"]


def test_cli_default_is_the_fast_verdict_above_the_exact_limit(cli):
    rc, out, _ = cli(*MODEL, "--dim", 16, "--seq-len", 40, "--batch", 2)
    assert rc == 0, out
    assert 2 * 40 * 16 > EXACT_LIMIT
    assert (f"mode: fast (B*T*E = 1280 > {EXACT_LIMIT}: the default fast verdict (--exact for exact "
            f"block norms)): 1 float32 probe(s) per position (80 vjps") in out
    assert "dependency map (float32, probes: exact pattern, estimated norms)" in out


def test_cli_exact_when_small_or_asked_and_probes_k_still_works(cli):
    rc, out, _ = cli(*MODEL, "--dim", 8, "--seq-len", 6)
    assert rc == 0 and f"mode: exact (B*T*E = 96 <= {EXACT_LIMIT}: the exact map is cheap here)" in out
    rc, out, _ = cli(*MODEL, "--dim", 16, "--seq-len", 40, "--exact", "--json")
    assert rc == 0 and json.loads(out)["mode"] == "exact"
    rc, out, _ = cli(*MODEL, "--dim", 8, "--seq-len", 6, "--probes", 3, "--json")
    data = json.loads(out)
    assert rc == 0 and data["mode"] == "fast" and any("mode: fast (--probes 3): 3 float32" in n
                                                       for n in data["notes"])
    rc, _, err = cli(*MODEL, "--exact", "--probes", 2)
    assert rc == 2 and "--exact and --probes exclude each other" in err


def test_cli_fast_verdict_finds_the_leaks_of_a_buggy_model_and_nan_is_still_no_verdict(cli, tmp_path,
                                                                                         monkeypatch):
    (tmp_path / "fastusers.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class Rev(nn.Module):\n"
        "    def __init__(self, dim, nan=False):\n"
        "        super().__init__(); self.proj, self.nan = nn.Linear(dim, dim), nan\n"
        "    def forward(self, x):\n"
        "        y = self.proj(x.flip(1).cumsum(1).flip(1)).clone()\n"
        "        if self.nan: y[:, 0] = float('nan')\n"
        "        return y\n"
        "def leaky(dim): return Rev(dim)\n"
        "def nan(dim): return Rev(dim, nan=True)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, out, _ = cli("--model", "fastusers:leaky", "--dim", 16, "--seq-len", 40, "--json", "--top", 1000)
    data = json.loads(out)
    assert rc == 1 and data["mode"] == "fast" and data["n_leaks"] == 40 * 39 // 2   # every future pair
    assert data["precision"]["dependency_map"] == "float32 pattern, float64 leaking rows"
    rc, out, _ = cli("--model", "fastusers:nan", "--dim", 16, "--seq-len", 40)
    assert rc == 3 and out.startswith("NO VERDICT (exit 3): model output holds NaN")


def test_fast_verdict_leaves_the_global_rng_and_the_model_alone():
    model = ZOO["batchnorm_over_time_eval"].build(E, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    leak_report(model, torch.randn(B, T, E, generator=torch.Generator().manual_seed(2)), fast=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
