"""Bad input gets a ValueError/TypeError that names the argument, what was expected and what was found."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from attention import (
    MultiHeadAttention,
    check_output_invariance,
    make_causal_mask,
    make_padding_mask,
    max_future_weight,
    prepare_mask,
    scaled_dot_product_attention,
    single_token_attention,
)

E, H = 16, 4


def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiHeadAttention(E, H).eval()


# ---------------------------------------------------------------------------------------------
# MultiHeadAttention construction


def test_d_model_not_divisible_by_heads_is_rejected():
    with pytest.raises(ValueError, match=r"expected d_model divisible by num_heads but found d_model=10, num_heads=3"):
        MultiHeadAttention(10, 3)


def test_heads_not_divisible_by_kv_heads_is_rejected():
    with pytest.raises(ValueError, match=r"expected num_heads divisible by num_kv_heads but found num_heads=4, num_kv_heads=3"):
        MultiHeadAttention(12, 4, num_kv_heads=3)


@pytest.mark.parametrize("kwargs,name", [({"num_heads": 0}, "num_heads"), ({"d_model": 0}, "d_model"),
                                         ({"num_kv_heads": 0}, "num_kv_heads"), ({"kdim": 0}, "kdim")])
def test_sizes_below_one_are_rejected(kwargs, name):
    args = {"d_model": E, "num_heads": H} | kwargs
    with pytest.raises(ValueError, match=rf"expected {name} >= 1 but found {name}=0"):
        MultiHeadAttention(**args)


@pytest.mark.parametrize("kwargs,name,found", [({"num_heads": 2.0}, "num_heads", "float"),
                                               ({"d_model": "16"}, "d_model", "str"),
                                               ({"num_heads": True}, "num_heads", "bool")])
def test_non_integer_sizes_are_a_type_error(kwargs, name, found):
    args = {"d_model": E, "num_heads": H} | kwargs
    with pytest.raises(TypeError, match=rf"expected {name} to be an int but found {found}"):
        MultiHeadAttention(**args)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range_is_rejected(p):
    with pytest.raises(ValueError, match=r"expected dropout in \[0, 1\) but found"):
        MultiHeadAttention(E, H, dropout=p)


def test_from_torch_rejects_other_modules_and_unsupported_options():
    with pytest.raises(TypeError, match=r"expected an nn.MultiheadAttention but found Linear"):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"add_bias_kv=False and add_zero_attn=False"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(E, H, add_bias_kv=True))
    with pytest.raises(ValueError, match=r"add_bias_kv=False and add_zero_attn=False"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(E, H, add_zero_attn=True))


# ---------------------------------------------------------------------------------------------
# MultiHeadAttention.forward


@pytest.mark.parametrize("shape", [(E,), (1, 2, 3, E)])
def test_query_that_is_not_2d_or_3d_is_rejected(mha, shape):
    want = re.escape(f"expected query of shape (B, T, E) or (T, E) but found {shape}")
    with pytest.raises(ValueError, match=want):
        mha(_x(*shape))


@pytest.mark.parametrize("shape", [(2, 3, E - 1), (3, E + 1)])
def test_wrong_embedding_size_names_the_query_and_e(mha, shape):
    want = re.escape(f"expected query with embedding size E={E} but found {shape}")
    with pytest.raises(ValueError, match=want):
        mha(_x(*shape))


def test_wrong_key_and_value_sizes_are_named():
    m = MultiHeadAttention(E, H, kdim=6, vdim=10)
    q = _x(2, 3, E)
    with pytest.raises(ValueError, match=re.escape("expected key with last dim 6 but found (2, 5, 7)")):
        m(q, _x(2, 5, 7), _x(2, 5, 10))
    with pytest.raises(ValueError, match=re.escape("expected value with last dim 10 but found (2, 5, 6)")):
        m(q, _x(2, 5, 6), _x(2, 5, 6))


def test_key_with_other_rank_than_query_is_rejected(mha):
    with pytest.raises(ValueError, match=re.escape("expected key to have 3 dims like query (2, 3, 16) but found (5, 16)")):
        mha(_x(2, 3, E), _x(5, E))


def test_key_value_length_mismatch_is_rejected(mha):
    want = re.escape("expected key and value with the same batch and length S but found key (2, 5, 16) and value (2, 4, 16)")
    with pytest.raises(ValueError, match=want):
        mha(_x(2, 3, E), _x(2, 5, E), _x(2, 4, E))


def test_query_key_batch_mismatch_is_rejected(mha):
    with pytest.raises(ValueError, match=re.escape("expected query and key with the same batch size but found query (2, 3, 16) and key (3, 5, 16)")):
        mha(_x(2, 3, E), _x(3, 5, E))


@pytest.mark.parametrize("shape", [(2, 0, E), (0, E)])
def test_query_with_no_positions_is_rejected(mha, shape):
    want = re.escape(f"expected at least one query position (T >= 1) but found {shape}")
    with pytest.raises(ValueError, match=want):
        mha(_x(*shape))


def test_key_with_no_positions_is_rejected(mha):
    with pytest.raises(ValueError, match=re.escape("expected at least one key position (S >= 1) but found (2, 0, 16)")):
        mha(_x(2, 3, E), _x(2, 0, E))


@pytest.mark.parametrize("arg", ["query", "key", "value"])
def test_non_tensor_inputs_are_a_type_error(mha, arg):
    x = _x(2, 3, E)
    kwargs = {"query": x, "key": x, "value": x} | {arg: x.tolist()}
    with pytest.raises(TypeError, match=rf"expected {arg} to be a torch.Tensor but found list"):
        mha(**kwargs)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_inputs_are_a_type_error(mha, dtype):
    with pytest.raises(TypeError, match=rf"expected query to be a floating-point tensor but found dtype {dtype}"):
        mha(torch.ones(2, 3, E, dtype=dtype))


@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3, 3), (3, 3, 3), (5, 2, 4, 3, 3)])
def test_unbroadcastable_mask_names_both_shapes(mha, shape):
    if len(shape) == 5:
        want = re.escape(f"broadcastable to (B, H, T, S) = (2, {H}, 3, 3) but found {shape}")
    else:
        want = re.escape(f"mask of shape {shape} cannot be broadcast to (B, H, T, S) = (2, {H}, 3, 3)")
    with pytest.raises(ValueError, match=want):
        mha(_x(2, 3, E), mask=torch.ones(shape, dtype=torch.bool))


@pytest.mark.parametrize("need_weights", [True, False])
def test_additive_minus_inf_mask_is_rejected_with_a_hint(mha, need_weights):
    additive = torch.zeros(3, 3).masked_fill(~make_causal_mask(3, dtype=torch.bool), float("-inf"))
    with pytest.raises(ValueError, match=r"expected mask to hold only 0 and 1 .*additive mask"):
        mha(_x(2, 3, E), mask=additive, need_weights=need_weights)


def test_mask_with_values_other_than_0_and_1_is_rejected(mha):
    with pytest.raises(ValueError, match=r"expected mask to hold only 0 and 1 \(1 = may attend, 0 = blocked\) but found values such as \[2\.0"):
        mha(_x(2, 3, E), mask=torch.full((3, 3), 2.0))


@pytest.mark.parametrize("shape", [(2, 4), (3, 3), (2,), (2, 1, 3)])
def test_wrong_padding_mask_shape_is_rejected(mha, shape):
    want = re.escape(f"expected padding_mask of shape (B, S) = (2, 3) (True = real token) but found {shape}")
    with pytest.raises(ValueError, match=want):
        mha(_x(2, 3, E), padding_mask=torch.ones(shape, dtype=torch.bool))


def test_additive_padding_mask_is_rejected(mha):
    pad = torch.tensor([[0.0, 0.0, float("-inf")]] * 2)
    with pytest.raises(ValueError, match=r"expected padding_mask to hold only 0 and 1.*additive"):
        mha(_x(2, 3, E), padding_mask=pad)


@pytest.mark.parametrize("arg", ["mask", "padding_mask"])
def test_non_tensor_masks_are_a_type_error(mha, arg):
    with pytest.raises(TypeError, match=rf"expected {arg} to be a torch.Tensor but found list"):
        mha(_x(2, 3, E), **{arg: [[1, 1, 1], [1, 1, 1]]})


def test_complex_mask_is_a_type_error(mha):
    with pytest.raises(TypeError, match=r"expected mask to be bool, integer or float but found torch.complex64"):
        mha(_x(2, 3, E), mask=torch.ones(3, 3, dtype=torch.complex64))


# ---------------------------------------------------------------------------------------------
# Functional attention


def test_q_k_head_dim_mismatch_is_rejected():
    want = re.escape("expected q and k to share the last dim d_k but found q (2, 3, 8) and k (2, 5, 6)")
    with pytest.raises(ValueError, match=want):
        scaled_dot_product_attention(_x(2, 3, 8), _x(2, 5, 6), _x(2, 5, 4))


def test_k_v_length_mismatch_is_rejected():
    want = re.escape("expected k and v to have the same number of positions S but found k (2, 5, 8) and v (2, 4, 8)")
    with pytest.raises(ValueError, match=want):
        scaled_dot_product_attention(_x(2, 3, 8), _x(2, 5, 8), _x(2, 4, 8))


def test_unbroadcastable_leading_dims_are_rejected():
    want = re.escape("expected q, k and v with broadcastable leading dims (...) but found q (2, 3, 8), k (3, 5, 8) and v (3, 5, 8)")
    with pytest.raises(ValueError, match=want):
        scaled_dot_product_attention(_x(2, 3, 8), _x(3, 5, 8), _x(3, 5, 8))


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (7, 2, 3, 5)])
def test_functional_mask_that_does_not_broadcast_to_the_scores_is_rejected(shape):
    want = re.escape(f"mask of shape {shape} cannot be broadcast to the scores' shape (..., T, S) = (2, 3, 5)")
    with pytest.raises(ValueError, match=want):
        scaled_dot_product_attention(_x(2, 3, 8), _x(2, 5, 8), _x(2, 5, 4), mask=torch.ones(shape, dtype=torch.bool))


def test_functional_additive_mask_is_rejected():
    with pytest.raises(ValueError, match=r"additive mask"):
        scaled_dot_product_attention(_x(3, 8), _x(3, 8), _x(3, 8), mask=torch.tensor([[0.0, float("-inf"), 0.0]] * 3))


def test_functional_query_without_position_dim_is_rejected():
    with pytest.raises(ValueError, match=re.escape("expected q of shape (..., T, d_k) but found (8,)")):
        scaled_dot_product_attention(_x(8), _x(5, 8), _x(5, 8))


@pytest.mark.parametrize("arg", ["q", "k", "v"])
def test_functional_non_tensor_and_integer_inputs_are_type_errors(arg):
    args = {"q": _x(3, 8), "k": _x(5, 8), "v": _x(5, 8)}
    with pytest.raises(TypeError, match=rf"expected {arg} to be a torch.Tensor but found list"):
        scaled_dot_product_attention(**(args | {arg: args[arg].tolist()}))
    with pytest.raises(TypeError, match=rf"expected {arg} to be a floating-point tensor but found dtype torch.int64"):
        scaled_dot_product_attention(**(args | {arg: args[arg].long()}))


@pytest.mark.parametrize("p", [-0.5, 1.0])
def test_functional_dropout_out_of_range_is_rejected(p):
    with pytest.raises(ValueError, match=r"expected dropout_p in \[0, 1\) but found"):
        scaled_dot_product_attention(_x(3, 8), _x(5, 8), _x(5, 8), dropout_p=p)


def test_single_token_attention_rejects_scalar_query_and_mask():
    with pytest.raises(ValueError, match=re.escape("expected q of shape (..., d_k) but found ()")):
        single_token_attention(torch.tensor(1.0), _x(5, 8), _x(5, 8))
    with pytest.raises(ValueError, match=re.escape("expected mask of shape (..., S) but found ()")):
        single_token_attention(_x(8), _x(5, 8), _x(5, 8), mask=torch.tensor(True))
    with pytest.raises(TypeError, match=r"expected q to be a floating-point tensor"):
        single_token_attention(torch.ones(8, dtype=torch.int32), _x(5, 8), _x(5, 8))


# ---------------------------------------------------------------------------------------------
# Masks


def test_causal_mask_needs_at_least_one_position():
    with pytest.raises(ValueError, match=r"expected T >= 1 but found T=0"):
        make_causal_mask(0)
    with pytest.raises(ValueError, match=r"expected S >= 1 but found S=-2"):
        make_causal_mask(3, -2)
    with pytest.raises(TypeError, match=r"expected T to be an int but found float"):
        make_causal_mask(3.0)


def test_causal_mask_rejects_unknown_align():
    with pytest.raises(ValueError, match=r"expected align to be one of \('top_left', 'bottom_right'\) but found 'bottom'"):
        make_causal_mask(3, align="bottom")


@pytest.mark.parametrize("lengths", [[1, 6], [-1, 2]])
def test_padding_lengths_out_of_range_are_rejected(lengths):
    with pytest.raises(ValueError, match=re.escape(f"expected every length in 0..5 (S=5) but found {lengths}")):
        make_padding_mask(lengths, 5)


def test_padding_lengths_must_be_1d_integers():
    with pytest.raises(ValueError, match=re.escape("expected lengths of shape (B,) but found (2, 1)")):
        make_padding_mask([[1], [2]], 5)
    with pytest.raises(TypeError, match=r"expected integer lengths but found dtype torch.float32"):
        make_padding_mask(torch.tensor([1.0, 2.0]), 5)


@pytest.mark.parametrize("shape", [(), (1, 1, 1, 1, 5)])
def test_prepare_mask_rejects_scalars_and_more_than_4_dims(shape):
    want = re.escape(f"(B, H, T, S) = (2, 3, 4, 5) but found {shape}")
    with pytest.raises(ValueError, match=want):
        prepare_mask(torch.ones(shape, dtype=torch.bool), 2, 3, 4, 5)


@pytest.mark.parametrize("shape", [(6,), (3, 5), (3, 4, 5), (2, 2, 4, 5), (2, 3, 4, 4)])
def test_prepare_mask_rejects_unbroadcastable_shapes(shape):
    want = re.escape(f"mask of shape {shape} cannot be broadcast to (B, H, T, S) = (2, 3, 4, 5)")
    with pytest.raises(ValueError, match=want):
        prepare_mask(torch.ones(shape, dtype=torch.bool), 2, 3, 4, 5)


@pytest.mark.parametrize("bad", [float("-inf"), -1e9, 0.5, 2.0, float("nan")])
def test_prepare_mask_rejects_values_other_than_0_and_1(bad):
    mask = torch.ones(4, 5)
    mask[1, 2] = bad
    with pytest.raises(ValueError, match=r"expected mask to hold only 0 and 1") as info:
        prepare_mask(mask, 2, 3, 4, 5)
    assert ("additive" in str(info.value)) == (bad < 0), "negative fills are named as additive masks"


def test_prepare_mask_rejects_integer_masks_other_than_0_and_1():
    with pytest.raises(ValueError, match=r"but found values such as \[3\]"):
        prepare_mask(torch.tensor([1, 0, 3, 1, 1]), 2, 3, 4, 5)


# ---------------------------------------------------------------------------------------------
# Verification helpers


@pytest.mark.parametrize("prefix", [-1, 5, 99])
def test_prefix_out_of_range_is_rejected(mha, prefix):
    want = re.escape(f"expected prefix in 0..T-1 = 0..4 but found prefix={prefix}")
    with pytest.raises(ValueError, match=want):
        check_output_invariance(mha, _x(2, 5, E), prefix)


def test_prefix_must_be_an_int(mha):
    with pytest.raises(TypeError, match=r"expected prefix to be an int but found float"):
        check_output_invariance(mha, _x(2, 5, E), 1.0)


def test_invariance_input_with_no_positions_is_rejected(mha):
    with pytest.raises(ValueError, match=re.escape("expected at least one position (T >= 1) but found x of shape (2, 0, 16)")):
        check_output_invariance(mha, _x(2, 0, E), 0)


def test_invariance_input_must_be_a_float_tensor_of_2_or_3_dims(mha):
    with pytest.raises(TypeError, match=r"expected x to be a floating-point torch.Tensor but found Tensor of dtype torch.int64"):
        check_output_invariance(mha, torch.ones(2, 5, E, dtype=torch.long), 0)
    with pytest.raises(TypeError, match=r"expected x to be a floating-point torch.Tensor but found list"):
        check_output_invariance(mha, [[0.0] * E], 0)
    with pytest.raises(ValueError, match=re.escape("expected x of shape (B, T, E) or (T, E) but found (1, 2, 5, 16)")):
        check_output_invariance(mha, _x(1, 2, 5, E), 0)


def test_invariance_model_must_return_a_tensor_of_shape_b_t():
    with pytest.raises(TypeError, match=r"expected model <lambda> to return a Tensor \(B, T, \.\.\.\) or a tuple starting "
                                        r"with one but found str"):
        check_output_invariance(lambda x: ("no",), _x(2, 5, E), 1)
    with pytest.raises(ValueError, match=re.escape("to y of shape (B, T, ...) = (2, 5, ...) but found (2, 16)")):
        check_output_invariance(lambda x: x.sum(1), _x(2, 5, E), 1)


def test_max_future_weight_rejects_non_tensors_and_1d_weights():
    with pytest.raises(TypeError, match=r"expected attn_weights to be a torch.Tensor but found list"):
        max_future_weight([[1.0]])
    with pytest.raises(ValueError, match=re.escape("expected attn_weights of shape (..., T, S) but found (4,)")):
        max_future_weight(torch.ones(4))
