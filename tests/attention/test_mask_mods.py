"""attention.mask_mods, the mask zoo: FlexAttention-style ``mask_mod`` predicates, their dense form, and their use as masks.

Oracle: ``torch.nn.attention.flex_attention.create_mask`` (PyTorch's own evaluator, under vmap).
"""
from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import create_mask

from attention import MultiHeadAttention
from attention.mask_mods import (
    and_masks,
    causal_mask_mod,
    causal_mod,
    document_mask,
    full_mod,
    materialize_mask,
    or_masks,
    padding_mod,
    prefix_lm,
    sliding_window,
)
from attention.masks import make_causal_mask, make_padding_mask, prepare_mask

B, H, T, S = 2, 3, 7, 9
DOCS = [0, 0, 0, 1, 1, 2, 2, 2, 2]
DOCS_2D = [DOCS, [0, 1, 1, 1, 1, 1, 2, 3, 3]]


def _zoo():
    return {
        "causal": causal_mod,
        "full": full_mod,
        "causal_bottom_right": causal_mask_mod(align="bottom_right", T=T, S=S),
        "sliding_window_1": sliding_window(1),
        "sliding_window_3": sliding_window(3),
        "prefix_lm_0": prefix_lm(0),
        "prefix_lm_4": prefix_lm(4),
        "document": document_mask(DOCS),
        "document_per_batch": document_mask(DOCS_2D),
        "padding": padding_mod([4, 9]),
        "causal_and_padding": and_masks(causal_mod, padding_mod([4, 9])),
        "window_or_prefix": or_masks(sliding_window(2), prefix_lm(2)),
    }


ZOO = _zoo()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_materialized_mask_equals_flex_attention_create_mask(name):
    mod = ZOO[name]
    ours = materialize_mask(mod, B, H, T, S)
    theirs = create_mask(mod, B, H, T, S, device="cpu")            # (B, H, T, S) via vmap
    assert ours.dtype == torch.bool
    assert ours.shape[0] in (1, B) and ours.shape[1] in (1, H) and ours.shape[2:] == (T, S)
    torch.testing.assert_close(ours.expand(B, H, T, S), theirs)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_mask_mod_on_ints_agrees_with_dense_mask(name):
    mod = ZOO[name]
    dense = materialize_mask(mod, B, H, T, S).expand(B, H, T, S)
    for b, h, q, kv in [(0, 0, 0, 0), (1, 2, 3, 2), (0, 1, 2, 5), (1, 0, 6, 8), (0, 2, 6, 0)]:
        got = mod(b, h, q, kv)
        assert isinstance(got, bool)
        assert got == bool(dense[b, h, q, kv])


def test_causal_mod_matches_make_causal_mask_both_alignments():
    top = materialize_mask(causal_mod, 1, 1, T, S)[0, 0]
    assert torch.equal(top, make_causal_mask(T, S, dtype=torch.bool))
    br = materialize_mask(causal_mask_mod(align="bottom_right", T=T, S=S), 1, 1, T, S)[0, 0]
    assert torch.equal(br, make_causal_mask(T, S, dtype=torch.bool, align="bottom_right"))
    assert causal_mask_mod() is causal_mod


def test_sliding_window_keeps_exactly_the_last_w_keys_including_self():
    W = 3
    dense = materialize_mask(sliding_window(W), 1, 1, 8, 8)[0, 0]
    for q in range(8):
        assert dense[q].nonzero().flatten().tolist() == list(range(max(0, q - W + 1), q + 1))


def test_sliding_window_wider_than_sequence_is_causal():
    assert torch.equal(materialize_mask(sliding_window(50), 1, 1, 6, 6),
                       materialize_mask(causal_mod, 1, 1, 6, 6))


def test_prefix_lm_is_bidirectional_inside_the_prefix_and_causal_after():
    P = 3
    dense = materialize_mask(prefix_lm(P), 1, 1, 6, 6)[0, 0]
    assert dense[:, :P].all()                                   # everyone sees the whole prefix
    assert dense[0, 2] and not dense[0, 3]                     # prefix query: not past the prefix
    assert dense[4, :5].all() and not dense[4, 5]              # after the prefix: causal
    assert torch.equal(materialize_mask(prefix_lm(0), 1, 1, 6, 6), materialize_mask(causal_mod, 1, 1, 6, 6))


def test_document_mask_blocks_other_documents_and_the_future():
    dense = materialize_mask(document_mask([0, 0, 1, 1, 1]), 1, 1, 5, 5)[0, 0]
    expected = torch.tensor([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(dense, expected)


def test_padding_mod_matches_make_padding_mask():
    lengths = torch.tensor([2, 5, 0])
    dense = materialize_mask(padding_mod(lengths), 3, 1, 4, 5)         # (3, 1, 4, 5)
    expected = make_padding_mask(lengths, 5)[:, None, None, :].expand(3, 1, 4, 5)
    assert torch.equal(dense, expected)


def test_and_or_masks_are_intersection_and_union():
    a, b = sliding_window(2), prefix_lm(3)
    da, db = (materialize_mask(m, 1, 1, 6, 6) for m in (a, b))
    assert torch.equal(materialize_mask(and_masks(a, b), 1, 1, 6, 6), da & db)
    assert torch.equal(materialize_mask(or_masks(a, b), 1, 1, 6, 6), da | db)


@pytest.mark.parametrize("mod, name", [
    (causal_mod, "causal"),
    (sliding_window(4), "sliding_window(4)"),
    (prefix_lm(2), "prefix_lm(2)"),
    (document_mask([0, 0, 1]), "document_mask([0, 0, 1])"),
    (padding_mod([3, 1]), "padding([3, 1])"),
    (causal_mask_mod("bottom_right", T=2, S=5), "causal(bottom_right, T=2, S=5)"),
    (and_masks(causal_mod, padding_mod([2])), "and(causal, padding([2]))"),
    (or_masks(sliding_window(1), full_mod), "or(sliding_window(1), full)"),
])
def test_every_mask_mod_has_a_readable_name(mod, name):
    assert repr(mod) == name
    assert mod.__name__ == name


def test_materialize_keeps_unused_dimensions_at_size_one():
    assert materialize_mask(causal_mod, 4, 8, 5, 5).shape == (1, 1, 5, 5)
    assert materialize_mask(padding_mod([1, 2, 3, 4]), 4, 8, 5, 5).shape == (4, 1, 5, 5)


def test_materialize_accepts_a_plain_lambda():
    dense = materialize_mask(lambda b, h, q, kv: (q - kv) % 2 == 0, 1, 1, 4, 4)[0, 0]
    assert dense[2, 0] and not dense[2, 1]


def test_builders_reject_bad_arguments_with_clear_messages():
    with pytest.raises(ValueError, match=r"expected window >= 1 but found window=0"):
        sliding_window(0)
    with pytest.raises(TypeError, match=r"expected window to be an int but found float"):
        sliding_window(2.5)
    with pytest.raises(ValueError, match=r"expected prefix >= 0 but found prefix=-1"):
        prefix_lm(-1)
    with pytest.raises(TypeError, match=r"expected integer doc_ids but found dtype torch.float32"):
        document_mask(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"expected doc_ids of shape \(L,\) or \(B, L\) but found \(1, 2, 3\)"):
        document_mask(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected every length >= 0 but found \[2, -1\]"):
        padding_mod([2, -1])
    with pytest.raises(ValueError, match=r"align='bottom_right' needs T and S"):
        causal_mask_mod(align="bottom_right")
    with pytest.raises(ValueError, match=r"expected align to be one of"):
        causal_mask_mod(align="middle")
    with pytest.raises(TypeError, match=r"argument 1 is int"):
        and_masks(causal_mod, 3)
    with pytest.raises(ValueError, match=r"at least one mask_mod in or_masks"):
        or_masks()


def test_materialize_reports_doc_ids_too_short_for_the_sequence():
    with pytest.raises(ValueError, match=r"document_mask\(\[0, 0, 1\]\) could not be evaluated for "
                                         r"\(B, H, T, S\) = \(1, 1, 5, 5\)"):
        materialize_mask(document_mask([0, 0, 1]), 1, 1, 5, 5)


def test_materialize_rejects_non_bool_predicates_and_bad_sizes():
    with pytest.raises(TypeError, match=r"to return bool but found torch.int64"):
        materialize_mask(lambda b, h, q, kv: q - kv, 1, 1, 3, 3)
    with pytest.raises(TypeError, match=r"expected mask_mod to be callable but found Tensor"):
        materialize_mask(torch.ones(3, 3), 1, 1, 3, 3)
    with pytest.raises(ValueError, match=r"expected T >= 1 but found T=0"):
        materialize_mask(causal_mod, 1, 1, 0, 3)


def test_prepare_mask_materializes_a_mask_mod():
    keep = prepare_mask(sliding_window(2), 2, 4, 5, 5)
    assert keep.shape == (1, 1, 5, 5) and keep.dtype == torch.bool
    assert torch.equal(keep, materialize_mask(sliding_window(2), 1, 1, 5, 5))


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mod", [sliding_window(2), document_mask([0, 0, 0, 1, 1, 1]), prefix_lm(2)],
                         ids=repr)
def test_multihead_attention_accepts_a_mask_mod_like_its_dense_mask(mod, need_weights, gen):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 6, 8, generator=gen)
    dense = materialize_mask(mod, 1, 1, 6, 6)[0, 0]                      # (T, S)
    out_mod, w_mod = mha(x, mask=mod, need_weights=need_weights)
    out_dense, w_dense = mha(x, mask=dense, need_weights=need_weights)
    torch.testing.assert_close(out_mod, out_dense)
    # Oracle: PyTorch's SDPA with the same boolean keep-mask on our projections.
    q = mha.q_proj(x).view(2, 6, 2, 4).transpose(1, 2)
    k = mha.k_proj(x).view(2, 6, 2, 4).transpose(1, 2)
    v = mha.v_proj(x).view(2, 6, 2, 4).transpose(1, 2)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    ref = mha.out_proj(ref.transpose(1, 2).reshape(2, 6, 8))
    torch.testing.assert_close(out_mod, ref, atol=1e-5, rtol=1e-5)
    if need_weights:
        assert (w_mod[..., ~dense] == 0).all()


def test_functional_attention_accepts_a_mask_mod_like_its_dense_mask():
    from attention import scaled_dot_product_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 6, 4, generator=g) for _ in range(3))
    mod = sliding_window(3)
    dense = materialize_mask(mod, 1, 1, 6, 6)[0, 0]
    out_mod, w_mod = scaled_dot_product_attention(q, k, v, mask=mod)
    out_dense, w_dense = scaled_dot_product_attention(q, k, v, mask=dense)
    torch.testing.assert_close(out_mod, out_dense, rtol=0, atol=0)
    assert not bool((w_mod[..., ~dense] != 0).any())


def test_old_import_path_attention_masks_still_gives_the_same_predicates():
    import attention.mask_mods as mask_mods
    import attention.masks as masks

    for name in mask_mods.__all__:
        assert getattr(masks, name) is getattr(mask_mods, name), name
