"""Leak detector, find_leaks / leaks_in_map: forbidden dependencies against relations."""
from __future__ import annotations


import pytest
import torch

from attention.mask_mods import (
    and_masks,
    causal_mod,
    or_masks,
    padding_mod,
    prefix_lm,
    sliding_window,
)
from attention.masks import make_causal_mask, make_padding_mask
from attention.verify import Leak, dependency_map, find_leaks, leaks_in_map
from verify_helpers import mha_for_tests as _mha


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
