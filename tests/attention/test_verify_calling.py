"""Leak detector, calling models: output forms, precision, and errors that name what was found."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attention.verify import (
    PrecisionWarning,
    dependency_map,
    find_leaks,
    invariance_sweep,
    leak_report,
    unwrap_output,
    with_output,
)
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


# ------------------------------------------------------------------------------------------------
# Outputs: tuples, dicts, ModelOutput-style objects, a named output
# ------------------------------------------------------------------------------------------------
class _HiddenOut:
    def __init__(self, h):
        self.last_hidden_state, self.logits = h, h.flip(1)


@pytest.mark.parametrize("wrap", [
    lambda y: y,
    lambda y: (y, "attention weights"),
    lambda y: [y],
    lambda y: {"last_hidden_state": y, "logits": y.flip(1)},
    lambda y: {"hidden": y, "n": 3},                                 # first tensor value
    _HiddenOut,
])
def test_every_output_form_gives_the_same_causal_verdict(wrap, gen):
    x = torch.randn(2, 5, 4, generator=gen)
    assert find_leaks(lambda z: wrap(z.cumsum(dim=1)), x) == []
    assert find_leaks(lambda z: wrap(z.flip(1).cumsum(dim=1).flip(1)), x) != []


@pytest.mark.parametrize("name, wrap", [
    ("logits", lambda y: {"last_hidden_state": y.cumsum(1), "logits": y.flip(1)}),
    ("logits", _HiddenOut),
    ("1", lambda y: (y.cumsum(1), y.flip(1))),
])
def test_with_output_picks_the_named_output(name, wrap, gen):
    x = torch.randn(2, 5, 4, generator=gen)
    assert find_leaks(lambda z: wrap(z), x) == []                   # the default output is causal
    assert find_leaks(with_output(lambda z: wrap(z), name), x) != []     # the flipped one leaks
    module = with_output(nn.Sequential(nn.Linear(4, 4)), "0")
    assert isinstance(module, nn.Module)


@pytest.mark.parametrize("output, wrap, message", [
    ("missing", lambda y: {"a": y}, r"output 'missing' not among the model's outputs \['a'\]"),
    ("5", lambda y: (y, y), r"output '5' out of range: the model returned 2 outputs"),
    ("logitz", _HiddenOut, r"output 'logitz' is not an attribute of the model's _HiddenOut output"),
])
def test_a_missing_named_output_is_an_error_naming_it(output, wrap, message, gen):
    x = torch.randn(1, 3, 2, generator=gen)
    with pytest.raises(ValueError, match=message):
        find_leaks(with_output(lambda z: wrap(z), output), x)


def test_unwrap_output_leaves_unknown_objects_for_call_model_to_reject():
    assert unwrap_output("text") == "text" and unwrap_output({"n": 3}) == {"n": 3}


# ------------------------------------------------------------------------------------------------
# Precision: float64 where the model takes it, a warning where it does not
# ------------------------------------------------------------------------------------------------
def test_closure_that_rejects_float64_warns_and_the_report_says_float32(gen):
    w = torch.randn(4, 4, generator=gen)                            # float32 weights
    x = torch.randn(2, 5, 4, generator=gen)
    with pytest.warns(PrecisionWarning, match=r"rejects float64 input, so its dependency map runs in "
                                              r"float32"):
        r = leak_report(lambda z: (z @ w).cumsum(dim=1), x)
    assert r.passed and r.precision == "float32"


def test_closure_that_accepts_float64_runs_in_float64_without_warning(gen, recwarn):
    x = torch.randn(2, 5, 4, generator=gen)
    r = leak_report(lambda z: z.cumsum(dim=1), x)
    assert r.precision == "float64" and not [w for w in recwarn if w.category is PrecisionWarning]
