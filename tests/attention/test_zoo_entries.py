"""attention.zoo entries: the bug zoo proves the leak detector has teeth: every bug caught, every correct model clean."""
from __future__ import annotations

import copy

import pytest
import torch

from attention.mask_mods import materialize_mask
from attention.verify import dependency_map, find_leaks, leak_report
from attention.zoo import ZOO, ZooEntry

T, E, B = 12, 16, 2
BUGGY = sorted(n for n, e in ZOO.items() if e.buggy)
CORRECT = sorted(n for n, e in ZOO.items() if not e.buggy)


def _x(T: int = T, B: int = B, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, E, generator=torch.Generator().manual_seed(seed))


def _block_norm(model, x: torch.Tensor, i: int, j: int) -> float:
    """‖∂y_i/∂x_j‖ over every batch item and feature, by plain backward passes (the oracle)."""
    m = copy.deepcopy(model).double()
    xr = x.double().requires_grad_(True)
    y = m(xr)
    total = 0.0
    for b in range(x.shape[0]):
        for f in range(y.shape[-1]):
            (g,) = torch.autograd.grad(y[b, i, f], xr, retain_graph=True)
            total += float(g[:, j].square().sum())
    return total ** 0.5


def test_zoo_has_at_least_ten_bugs_and_eight_correct_models():
    assert len(BUGGY) >= 10 and len(CORRECT) >= 8
    for name, entry in ZOO.items():
        assert isinstance(entry, ZooEntry) and entry.name == name
        assert entry.description.endswith(".") and len(entry.description.split()) >= 8


@pytest.mark.parametrize("name", BUGGY)
def test_every_bug_is_caught_and_its_first_leak_is_a_real_forbidden_pair(name):
    entry = ZOO[name]
    model, x = entry.build(E, seed=0), _x()
    allowed = entry.allowed(T)
    leaks = find_leaks(model, x, allowed)
    assert leaks, f"{name} was not caught"
    first = leaks[0]
    assert first.magnitude == max(l.magnitude for l in leaks)
    assert not allowed(0, 0, first.out_pos, first.in_pos)     # forbidden, asked on plain ints
    oracle = _block_norm(model, x, first.out_pos, first.in_pos)  # and a real dependency
    assert oracle > 0 and first.magnitude == pytest.approx(oracle, rel=1e-9)


@pytest.mark.parametrize("name", CORRECT)
def test_every_correct_model_passes_with_zero_false_positives(name):
    entry = ZOO[name]
    model, x = entry.build(E, seed=0), _x()
    report = leak_report(model, x, entry.allowed(T))
    assert report.leaks == [] and report.sweep_failures == [] and report.passed
    forbidden = ~materialize_mask(entry.allowed(T), 1, 1, T, T)[0, 0]
    assert (report.dep_map[forbidden] == 0).all()             # exactly zero, not just small
    assert (report.dep_map.diagonal() > 0).all()              # and it does use its inputs


@pytest.mark.parametrize("name", BUGGY)
def test_every_bug_fails_the_full_report(name):
    entry = ZOO[name]
    report = leak_report(entry.build(E, seed=1), _x(seed=1), entry.allowed(T))
    assert not report.passed and report.leaks
    d = report.to_dict(max_leaks=3)
    assert d["passed"] is False and len(d["leaks"]) <= 3


@pytest.mark.parametrize("name", sorted(ZOO))
def test_verdict_holds_at_the_shortest_length_and_batch_of_one(name):
    entry = ZOO[name]
    T0 = max(entry.min_seq_len, 2)
    leaks = find_leaks(entry.build(E, seed=2), _x(T=T0, B=1, seed=2), entry.allowed(T0))
    assert bool(leaks) == entry.buggy


def test_look_ahead_bugs_are_also_caught_by_the_sweep():
    for name in BUGGY:
        entry = ZOO[name]
        if entry.allowed(T).__name__ != "causal":
            continue                                           # window/document leaks look back
        report = leak_report(entry.build(E, seed=0), _x(), entry.allowed(T))
        assert report.sweep_failures, name


def test_factories_are_seeded_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = ZOO["gpt_block_stack"].build(E, seed=5).state_dict()
    b = ZOO["gpt_block_stack"].build(E, seed=5).state_dict()
    c = ZOO["gpt_block_stack"].build(E, seed=6).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_batchnorm_bug_is_in_training_mode_and_its_fix_in_eval_mode():
    assert ZOO["batchnorm_over_time_train"].build(E).training
    assert not ZOO["batchnorm_over_time_eval"].build(E).training


def test_gpt_block_stack_map_is_exactly_lower_triangular():
    dep = dependency_map(ZOO["gpt_block_stack"].build(E), _x())
    assert torch.equal(dep > 0, torch.ones(T, T, dtype=torch.bool).tril())
