"""make_causal_mask, make_padding_mask and prepare_mask (keep-masks: True/1 = may attend)."""
from __future__ import annotations

import pytest
import torch

from attention import make_causal_mask, make_padding_mask, prepare_mask


@pytest.mark.parametrize("T,S", [(1, 1), (4, 4), (3, 6), (6, 3)])
def test_causal_mask_is_the_seeds_tril_of_ones(T, S):
    mask = make_causal_mask(T, S)
    assert mask.dtype == torch.float32 and mask.shape == (T, S)
    assert torch.equal(mask, torch.tril(torch.ones(T, S)))


def test_causal_mask_defaults_to_square():
    assert torch.equal(make_causal_mask(5), torch.tril(torch.ones(5, 5)))


def test_causal_mask_keeps_exactly_keys_up_to_the_query():
    keep = make_causal_mask(4, 6, dtype=torch.bool)
    for i in range(4):
        for j in range(6):
            assert bool(keep[i, j]) == (j <= i)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float16, torch.int64, torch.float64])
def test_causal_mask_honours_dtype(dtype):
    mask = make_causal_mask(3, dtype=dtype)
    assert mask.dtype == dtype
    assert torch.equal(mask, torch.tril(torch.ones(3, 3)).to(dtype))


def test_causal_mask_honours_device():
    assert make_causal_mask(3, device="meta").device.type == "meta"


@pytest.mark.parametrize("T,S", [(1, 5), (3, 7), (4, 4), (5, 3)])
def test_bottom_right_causal_mask_lines_up_the_last_query_with_the_last_key(T, S):
    keep = make_causal_mask(T, S, dtype=torch.bool, align="bottom_right")
    assert torch.equal(keep, torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T))
    if S >= T:
        assert keep[-1].all(), "the newest query sees every key"
        assert keep[:, : S - T + 1].all(), "every query sees the whole cached prefix"


def test_bottom_right_equals_top_left_when_square():
    assert torch.equal(make_causal_mask(5, align="bottom_right"), make_causal_mask(5))


def test_padding_mask_marks_real_tokens_true():
    keep = make_padding_mask([3, 0, 5, 1], 5)
    expected = torch.tensor([
        [True, True, True, False, False],
        [False, False, False, False, False],
        [True, True, True, True, True],
        [True, False, False, False, False],
    ])
    assert keep.dtype == torch.bool and torch.equal(keep, expected)


def test_padding_mask_accepts_tensor_lengths():
    lengths = torch.tensor([2, 4], dtype=torch.int32)
    assert torch.equal(make_padding_mask(lengths, 4), make_padding_mask([2, 4], 4))


def test_padding_mask_of_empty_batch_is_empty():
    assert make_padding_mask(torch.zeros(0, dtype=torch.long), 3).shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# prepare_mask

B, H, T, S = 2, 3, 4, 5


def _random_keep(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.5


@pytest.mark.parametrize(
    "shape,as_4d",
    [
        ((S,), lambda m: m[None, None, None, :]),
        ((T, S), lambda m: m[None, None]),
        ((1, S), lambda m: m[None, None]),
        ((B, T, S), lambda m: m[:, None]),             # 3-D: the leading dim is the batch
        ((1, T, S), lambda m: m[:, None]),
        ((B, 1, T, S), lambda m: m),
        ((B, H, T, S), lambda m: m),
        ((1, H, T, S), lambda m: m),
        ((1, 1, 1, S), lambda m: m),
    ],
)
def test_prepare_mask_broadcasts_every_accepted_shape(shape, as_4d):
    keep = _random_keep(shape)
    out = prepare_mask(keep, B, H, T, S)
    expected = as_4d(keep)
    assert out.dtype == torch.bool
    assert out.shape == (expected.shape[0], expected.shape[1], T, S)
    assert out.shape[0] in (1, B) and out.shape[1] in (1, H)
    assert torch.equal(out.expand(B, H, T, S), expected.expand(B, H, T, S))


def test_prepare_mask_does_not_mix_up_batch_and_heads_for_3d_masks():
    keep = torch.zeros(B, T, S, dtype=torch.bool)
    keep[1] = True                                        # batch item 1 keeps everything
    out = prepare_mask(keep, B, H, T, S).expand(B, H, T, S)
    assert out[1].all() and not out[0].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.uint8, torch.int8])
def test_prepare_mask_turns_0_1_masks_into_bool(dtype):
    keep = _random_keep((T, S))
    out = prepare_mask(keep.to(dtype), B, H, T, S)
    assert out.dtype == torch.bool
    assert torch.equal(out[0, 0], keep)


def test_prepare_mask_moves_to_the_requested_device():
    out = prepare_mask(_random_keep((T, S)), B, H, T, S, device="meta")
    assert out.device.type == "meta" and out.dtype == torch.bool


def test_prepare_mask_of_all_ones_float_mask_keeps_everything():
    out = prepare_mask(torch.ones(T, S), B, H, T, S)
    assert out.all()
