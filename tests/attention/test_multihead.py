"""MultiHeadAttention against torch.nn.MultiheadAttention (weights copied with from_torch).

Torch's boolean ``attn_mask`` / ``key_padding_mask`` mean True = *blocked*; ours are keep-masks
(True = may attend), so every oracle call passes ``~keep``. Torch initialises its biases to zero,
so the oracle models get random biases: a bias bug must show.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attention import MultiHeadAttention, make_causal_mask, make_padding_mask

E, H = 16, 4


def _torch_mha(E=E, H=H, bias=True, kdim=None, vdim=None, batch_first=True, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(E, H, dropout=dropout, bias=bias, kdim=kdim, vdim=vdim,
                                batch_first=batch_first)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
    return ref.eval()


def _run_torch(ref, q, k, v, keep=None, padding=None, need_weights=True):
    """Call ``ref`` on batch-first (or unbatched) inputs with our keep-masks converted to torch's."""
    batched = q.dim() == 3
    if batched and not ref.batch_first:
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))      # (B, T, E) -> (T, B, E)
    attn_mask = None
    if keep is not None:
        attn_mask = ~keep
        if attn_mask.dim() == 4:                               # (B, H, T, S) -> (B*H, T, S)
            attn_mask = attn_mask.flatten(0, 1)
    key_padding_mask = None if padding is None else ~padding
    out, w = ref(q, k, v, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                 need_weights=need_weights, average_attn_weights=False)
    if batched and not ref.batch_first:
        out = out.transpose(0, 1)
    return out, w


def _x(gen, *shape):
    return torch.randn(*shape, generator=gen)


# ---------------------------------------------------------------------------------------------
# Oracle: torch.nn.MultiheadAttention


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B,T", [(1, 1), (1, 6), (3, 5)])
def test_self_attention_matches_torch(gen, batch_first, bias, B, T):
    ref = _torch_mha(bias=bias, batch_first=batch_first)
    ours = MultiHeadAttention.from_torch(ref)
    x = _x(gen, B, T, E)
    out, w = ours(x)
    ref_out, ref_w = _run_torch(ref, x, x, x)
    assert out.shape == (B, T, E) and w.shape == (B, H, T, T)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


@pytest.mark.parametrize("kdim,vdim", [(None, None), (6, 10), (E, 7)])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_cross_attention_matches_torch(gen, kdim, vdim, batch_first, bias):
    ref = _torch_mha(bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first)
    ours = MultiHeadAttention.from_torch(ref)
    B, T, S = 2, 4, 7
    q, k, v = _x(gen, B, T, E), _x(gen, B, S, kdim or E), _x(gen, B, S, vdim or E)
    out, w = ours(q, k, v)
    ref_out, ref_w = _run_torch(ref, q, k, v)
    assert w.shape == (B, H, T, S)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


def test_value_defaults_to_key_in_cross_attention(gen):
    ours = MultiHeadAttention.from_torch(_torch_mha())
    q, k = _x(gen, 2, 3, E), _x(gen, 2, 5, E)
    torch.testing.assert_close(ours(q, k), ours(q, k, k), rtol=0, atol=0)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("how", ["is_causal", "float_mask", "bool_mask"])
def test_causal_self_attention_matches_torch(gen, batch_first, how):
    ref = _torch_mha(batch_first=batch_first)
    ours = MultiHeadAttention.from_torch(ref)
    B, T = 2, 6
    x = _x(gen, B, T, E)
    causal = make_causal_mask(T, dtype=torch.bool)
    if how == "is_causal":
        out, w = ours(x, is_causal=True)
    else:
        out, w = ours(x, mask=causal.float() if how == "float_mask" else causal)
    ref_out, ref_w = _run_torch(ref, x, x, x, keep=causal)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    assert not w[..., ~causal].any(), "no weight on future keys"


def test_causal_cross_attention_with_more_keys_is_top_left_aligned(gen):
    ref = _torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    T, S = 3, 5
    q, kv = _x(gen, 2, T, E), _x(gen, 2, S, E)
    causal = make_causal_mask(T, S, dtype=torch.bool)
    out, w = ours(q, kv, is_causal=True)
    ref_out, ref_w = _run_torch(ref, q, kv, kv, keep=causal)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_padding_mask_matches_torch_key_padding_mask(gen, batch_first, causal):
    ref = _torch_mha(batch_first=batch_first)
    ours = MultiHeadAttention.from_torch(ref)
    B, T = 3, 7
    x = _x(gen, B, T, E)
    pad = make_padding_mask([7, 3, 1], T)                       # True = real token
    out, w = ours(x, padding_mask=pad, is_causal=causal)
    keep = make_causal_mask(T, dtype=torch.bool) if causal else None
    ref_out, ref_w = _run_torch(ref, x, x, x, keep=keep, padding=pad)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    assert not w[1, :, :, 3:].any() and not w[2, :, :, 1:].any(), "no weight on padding"


def test_cross_attention_padding_matches_torch(gen):
    ref = _torch_mha(kdim=6, vdim=10)
    ours = MultiHeadAttention.from_torch(ref)
    q, k, v = _x(gen, 2, 4, E), _x(gen, 2, 5, 6), _x(gen, 2, 5, 10)
    pad = make_padding_mask([2, 5], 5)
    out, w = ours(q, k, v, padding_mask=pad)
    ref_out, ref_w = _run_torch(ref, q, k, v, padding=pad)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


def _keep_with_free_first_key(gen, shape):
    keep = torch.rand(shape, generator=gen) > 0.5
    keep[..., 0] = True                                         # torch gives NaN for empty rows
    return keep


@pytest.mark.parametrize("mask_shape", ["T,S", "B,T,S", "B,1,T,S", "B,H,T,S"])
def test_batch_and_per_head_masks_match_torch(gen, mask_shape):
    ref = _torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    B, T, S = 2, 4, 6
    q, kv = _x(gen, B, T, E), _x(gen, B, S, E)
    shape = {"T,S": (T, S), "B,T,S": (B, T, S), "B,1,T,S": (B, 1, T, S), "B,H,T,S": (B, H, T, S)}
    keep = _keep_with_free_first_key(gen, shape[mask_shape])
    out, w = ours(q, kv, mask=keep)
    full = keep.reshape(B, 1, T, S) if mask_shape == "B,T,S" else keep
    torch_keep = full.expand(B, H, T, S) if full.dim() == 4 else full   # torch: (T, S) or (B*H, T, S)
    ref_out, ref_w = _run_torch(ref, q, kv, kv, keep=torch_keep)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_unbatched_input_matches_torch(gen, cross, causal):
    ref = _torch_mha(kdim=6 if cross else None, vdim=6 if cross else None)
    ours = MultiHeadAttention.from_torch(ref)
    T = 5
    S = 7 if cross else T
    q = _x(gen, T, E)
    kv = _x(gen, S, 6) if cross else q
    pad = make_padding_mask([S - 2], S)[0]                      # (S,) for unbatched input
    out, w = ours(q, kv, kv, padding_mask=pad, is_causal=causal)
    keep = make_causal_mask(T, S, dtype=torch.bool) if causal else None
    ref_out, ref_w = _run_torch(ref, q, kv, kv, keep=keep, padding=pad)
    assert out.shape == (T, E) and w.shape == (H, T, S)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    out_nw, w_nw = ours(q, kv, kv, padding_mask=pad, is_causal=causal, need_weights=False)
    assert w_nw is None
    torch.testing.assert_close(out_nw, out)


def test_unbatched_input_equals_batch_of_one(gen):
    ours = MultiHeadAttention(E, H, num_kv_heads=2)
    x = _x(gen, 5, E)
    out, w = ours(x, is_causal=True)
    out_b, w_b = ours(x[None], is_causal=True)
    torch.testing.assert_close(out, out_b[0], rtol=0, atol=0)
    torch.testing.assert_close(w, w_b[0], rtol=0, atol=0)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", ["none", "causal", "padding"])
def test_need_weights_false_matches_torch_need_weights_false(gen, batch_first, mask):
    ref = _torch_mha(batch_first=batch_first)
    ours = MultiHeadAttention.from_torch(ref)
    B, T = 3, 6
    x = _x(gen, B, T, E)
    keep = make_causal_mask(T, dtype=torch.bool) if mask == "causal" else None
    pad = make_padding_mask([6, 4, 2], T) if mask == "padding" else None
    out, w = ours(x, mask=keep, padding_mask=pad, need_weights=False)
    ref_out, ref_w = _run_torch(ref, x, x, x, keep=keep, padding=pad, need_weights=False)
    assert w is None and ref_w is None
    torch.testing.assert_close(out, ref_out)


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("mask", ["none", "causal", "padding"])
@pytest.mark.parametrize("kv_heads", [H, 2])
def test_explicit_path_without_autograd_matches_the_autograd_result(gen, grad_mode, mask, kv_heads):
    """Without autograd the explicit path reuses the scores buffer in place: same numbers."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(E, H, num_kv_heads=kv_heads).eval()
    B, T = 3, 6
    x = _x(gen, B, T, E)
    kwargs = {"none": {}, "causal": {"is_causal": True},
              "padding": {"padding_mask": make_padding_mask([6, 0, 2], T)}}[mask]
    with_grad = ours(x, **kwargs)
    assert with_grad[0].requires_grad
    with grad_mode():
        without = ours(x, **kwargs)
    torch.testing.assert_close(without, tuple(t.detach() for t in with_grad))


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
def test_inference_mode_matches_torch(gen, grad_mode):
    ref = _torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    x = _x(gen, 2, 5, E)
    causal = make_causal_mask(5, dtype=torch.bool)
    with grad_mode():
        out, w = ours(x, is_causal=True)
        ref_out, ref_w = _run_torch(ref, x, x, x, keep=causal)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


# ---------------------------------------------------------------------------------------------
# need_weights=False (fused F.scaled_dot_product_attention) agrees with the explicit path

MASK_KINDS = ["none", "is_causal", "causal_mask", "padding", "causal+padding", "per_head", "empty_rows"]


def _mask_kwargs(kind, gen, B, H, T, S):
    if kind == "none":
        return {}
    if kind == "is_causal":
        return {"is_causal": True}
    if kind == "causal_mask":
        return {"mask": make_causal_mask(T, S)}
    if kind == "padding":
        return {"padding_mask": make_padding_mask(torch.randint(1, S + 1, (B,), generator=gen), S)}
    if kind == "causal+padding":
        return {"is_causal": True, "padding_mask": make_padding_mask([S] + [1] * (B - 1), S)}
    if kind == "per_head":
        return {"mask": _keep_with_free_first_key(gen, (B, H, T, S))}
    if kind == "empty_rows":                                   # some queries see no key at all
        keep = torch.rand(B, H, T, S, generator=gen) > 0.5
        keep[:, :, 0] = False
        return {"mask": keep}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("T,S", [(1, 1), (5, 5), (4, 7)])
def test_need_weights_false_equals_explicit_path(gen, kind, heads, kv_heads, T, S):
    torch.manual_seed(0)
    ours = MultiHeadAttention(E, heads, num_kv_heads=kv_heads).eval()
    B = 3
    q, kv = _x(gen, B, T, E), _x(gen, B, S, E)
    kwargs = _mask_kwargs(kind, gen, B, heads, T, S)
    explicit, w = ours(q, kv, **kwargs)
    fused, none = ours(q, kv, need_weights=False, **kwargs)
    assert none is None and w.shape == (B, heads, T, S)
    torch.testing.assert_close(fused, explicit)


# ---------------------------------------------------------------------------------------------
# Grouped-query / multi-query attention against repeated K/V heads


def _expected_gqa(m: MultiHeadAttention, q_in, kv_in, keep=None):
    """Reference built from our module's own weights: repeat each K/V head G times, then torch SDPA."""
    B, T, _ = q_in.shape
    S = kv_in.shape[1]
    Hq, K, D = m.num_heads, m.num_kv_heads, m.head_dim
    q = F.linear(q_in, m.q_proj.weight, m.q_proj.bias).view(B, T, Hq, D).transpose(1, 2)
    k = F.linear(kv_in, m.k_proj.weight, m.k_proj.bias).view(B, S, K, D).transpose(1, 2)
    v = F.linear(kv_in, m.v_proj.weight, m.v_proj.bias).view(B, S, K, D).transpose(1, 2)
    k = k.repeat_interleave(Hq // K, dim=1)                   # (B, H, S, D): query head h uses kv head h // G
    v = v.repeat_interleave(Hq // K, dim=1)
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)            # (B, H, T, D)
    eye = torch.eye(S).expand(B, Hq, S, S)
    weights = F.scaled_dot_product_attention(q, k, eye, attn_mask=keep)      # (B, H, T, S)
    out = F.linear(ctx.transpose(1, 2).reshape(B, T, Hq * D), m.out_proj.weight, m.out_proj.bias)
    return out, weights


@pytest.mark.parametrize("heads,kv_heads", [(8, 2), (8, 1), (4, 2), (2, 1), (4, 4)])
@pytest.mark.parametrize("kind", ["none", "causal", "padding", "per_head"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_grouped_and_multi_query_attention_match_repeated_kv_heads(gen, heads, kv_heads, kind, need_weights):
    torch.manual_seed(1)
    m = MultiHeadAttention(32, heads, num_kv_heads=kv_heads).eval()
    with torch.no_grad():
        for lin in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
            lin.bias.normal_(0, 0.3)
    assert m.k_proj.weight.shape == (kv_heads * 32 // heads, 32)
    B, T = 2, 6
    x = _x(gen, B, T, 32)
    keep, kwargs = None, {}
    if kind == "causal":
        keep, kwargs = make_causal_mask(T, dtype=torch.bool), {"is_causal": True}
    elif kind == "padding":
        pad = make_padding_mask([6, 2], T)
        keep, kwargs = pad[:, None, None, :], {"padding_mask": pad}
    elif kind == "per_head":
        keep = _keep_with_free_first_key(gen, (B, heads, T, T))
        kwargs = {"mask": keep}
    out, w = m(x, need_weights=need_weights, **kwargs)
    ref_out, ref_w = _expected_gqa(m, x, x, keep)
    torch.testing.assert_close(out, ref_out)
    if need_weights:
        torch.testing.assert_close(w, ref_w)


def test_gqa_cross_attention_matches_repeated_kv_heads(gen):
    torch.manual_seed(2)
    m = MultiHeadAttention(32, 8, num_kv_heads=2).eval()
    q, kv = _x(gen, 2, 3, 32), _x(gen, 2, 9, 32)
    out, w = m(q, kv)
    ref_out, ref_w = _expected_gqa(m, q, kv)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


def test_query_heads_in_one_group_share_keys_but_differ_from_other_groups(gen):
    torch.manual_seed(3)
    m = MultiHeadAttention(16, 4, num_kv_heads=2).eval()
    with torch.no_grad():                                      # every query head asks the same
        m.q_proj.weight.copy_(m.q_proj.weight[:4].repeat(4, 1))
        m.q_proj.bias.copy_(m.q_proj.bias[:4].repeat(4))
    _, w = m(_x(gen, 1, 5, 16))
    torch.testing.assert_close(w[:, 0], w[:, 1], rtol=0, atol=0)   # heads 0, 1 read kv head 0
    torch.testing.assert_close(w[:, 2], w[:, 3], rtol=0, atol=0)   # heads 2, 3 read kv head 1
    assert not torch.allclose(w[:, 0], w[:, 2])


# ---------------------------------------------------------------------------------------------
# from_torch


@pytest.mark.parametrize("kdim,vdim", [(None, None), (6, 10)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_from_torch_copies_every_weight_exactly(kdim, vdim, bias, batch_first):
    ref = _torch_mha(bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first, dropout=0.25)
    ours = MultiHeadAttention.from_torch(ref)
    if ref._qkv_same_embed_dim:
        wq, wk, wv = ref.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
    assert torch.equal(ours.q_proj.weight, wq)
    assert torch.equal(ours.k_proj.weight, wk)
    assert torch.equal(ours.v_proj.weight, wv)
    assert torch.equal(ours.out_proj.weight, ref.out_proj.weight)
    if bias:
        bq, bk, bv = ref.in_proj_bias.chunk(3)
        for lin, b in ((ours.q_proj, bq), (ours.k_proj, bk), (ours.v_proj, bv), (ours.out_proj, ref.out_proj.bias)):
            assert torch.equal(lin.bias, b)
    else:
        assert all(lin.bias is None for lin in (ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj))
    assert (ours.kdim, ours.vdim, ours.dropout) == (kdim or E, vdim or E, 0.25)
    assert not ours.training


def test_from_torch_copies_the_training_flag_and_owns_its_weights():
    ref = _torch_mha().train()
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.training
    with torch.no_grad():
        ours.q_proj.weight.zero_()
    assert ref.in_proj_weight.abs().sum() > 0, "from_torch must copy, not share storage"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_from_torch_keeps_the_dtype(dtype):
    ours = MultiHeadAttention.from_torch(_torch_mha().to(dtype))
    assert all(p.dtype == dtype for p in ours.parameters())


def test_state_dict_holds_only_the_four_projections():
    m = MultiHeadAttention(E, H, num_kv_heads=2)
    assert sorted(m.state_dict()) == sorted(
        f"{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias")
    )
    assert m.k_proj.weight.shape == (2 * E // H, E) and m.q_proj.weight.shape == (E, E)


# ---------------------------------------------------------------------------------------------
# Numerics


def _module(dtype=torch.float32, heads=H, kv_heads=None, bias=True, dropout=0.0):
    torch.manual_seed(0)
    m = MultiHeadAttention(E, heads, num_kv_heads=kv_heads, bias=bias, dropout=dropout)
    if bias:
        with torch.no_grad():
            m.out_proj.bias.normal_()                          # make out_proj(0) = bias visible
    return m.to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("kv_heads", [H, 1])
def test_fully_masked_rows_output_out_proj_bias_without_nan(gen, dtype, need_weights, kv_heads):
    m = _module(dtype, kv_heads=kv_heads)
    B, T = 2, 5
    x = _x(gen, B, T, E).to(dtype)
    pad = make_padding_mask([0, T], T)                          # batch item 0 is all padding
    keep = torch.ones(B, H, T, T, dtype=torch.bool)
    keep[1, :, 3] = False                                       # query 3 of item 1 sees nothing
    out, w = m(x, mask=keep, padding_mask=pad, need_weights=need_weights)
    assert out.dtype == dtype and not torch.isnan(out).any()
    bias = m.out_proj.bias.detach()
    torch.testing.assert_close(out[0], bias.expand(T, E), rtol=0, atol=0)
    torch.testing.assert_close(out[1, 3], bias, rtol=0, atol=0)
    assert not torch.allclose(out[1, 2], bias), "rows that see keys are ordinary attention"
    if need_weights:
        assert not torch.isnan(w).any()
        assert torch.equal(w[0], torch.zeros_like(w[0])) and torch.equal(w[1, :, 3], torch.zeros_like(w[1, :, 3]))
        torch.testing.assert_close(w[1].float().sum(-1)[:, [0, 1, 2, 4]], torch.ones(H, 4),
                                   atol=1e-2, rtol=0)


def test_fully_masked_rows_without_bias_output_zero(gen):
    m = _module(bias=False)
    out, w = m(_x(gen, 2, 4, E), padding_mask=make_padding_mask([0, 4], 4))
    assert torch.equal(out[0], torch.zeros(4, E)) and torch.equal(w[0], torch.zeros(H, 4, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("need_weights", [True, False])
def test_large_inputs_stay_finite(gen, dtype, need_weights):
    m = _module(dtype)
    x = (_x(gen, 2, 6, E) * 30).to(dtype)                      # logits in the thousands
    out, w = m(x, is_causal=True, need_weights=need_weights)
    assert torch.isfinite(out).all()
    if need_weights:
        assert torch.isfinite(w).all()


@pytest.mark.parametrize("need_weights", [True, False])
def test_dropout_is_off_in_eval_mode(gen, need_weights):
    with_dropout = _module(dropout=0.5)
    without = _module(dropout=0.0)
    x = _x(gen, 2, 6, E)
    a = with_dropout(x, is_causal=True, need_weights=need_weights)[0]
    b = with_dropout(x, is_causal=True, need_weights=need_weights)[0]
    c = without(x, is_causal=True, need_weights=need_weights)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


@pytest.mark.parametrize("need_weights", [True, False])
def test_dropout_changes_the_output_in_training_mode(gen, need_weights):
    m = _module(dropout=0.5)
    x = _x(gen, 2, 6, E)
    eval_out = m(x, need_weights=need_weights)[0]
    m.train()
    torch.manual_seed(0)
    train_out, w = m(x, need_weights=need_weights)
    assert not torch.allclose(train_out, eval_out)
    if need_weights:
        assert (w == 0).any(), "dropout zeroes some weights"
    torch.manual_seed(0)
    torch.testing.assert_close(m(x, need_weights=need_weights)[0], train_out, rtol=0, atol=0)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("kv_heads", [H, 2])
def test_gradients_are_finite_with_fully_masked_rows(gen, need_weights, kv_heads):
    m = _module(kv_heads=kv_heads).train()
    x = _x(gen, 2, 5, E).requires_grad_()
    out, _ = m(x, padding_mask=make_padding_mask([0, 3], 5), is_causal=True, need_weights=need_weights)
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
    assert torch.equal(x.grad[0], torch.zeros(5, E)), "an all-padding item influences nothing"
    assert x.grad[1].abs().sum() > 0


def test_gradients_of_both_paths_agree(gen):
    m = _module(kv_heads=2).double()
    x = _x(gen, 2, 5, E).double().requires_grad_()
    pad = make_padding_mask([5, 2], 5)
    grads = []
    for need_weights in (True, False):
        out, _ = m(x, padding_mask=pad, is_causal=True, need_weights=need_weights)
        grads.append(torch.autograd.grad(out.sin().sum(), (x, *m.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------
# The explicit path's shortcuts (issue 10 section 4) compute the same thing as the plain one


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("grad_mode", [torch.enable_grad, torch.no_grad])
def test_self_attention_through_one_gemm_matches_separate_projections(gen, bias, causal, grad_mode):
    """``ours(x)`` stacks the q/k/v weights into one GEMM; ``ours(x, x.clone())`` projects apart."""
    ref = _torch_mha(bias=bias)
    ours = MultiHeadAttention.from_torch(ref)
    x = _x(gen, 3, 6, E)
    with grad_mode():
        out, w = ours(x, is_causal=causal)
        out_sep, w_sep = ours(x, x.clone(), x.clone(), is_causal=causal)
    torch.testing.assert_close(out, out_sep)
    torch.testing.assert_close(w, w_sep)


@pytest.mark.parametrize("mask", ["none", "causal", "padding", "causal+padding", "empty_rows"])
def test_explicit_path_without_autograd_matches_torch_on_every_mask(gen, mask):
    ref = _torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    B, T = 3, 6
    x = _x(gen, B, T, E)
    causal = mask.startswith("causal")
    pad = make_padding_mask([6, 3, 1], T) if "padding" in mask else None
    keep = _keep_with_free_first_key(gen, (B, H, T, T)) if mask == "empty_rows" else None
    if keep is not None:
        keep[1, :, 2] = False                                   # query 2 of item 1 sees nothing
    with torch.inference_mode():
        out, w = ours(x, mask=keep, padding_mask=pad, is_causal=causal)
        torch_keep = make_causal_mask(T, dtype=torch.bool) if causal else keep
        ref_out, ref_w = _run_torch(ref, x, x, x, keep=torch_keep, padding=pad)
    rows = torch.ones(B, T, dtype=torch.bool)
    if keep is not None:
        rows[1, 2] = False                                      # torch gives NaN there, we give 0
        assert torch.equal(w[1, :, 2], torch.zeros_like(w[1, :, 2]))
    torch.testing.assert_close(out[rows], ref_out[rows])
    torch.testing.assert_close(w.transpose(1, 2)[rows], ref_w.transpose(1, 2)[rows])
    assert torch.isfinite(w).all() and torch.isfinite(out).all()


def test_gradients_reach_trainable_biases_of_frozen_projections(gen):
    m = _module()
    for lin in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
        lin.weight.requires_grad_(False)
    out, _ = m(_x(gen, 2, 5, E), is_causal=True)
    out.square().sum().backward()
    assert all(lin.bias.grad is not None and lin.bias.grad.abs().sum() > 0
               for lin in (m.q_proj, m.v_proj, m.out_proj))


@pytest.mark.parametrize("how", ["is_causal", "mask"])
def test_float16_explicit_path_with_a_blocked_score_overflowing_to_inf_matches_torch_sdpa(how):
    """The explicit path (weights) scores in float16, where q_0·k_3 overflows to +inf for a key the
    causal mask blocks: the output must equal the fused path (``F.scaled_dot_product_attention``),
    not NaN (a -inf bias added to +inf is NaN)."""
    E2, T = 4, 5
    m = MultiHeadAttention(E2, 1, bias=False)
    with torch.no_grad():
        m.q_proj.weight.copy_(torch.diag(torch.tensor([1.0, 0, 0, 0])))       # q_t = (x_t[0], 0, 0, 0)
        m.k_proj.weight.copy_(torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]))
        m.v_proj.weight.copy_(torch.eye(E2))
        m.out_proj.weight.copy_(torch.eye(E2))
    m = m.half().eval()
    x = torch.randn(1, T, E2, generator=torch.Generator().manual_seed(5))
    x[0, 0] = torch.tensor([400.0, 0.1, 0.2, 0.3])             # q_0 = 400 (x 1/2 scale)
    x[0, 3] = torch.tensor([0.5, 400.0, 0.0, 0.0])             # k_3 = (400, 0, 0, 0)
    x = x.half()
    q, k = m.q_proj(x) * 0.5, m.k_proj(x)
    assert torch.isinf(q[0, 0] @ k[0, 3]) and torch.isfinite((q @ k.transpose(-2, -1)).tril()).all()
    kw = {"is_causal": True} if how == "is_causal" else {"mask": make_causal_mask(T, dtype=torch.bool)}
    with torch.inference_mode():
        out, w = m(x, need_weights=True, **kw)
        fused, _ = m(x, need_weights=False, is_causal=True)
        ref = m.out_proj(F.scaled_dot_product_attention(m.q_proj(x)[:, None], m.k_proj(x)[:, None],
                                                        m.v_proj(x)[:, None], is_causal=True)[:, 0])
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(out, fused, atol=2e-3, rtol=2e-3)
