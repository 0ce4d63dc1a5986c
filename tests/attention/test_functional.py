"""scaled_dot_product_attention and single_token_attention against F.scaled_dot_product_attention."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attention import make_causal_mask, scaled_dot_product_attention, single_token_attention

LEADING = [(), (3,), (2, 3)]          # no batch, heads only, batch and heads
SIZES = [(1, 1), (5, 5), (4, 7), (7, 3)]  # (T, S)


def _qkv(gen, lead, T, S, d_k=8, d_v=6, dtype=torch.float32):
    q = torch.randn(*lead, T, d_k, generator=gen).to(dtype)
    k = torch.randn(*lead, S, d_k, generator=gen).to(dtype)
    v = torch.randn(*lead, S, d_v, generator=gen).to(dtype)
    return q, k, v


def _random_keep(gen, shape):
    """A random keep-mask where every query row keeps at least one key (torch would give NaN)."""
    keep = torch.rand(shape, generator=gen) > 0.4
    keep[..., 0] = True
    return keep


def _torch_weights(q, k, mask=None, scale=None):
    """Torch's own attention weights: SDPA with v = identity returns weights @ I = weights."""
    S = k.shape[-2]
    eye = torch.eye(S, dtype=q.dtype).expand(*k.shape[:-2], S, S)
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask, scale=scale)


@pytest.mark.parametrize("lead", LEADING)
@pytest.mark.parametrize("T,S", SIZES)
@pytest.mark.parametrize("scale", [None, 0.3])
def test_output_and_weights_match_torch_sdpa_without_mask(gen, lead, T, S, scale):
    q, k, v = _qkv(gen, lead, T, S)
    out, w = scaled_dot_product_attention(q, k, v, scale=scale)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=scale))
    torch.testing.assert_close(w, _torch_weights(q, k, scale=scale))
    assert out.shape == (*lead, T, 6) and w.shape == (*lead, T, S)


@pytest.mark.parametrize("lead", LEADING)
@pytest.mark.parametrize("T,S", SIZES)
@pytest.mark.parametrize("mask_lead", ["full", "broadcast"])
def test_bool_keep_mask_matches_torch_sdpa_bool_mask(gen, lead, T, S, mask_lead):
    q, k, v = _qkv(gen, lead, T, S)
    shape = (*lead, T, S) if mask_lead == "full" else (T, S)
    keep = _random_keep(gen, shape)
    out, w = scaled_dot_product_attention(q, k, v, mask=keep)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
    torch.testing.assert_close(w, _torch_weights(q, k, mask=keep))
    assert not w[~keep.expand_as(w)].any(), "blocked keys must get exactly zero weight"


@pytest.mark.parametrize("T,S", [(5, 5), (4, 7)])
def test_scale_argument_matches_torch_and_differs_from_default(gen, T, S):
    q, k, v = _qkv(gen, (2,), T, S)
    keep = make_causal_mask(T, S, dtype=torch.bool)
    out, w = scaled_dot_product_attention(q, k, v, mask=keep, scale=2.0)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=2.0))
    default_out, _ = scaled_dot_product_attention(q, k, v, mask=keep)
    assert not torch.allclose(out, default_out), "scale=2.0 must change the result"


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool])
def test_float_and_integer_keep_masks_equal_the_bool_mask(gen, dtype):
    q, k, v = _qkv(gen, (3,), 5, 6)
    keep = _random_keep(gen, (5, 6))
    expected = scaled_dot_product_attention(q, k, v, mask=keep)
    got = scaled_dot_product_attention(q, k, v, mask=keep.to(dtype))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_float64_inputs_match_torch_sdpa_to_double_precision(gen):
    q, k, v = _qkv(gen, (2, 3), 6, 6, dtype=torch.float64)
    keep = make_causal_mask(6, dtype=torch.bool)
    out, _ = scaled_dot_product_attention(q, k, v, mask=keep)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# single_token_attention is one row of the full attention


@pytest.mark.parametrize("lead", LEADING)
@pytest.mark.parametrize("T,S", [(1, 1), (5, 5), (3, 8)])
@pytest.mark.parametrize("masked", [False, True])
def test_single_token_attention_equals_each_row_of_full_attention(gen, lead, T, S, masked):
    q, k, v = _qkv(gen, lead, T, S)
    keep = _random_keep(gen, (*lead, T, S)) if masked else None
    full_out, full_w = scaled_dot_product_attention(q, k, v, mask=keep, scale=0.7)
    for t in range(T):
        row_mask = None if keep is None else keep[..., t, :]
        out, w = single_token_attention(q[..., t, :], k, v, mask=row_mask, scale=0.7)
        assert out.shape == (*lead, 6) and w.shape == (*lead, S)
        torch.testing.assert_close(out, full_out[..., t, :])
        torch.testing.assert_close(w, full_w[..., t, :])


def test_single_token_attention_matches_torch_for_one_query(gen):
    q = torch.randn(4, 8, generator=gen)          # (H, d_k): one query per head
    k = torch.randn(4, 10, 8, generator=gen)
    v = torch.randn(4, 10, 5, generator=gen)
    keep = _random_keep(gen, (4, 10))
    out, _ = single_token_attention(q, k, v, mask=keep)
    expected = F.scaled_dot_product_attention(q[:, None], k, v, attn_mask=keep[:, None])[:, 0]
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------------------------------------
# Numerics

LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_fully_masked_row_gives_zero_weights_zero_output_and_no_nan(gen, dtype):
    q, k, v = _qkv(gen, (2,), 4, 5, dtype=dtype)
    keep = _random_keep(gen, (4, 5))
    keep[2] = False                                  # query 2 may attend to nothing
    out, w = scaled_dot_product_attention(q, k, v, mask=keep)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert out.dtype == dtype and w.dtype == dtype
    assert torch.equal(w[:, 2], torch.zeros_like(w[:, 2]))
    assert torch.equal(out[:, 2], torch.zeros_like(out[:, 2]))
    # The other rows are ordinary attention (checked in float32 against torch).
    rows = [0, 1, 3]
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keep)
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out[:, rows].float(), expected[:, rows], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_fully_masked_single_token_gives_zero_output(gen, dtype):
    q = torch.randn(3, 8, generator=gen).to(dtype)
    k = torch.randn(3, 6, 8, generator=gen).to(dtype)
    v = torch.randn(3, 6, 4, generator=gen).to(dtype)
    keep = torch.zeros(3, 6, dtype=torch.bool)
    out, w = single_token_attention(q, k, v, mask=keep)
    assert torch.equal(out, torch.zeros_like(out)) and torch.equal(w, torch.zeros_like(w))


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("masked", [False, True])
def test_logits_of_1e4_stay_finite_and_pick_the_largest_key(dtype, masked):
    S, d = 4, 2
    q = torch.tensor([[100.0, 0.0]], dtype=dtype)                       # (T=1, d)
    k = torch.tensor([[100.0, 0.0], [-100.0, 0.0], [0.0, 100.0], [99.0, 0.0]], dtype=dtype)
    v = torch.arange(S * 3, dtype=dtype).reshape(S, 3)
    keep = torch.tensor([[True, True, True, False]]) if masked else None
    out, w = scaled_dot_product_attention(q, k, v, mask=keep, scale=1.0)  # logits 1e4, -1e4, 0, 9900
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    if masked:
        torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype))
        torch.testing.assert_close(out, v[:1])
    else:  # 1e4 vs 9900: a gap of 100 still gives (almost) all weight to key 0
        expected = torch.softmax(q.double() @ k.double().T, dim=-1)
        torch.testing.assert_close(w.double(), expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(out.double(), expected @ v.double(), atol=1e-6, rtol=0)


def test_dropout_is_off_unless_training(gen):
    q, k, v = _qkv(gen, (2,), 6, 6)
    plain = scaled_dot_product_attention(q, k, v)
    not_training = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False)
    torch.testing.assert_close(not_training, plain, rtol=0, atol=0)
    one_token = single_token_attention(q[:, 0], k, v, dropout_p=0.5)
    torch.testing.assert_close(one_token[0], plain[0][:, 0], rtol=0, atol=0)


def test_dropout_in_training_changes_output_and_returns_the_weights_it_used(gen):
    q, k, v = _qkv(gen, (2,), 6, 6)
    plain_out, plain_w = scaled_dot_product_attention(q, k, v)
    torch.manual_seed(0)
    out, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    assert not torch.allclose(out, plain_out)
    dropped = w == 0
    assert dropped.any(), "p=0.5 over 72 weights must drop some"
    torch.testing.assert_close(w[~dropped], plain_w[~dropped] * 2.0)   # survivors scaled by 1/(1-p)
    torch.testing.assert_close(out, w @ v)
    torch.manual_seed(0)
    again, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_training_with_zero_dropout_is_the_plain_result(gen):
    q, k, v = _qkv(gen, (2,), 6, 6)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, training=True),
                               scaled_dot_product_attention(q, k, v), rtol=0, atol=0)


def test_gradients_are_finite_with_fully_masked_rows(gen):
    q, k, v = (t.requires_grad_() for t in _qkv(gen, (2,), 4, 5))
    keep = _random_keep(gen, (4, 5))
    keep[1] = False
    out, w = scaled_dot_product_attention(q, k, v, mask=keep)
    (out.square().sum() + w.sum()).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[:, 1], torch.zeros_like(q.grad[:, 1])), "a query that sees nothing has no gradient"
    assert q.grad[:, 0].abs().sum() > 0


def test_gradients_match_torch_sdpa(gen):
    q, k, v = (t.requires_grad_() for t in _qkv(gen, (2,), 5, 5, dtype=torch.float64))
    keep = make_causal_mask(5, dtype=torch.bool)
    g = torch.randn(2, 5, 6, generator=gen, dtype=torch.float64)
    ours = torch.autograd.grad((scaled_dot_product_attention(q, k, v, mask=keep)[0] * g).sum(), (q, k, v))
    ref = torch.autograd.grad((F.scaled_dot_product_attention(q, k, v, attn_mask=keep) * g).sum(), (q, k, v))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def test_masked_softmax_leaves_its_input_alone_and_matches_the_reference():
    from attention.functional import masked_softmax
    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(3, 6, 6, generator=gen)
    keep = make_causal_mask(6, dtype=torch.bool)
    keep[2] = False                                             # one fully blocked row
    before = scores.clone()
    w = masked_softmax(scores, keep)
    torch.testing.assert_close(scores, before)                 # not modified (inplace=False)
    ref = torch.softmax(scores.masked_fill(~keep, float("-inf")), -1).nan_to_num(0.0)
    torch.testing.assert_close(w, ref)
    assert torch.all(w[:, 2] == 0)


def test_masked_softmax_gradients_flow_with_fully_blocked_rows():
    from attention.functional import masked_softmax
    gen = torch.Generator().manual_seed(6)
    scores = torch.randn(2, 5, 5, generator=gen, requires_grad=True)
    keep = make_causal_mask(5, dtype=torch.bool)
    keep[0] = False
    w = masked_softmax(scores, keep)
    (w * torch.arange(5.0)).sum().backward()
    ref_scores = scores.detach().clone().requires_grad_(True)
    ref = torch.softmax(ref_scores.masked_fill(~keep, float("-inf")), -1).nan_to_num(0.0)
    (ref * torch.arange(5.0)).sum().backward()
    ref_grad = ref_scores.grad.nan_to_num(0.0)
    torch.testing.assert_close(scores.grad, ref_grad)
    assert torch.all(scores.grad[:, 0] == 0) and torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("T,S", [(1, 1), (5, 5), (4, 7), (7, 3)])
def test_masked_softmax_is_causal_equals_passing_the_causal_mask_bit_for_bit(T, S):
    from attention.functional import masked_softmax
    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(2, 3, T, S, generator=gen)
    causal = make_causal_mask(T, S, dtype=torch.bool)
    torch.testing.assert_close(masked_softmax(scores, None, is_causal=True), masked_softmax(scores, causal),
                               rtol=0, atol=0)
    keep = torch.rand(2, 1, T, S, generator=gen) > 0.3
    torch.testing.assert_close(masked_softmax(scores, keep, is_causal=True), masked_softmax(scores, keep & causal),
                               rtol=0, atol=0)


def test_masked_softmax_bias_leaves_kept_scores_bit_for_bit():
    """Blocked keys get -inf added, kept keys +0: the same weights as masked_fill, exactly."""
    from attention.functional import masked_softmax
    gen = torch.Generator().manual_seed(8)
    scores = torch.randn(4, 9, 9, generator=gen)
    keep = torch.rand(4, 9, 9, generator=gen) > 0.5
    keep[..., 0] = True
    expected = torch.softmax(scores.masked_fill(~keep, float("-inf")), -1)
    torch.testing.assert_close(masked_softmax(scores, keep), expected, rtol=0, atol=0)
    torch.testing.assert_close(masked_softmax(scores.clone(), keep, inplace=True), expected, rtol=0, atol=0)


def _overflowing_float16(T=5, D=4):
    """q, k, v in float16 whose score (0, 3) overflows to +inf (|q_0·k_3| / sqrt(D) > 65504) while
    every score query 0 may see (keys 0) and every other score is finite: a blocked +inf."""
    gen = torch.Generator().manual_seed(9)
    q = torch.randn(1, 2, T, D, generator=gen)
    k = torch.randn(1, 2, T, D, generator=gen)
    v = torch.randn(1, 2, T, D, generator=gen)
    q[:, :, 0] = torch.tensor([400.0, 0.0, 0.0, 0.0])
    k[:, :, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    k[:, :, 3] = torch.tensor([400.0, 0.0, 0.0, 0.0])
    q, k, v = q.half(), k.half(), v.half()
    scores = q @ k.transpose(-2, -1) / 2
    assert torch.isinf(scores[:, :, 0, 3]).all() and torch.isfinite(scores[:, :, 1:, :3]).all()
    return q, k, v


@pytest.mark.parametrize("how", ["mask", "is_causal"])
def test_float16_blocked_score_that_overflows_to_inf_gives_torchs_output_not_nan(how):
    from attention.functional import masked_softmax
    q, k, v = _overflowing_float16()
    T = q.shape[-2]
    causal = make_causal_mask(T, dtype=torch.bool)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if how == "mask":
        out, w = scaled_dot_product_attention(q, k, v, mask=causal)
    else:
        w = masked_softmax(q @ k.transpose(-2, -1) / 2, None, is_causal=True)
        out = w @ v
    assert torch.isfinite(w).all() and torch.isfinite(out).all()
    assert torch.equal(w[..., 0, :], torch.tensor([1.0, 0, 0, 0, 0]).half().expand_as(w[..., 0, :]))
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    # the -inf bias (float32/64's path) would have made row 0 NaN: the overflow is real
    bias = torch.zeros(T, T, dtype=torch.float16).masked_fill_(~causal, float("-inf"))
    assert torch.isnan(torch.softmax(q @ k.transpose(-2, -1) / 2 + bias, -1)[..., 0, :]).all()
