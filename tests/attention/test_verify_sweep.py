"""Leak detector, invariance_sweep: every prefix at once, against check_output_invariance."""
from __future__ import annotations

import copy

import pytest
import torch

from attention import check_output_invariance
from attention.mask_mods import document_mask, prefix_lm
from attention.verify import dense_allowed, invariance_sweep, leak_report, sweep_checked_prefixes
from verify_helpers import BatchNormOverTime, mha_for_tests as _mha


# ------------------------------------------------------------------------------------------------
# invariance_sweep
# ------------------------------------------------------------------------------------------------
def _calls(fn):
    batches = []

    def wrapped(z):
        batches.append(z.shape[0])
        return fn(z)

    return wrapped, batches


@pytest.mark.parametrize("causal", [True, False])
def test_sweep_agrees_with_check_output_invariance_for_every_prefix(causal, gen):
    mha = _mha()
    x = torch.randn(2, 7, 8, generator=gen)
    fn, batches = _calls(lambda z: mha(z, is_causal=causal, need_weights=False)[0])
    sweep = invariance_sweep(fn, x, seed=3)
    assert batches[-1] == 2 * 8 and len(batches) == 2          # x alone, then ONE stacked call
    for L in range(7):
        ref = check_output_invariance(fn, x, L, generator=torch.Generator().manual_seed(3))
        assert float(sweep[L]) == pytest.approx(ref.max_diff, rel=1e-4, abs=1e-6)
    if causal:
        assert float(sweep.max()) <= 1e-5
    else:
        assert float(sweep[:-1].min()) > 1e-3 and float(sweep[-1]) == 0.0


def test_sweep_runs_copies_one_by_one_for_batch_mixing_models_and_still_agrees(gen):
    torch.manual_seed(0)
    bn = BatchNormOverTime(4).train()
    x = torch.randn(2, 5, 4, generator=gen)
    sweep = invariance_sweep(bn, x)
    for L in range(5):
        ref = check_output_invariance(copy.deepcopy(bn), x, L, generator=torch.Generator().manual_seed(0))
        assert float(sweep[L]) == pytest.approx(ref.max_diff, rel=1e-4, abs=1e-6)
    assert leak_report(bn, x).batch_mixing


def test_sweep_checked_prefixes_follow_the_allowed_relation():
    assert sweep_checked_prefixes(dense_allowed(None, 5)).all()
    checked = sweep_checked_prefixes(dense_allowed(prefix_lm(3), 5))
    assert checked.tolist() == [False, False, True, True, True]   # inside the prefix 0..1 may see 2
    assert sweep_checked_prefixes(dense_allowed(document_mask([0, 0, 1, 1]), 4)).all()
