"""Leak detector, dependency_map: exact Jacobian-block maps against a loop of backward passes; options."""
from __future__ import annotations

import copy

import pytest
import torch

from attention.mask_mods import sliding_window
from attention.masks import make_causal_mask
from attention.verify import (
    PrecisionWarning,
    dense_allowed,
    dependency_map,
    find_leaks,
    invariance_sweep,
    leak_report,
)
from verify_helpers import (
    BatchNormOverTime,
    UpProjectCumsum,
    brute_force_map,
    mha_for_tests as _mha,
)


# ------------------------------------------------------------------------------------------------
# dependency_map
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("B, T", [(1, 1), (1, 5), (3, 4)])
@pytest.mark.parametrize("causal", [True, False])
def test_dependency_map_equals_a_loop_of_backward_passes(B, T, causal, gen):
    mha = _mha()
    x = torch.randn(B, T, 8, generator=gen)
    ours = dependency_map(mha, x, model_kwargs={"is_causal": causal})
    ref = brute_force_map(lambda z: copy.deepcopy(mha).double()(z, is_causal=causal)[0], x)
    assert ours.dtype == torch.float64 and ours.shape == (T, T)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduce", ["fro", "max", "none"])
def test_dependency_map_of_batch_mixing_model_matches_oracle_for_every_reduction(reduce, gen):
    torch.manual_seed(0)
    bn = BatchNormOverTime(4).train()
    x = torch.randn(2, 5, 4, generator=gen)
    ours = dependency_map(bn, x, reduce=reduce)
    ref = brute_force_map(copy.deepcopy(bn).double(), x, reduce=reduce)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    assert bool((ours > 0).all())                              # BatchNorm over time sees everything


def test_dependency_map_uses_columns_when_inputs_are_narrower_and_still_matches_oracle(gen):
    torch.manual_seed(0)
    model = UpProjectCumsum(3, 7).eval()
    x = torch.randn(2, 6, 3, generator=gen)
    ours = dependency_map(model, x, chunk_size=5)              # 36 columns in 8 chunks
    ref = brute_force_map(copy.deepcopy(model).double(), x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    assert torch.equal(ours > 0, make_causal_mask(6, dtype=torch.bool))


def test_chunk_size_does_not_change_the_map(gen):
    mha = _mha()
    x = torch.randn(2, 6, 8, generator=gen)
    a = dependency_map(mha, x, chunk_size=1, model_kwargs={"is_causal": True})
    b = dependency_map(mha, x, chunk_size=1000, model_kwargs={"is_causal": True})
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_masked_pairs_get_exactly_zero_dependency(gen):
    mha = _mha()
    x = torch.randn(2, 7, 8, generator=gen)
    dep = dependency_map(mha, x, model_kwargs={"mask": sliding_window(2)})
    keep = dense_allowed(sliding_window(2), 7)
    assert (dep[~keep] == 0).all()
    assert (dep[keep] > 0).all()


def test_random_probes_keep_the_exact_support_and_estimate_the_norms(gen):
    mha = _mha()
    x = torch.randn(1, 6, 8, generator=gen)
    exact = dependency_map(mha, x, model_kwargs={"is_causal": True})
    one = dependency_map(mha, x, probes=1, model_kwargs={"is_causal": True})
    assert torch.equal(one > 0, exact > 0)
    many = dependency_map(mha, x, probes=400, model_kwargs={"is_causal": True},
                          generator=torch.Generator().manual_seed(1))
    keep = exact > 0
    rel = (many[keep] - exact[keep]).abs() / exact[keep]
    assert float(rel.max()) < 0.25                             # unbiased: sqrt(2/400) ~ 7% per entry


def test_dependency_map_leaves_the_users_model_untouched(gen):
    torch.manual_seed(0)
    bn = BatchNormOverTime(4).train()
    before = copy.deepcopy(bn.state_dict())
    x = torch.randn(2, 5, 4, generator=gen)
    dependency_map(bn, x)
    invariance_sweep(bn, x)
    leak_report(bn, x)
    assert bn.training and bn.bn.weight.dtype == torch.float32
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k                      # running stats unchanged


def test_plain_callable_runs_in_float64_when_it_can(gen):
    seen = []

    def fn(z):
        seen.append(z.dtype)
        return z.cumsum(dim=1) * 2

    x = torch.randn(1, 4, 3, generator=gen)
    dep = dependency_map(fn, x)
    assert set(seen) == {torch.float64} and dep.dtype == torch.float64
    expected = 2 * 3 ** 0.5 * make_causal_mask(4, dtype=torch.float64)  # ‖2·I_3‖_F on j <= i
    torch.testing.assert_close(dep, expected)


def test_closure_over_float32_weights_falls_back_to_the_input_dtype(gen):
    mha = _mha()
    x = torch.randn(1, 5, 8, generator=gen)
    with pytest.warns(PrecisionWarning, match=r"rejects float64 input, so its dependency map runs in float32"):
        dep = dependency_map(lambda z: mha(z, is_causal=True), x)
    assert dep.dtype == torch.float32
    assert torch.equal(dep > 0, make_causal_mask(5, dtype=torch.bool))


def test_output_that_ignores_the_input_has_an_all_zero_map(gen):
    x = torch.randn(2, 4, 3, generator=gen)
    dep = dependency_map(lambda z: torch.zeros(z.shape, dtype=z.dtype), x)
    assert dep.shape == (4, 4) and (dep == 0).all()
    assert find_leaks(lambda z: torch.zeros(z.shape, dtype=z.dtype), x) == []


def test_unbatched_input_is_a_batch_of_one(gen):
    mha = _mha()
    x = torch.randn(5, 8, generator=gen)
    torch.testing.assert_close(dependency_map(mha, x), dependency_map(mha, x.unsqueeze(0)))


def test_bad_options_are_rejected(gen):
    x = torch.randn(1, 3, 2, generator=gen)
    with pytest.raises(ValueError, match=r"expected reduce to be 'fro', 'max' or 'none' but found 'sum'"):
        dependency_map(lambda z: z, x, reduce="sum")
    with pytest.raises(ValueError, match=r"expected probes to be None or an int >= 1 but found 0"):
        dependency_map(lambda z: z, x, probes=0)
    with pytest.raises(ValueError, match=r"expected chunk_size to be None or an int >= 1 but found -2"):
        dependency_map(lambda z: z, x, chunk_size=-2)
    with pytest.raises(ValueError, match=r"expected allowed of shape \(T, S\) = \(3, 3\) .* found \(4, 4\)"):
        find_leaks(lambda z: z, x, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"expected allowed to be None, a mask_mod or a \(T, S\) keep-mask "
                                        r"tensor but found str"):
        find_leaks(lambda z: z, x, "causal")
    with pytest.raises(ValueError, match=r"additive mask"):
        find_leaks(lambda z: z, x, torch.zeros(3, 3).masked_fill(torch.ones(3, 3).triu(1).bool(), float("-inf")))
