"""Leak detector: exact dependency maps, leak search, batched prefix sweep, reports, errors.

Oracles: a Python loop of ordinary backward passes (one per output entry) for the dependency map, and
``check_output_invariance`` (one call per prefix) for the sweep.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from attention import MultiHeadAttention, check_output_invariance
from attention.masks import (
    and_masks,
    causal_mod,
    document_mask,
    make_causal_mask,
    make_padding_mask,
    or_masks,
    padding_mod,
    prefix_lm,
    sliding_window,
)
from attention.verify import (
    Leak,
    dense_allowed,
    dependency_map,
    find_leaks,
    invariance_sweep,
    leak_report,
    leaks_in_map,
    sweep_checked_prefixes,
)


def brute_force_map(fn, x: torch.Tensor, reduce: str = "fro") -> torch.Tensor:
    """``‖∂y_i/∂x_j‖`` from one ``backward`` per output entry ``(b, i, f)``: the slow, obvious oracle."""
    xr = x.detach().double().clone().requires_grad_(True)
    y = fn(xr)
    y = (y[0] if isinstance(y, tuple) else y).reshape(x.shape[0], x.shape[1], -1)  # (B, T, F)
    B, T, F = y.shape
    d2 = torch.zeros(B, T, T, dtype=torch.float64)
    for b in range(B):
        for i in range(T):
            for f in range(F):
                (g,) = torch.autograd.grad(y[b, i, f], xr, retain_graph=True, allow_unused=True)
                if g is not None:
                    d2[b, i] += g.square().sum(dim=(0, 2))             # Σ over b', e -> (T_in,)
    if reduce == "none":
        return d2.sqrt()
    if reduce == "max":
        return d2.sqrt().amax(0)
    return d2.sum(0).sqrt()


class BatchNormOverTime(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x):
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class UpProjectCumsum(nn.Module):
    """E < F, so the map is computed from columns (Jacobian-vector products)."""

    def __init__(self, e: int, f: int) -> None:
        super().__init__()
        self.up = nn.Linear(e, f)

    def forward(self, x):
        return torch.tanh(self.up(x)).cumsum(dim=1)


def _mha(seed: int = 0, dim: int = 8, heads: int = 2, kv: int | None = None) -> MultiHeadAttention:
    torch.manual_seed(seed)
    return MultiHeadAttention(dim, heads, num_kv_heads=kv).eval()


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


# ------------------------------------------------------------------------------------------------
# find_leaks / leaks_in_map
# ------------------------------------------------------------------------------------------------
def test_unmasked_attention_leaks_every_future_pair_largest_first(gen):
    mha = _mha()
    x = torch.randn(2, 6, 8, generator=gen)
    leaks = find_leaks(mha, x)                                  # plain MHA: bidirectional
    assert {(l.out_pos, l.in_pos) for l in leaks} == {(i, j) for i in range(6) for j in range(i + 1, 6)}
    mags = [l.magnitude for l in leaks]
    assert mags == sorted(mags, reverse=True)
    dep = dependency_map(mha, x)
    for l in leaks:
        assert l.magnitude == pytest.approx(float(dep[l.out_pos, l.in_pos]), rel=1e-12)
        assert isinstance(l, Leak) and l.batch is None


@pytest.mark.parametrize("allowed", [None, causal_mod, make_causal_mask(6, dtype=torch.bool),
                                     make_causal_mask(6)], ids=["none", "mask_mod", "bool", "float"])
def test_causal_attention_has_no_leaks_for_every_form_of_the_causal_relation(allowed, gen):
    x = torch.randn(2, 6, 8, generator=gen)
    assert find_leaks(_mha(), x, allowed, model_kwargs={"is_causal": True}) == []


def test_window_relation_flags_a_causal_model_that_looks_too_far_back(gen):
    x = torch.randn(1, 6, 8, generator=gen)
    leaks = find_leaks(_mha(), x, sliding_window(2), model_kwargs={"is_causal": True})
    assert {(l.out_pos, l.in_pos) for l in leaks} == {(i, j) for i in range(6) for j in range(i - 1)}


def test_batch_dependent_relation_reports_the_batch_item(gen):
    lengths = torch.tensor([3, 6])
    x = torch.randn(2, 6, 8, generator=gen)
    # Padded query rows still see their own input through the query projection: allow the diagonal.
    itself = lambda b, h, q, kv: q == kv                        # noqa: E731
    allowed = and_masks(causal_mod, or_masks(padding_mod(lengths), itself))
    pad = make_padding_mask(lengths, 6)
    mha = _mha()
    good = find_leaks(mha, x, allowed, model_kwargs={"is_causal": True, "padding_mask": pad})
    assert good == []
    bad = find_leaks(mha, x, allowed, model_kwargs={"is_causal": True})   # forgot the padding mask
    assert bad and {l.batch for l in bad} == {0}
    assert {(l.out_pos, l.in_pos) for l in bad} == {(i, j) for i in range(3, 6) for j in range(3, i)}


def test_leaks_in_map_reuses_one_map_for_several_relations(gen):
    x = torch.randn(1, 6, 8, generator=gen)
    dep = dependency_map(_mha(), x, model_kwargs={"mask": prefix_lm(2)})
    assert leaks_in_map(dep, prefix_lm(2)) == []
    causal_leaks = leaks_in_map(dep, None)
    assert {(l.out_pos, l.in_pos) for l in causal_leaks} == {(0, 1)}   # prefix query 0 sees key 1
    assert leaks_in_map(dep, None, atol=1e9) == []


def test_leaks_in_map_needs_per_item_maps_for_batch_dependent_relations():
    with pytest.raises(ValueError, match=r"depends on the batch item: compute the map with reduce='none'"):
        leaks_in_map(torch.ones(3, 3), padding_mod([1, 3]))


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


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
def test_non_callable_model_is_a_type_error(gen):
    x = torch.randn(1, 3, 2, generator=gen)
    for fn in (dependency_map, find_leaks, invariance_sweep, leak_report):
        with pytest.raises(TypeError, match=r"expected model to be an nn.Module or a callable .* found int"):
            fn(3, x)


def test_model_that_drops_the_time_axis_is_rejected(gen):
    x = torch.randn(2, 5, 4, generator=gen)
    with pytest.raises(ValueError, match=r"to map x of shape \(B, T, E\) = \(2, 5, 4\) to y of shape "
                                         r"\(B, T, \.\.\.\) = \(2, 5, \.\.\.\) but found \(2, 4\)"):
        dependency_map(lambda z: z.mean(dim=1), x)
    with pytest.raises(ValueError, match=r"but found \(2, 4\)"):
        invariance_sweep(lambda z: z.mean(dim=1), x)


def test_model_that_returns_no_tensor_is_rejected(gen):
    x = torch.randn(2, 5, 4, generator=gen)
    with pytest.raises(TypeError, match=r"to return a Tensor \(B, T, \.\.\.\) or a tuple starting with "
                                        r"one but found str"):
        find_leaks(lambda z: "hello", x)


def test_model_that_cannot_take_the_input_names_the_shape(gen):
    mha = _mha(dim=8)
    x = torch.randn(2, 5, 6, generator=gen)                     # E = 6, model wants 8
    with pytest.raises(ValueError, match=r"model MultiHeadAttention failed on x of shape \(B, T, E\) = "
                                         r"\(2, 5, 6\): ValueError: expected query with embedding size E=8"):
        dependency_map(mha, x)


@pytest.mark.parametrize("x, exc, match", [
    (torch.zeros(2, 3, dtype=torch.long), TypeError, r"floating-point torch.Tensor but found dtype torch.int64"),
    (torch.zeros(1, 2, 3, 4), ValueError, r"expected x of shape \(B, T, E\) or \(T, E\) .* found \(1, 2, 3, 4\)"),
    (torch.zeros(2, 0, 3), ValueError, r"found \(2, 0, 3\)"),
    ([[1.0]], TypeError, r"floating-point torch.Tensor but found list"),
])
def test_bad_input_is_rejected(x, exc, match):
    with pytest.raises(exc, match=match):
        dependency_map(lambda z: z, x)


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


def test_report_with_random_probes_finds_the_same_leaks_as_the_exact_map(gen):
    x = torch.randn(2, 7, 8, generator=gen)
    mha = _mha()
    exact = leak_report(mha, x, sliding_window(3), model_kwargs={"is_causal": True})
    probed = leak_report(mha, x, sliding_window(3), probes=1, model_kwargs={"is_causal": True})
    assert not exact.passed and not probed.passed
    assert {(l.out_pos, l.in_pos) for l in probed.leaks} == {(l.out_pos, l.in_pos) for l in exact.leaks}
    assert find_leaks(mha, x, probes=2, model_kwargs={"is_causal": True}) == []
