"""Leak detector, calling models: errors for bad models and bad inputs name what was found."""
from __future__ import annotations


import pytest
import torch

from attention.verify import dependency_map, find_leaks, invariance_sweep, leak_report
from verify_helpers import mha_for_tests as _mha


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
