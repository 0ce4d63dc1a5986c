"""Leak detector, leak_report: the LeakReport of causal, leaking and prefix-LM models."""
from __future__ import annotations

import json

import pytest
import torch

from attention.mask_mods import prefix_lm, sliding_window
from attention.verify import find_leaks, leak_report
from verify_helpers import mha_for_tests as _mha


# ------------------------------------------------------------------------------------------------
# leak_report
# ------------------------------------------------------------------------------------------------
def test_report_of_a_causal_model_passes_and_serializes(gen):
    x = torch.randn(2, 6, 8, generator=gen)
    r = leak_report(_mha(), x, model_kwargs={"is_causal": True})
    assert r.passed and r.leaks == [] and r.sweep_failures == [] and r.first_leak is None
    assert r.dep_map.shape == (6, 6) and r.allowed_dense.dtype == torch.bool
    d = json.loads(json.dumps(r.to_dict()))
    assert d["passed"] is True and d["allowed"] == "causal" and len(d["sweep"]) == 6


def test_report_of_a_leaking_model_fails_with_leaks_and_sweep_failures(gen):
    x = torch.randn(2, 6, 8, generator=gen)
    r = leak_report(_mha(), x)
    assert not r.passed and r.first_leak == r.leaks[0]
    assert r.sweep_failures == [0, 1, 2, 3, 4]                 # L = 5 perturbs nothing
    d = r.to_dict(max_leaks=2)
    assert d["n_leaks"] == 15 and len(d["leaks"]) == 2
    assert d["max_forbidden_dependency"] == pytest.approx(r.leaks[0].magnitude)


def test_report_of_prefix_lm_does_not_count_prefix_sweeps_as_failures(gen):
    x = torch.randn(1, 6, 8, generator=gen)
    r = leak_report(_mha(), x, prefix_lm(3), model_kwargs={"mask": prefix_lm(3)})
    assert r.passed and float(r.sweep[0]) > 1e-3 and not bool(r.sweep_checked[0])


def test_report_with_random_probes_finds_the_same_leaks_as_the_exact_map(gen):
    x = torch.randn(2, 7, 8, generator=gen)
    mha = _mha()
    exact = leak_report(mha, x, sliding_window(3), model_kwargs={"is_causal": True})
    probed = leak_report(mha, x, sliding_window(3), probes=1, model_kwargs={"is_causal": True})
    assert not exact.passed and not probed.passed
    assert {(l.out_pos, l.in_pos) for l in probed.leaks} == {(l.out_pos, l.in_pos) for l in exact.leaks}
    assert find_leaks(mha, x, probes=2, model_kwargs={"is_causal": True}) == []
