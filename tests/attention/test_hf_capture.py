"""attention.hf.capture_attention: each layer's q and k captured as the model runs, and every weight
recomputed from them equal to the model's own ``output_attentions=True`` (tiny random-init models,
offline: tests/attention/_hf_tiny.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _hf_tiny
from _reference import np_pool
from attention.hf import NotCapturable, can_capture, capture_attention, trace_attention

def build(kind: str, **kw):
    """A tiny model with eager attention (so that ``output_attentions=True`` returns weights)."""
    model, tok = _hf_tiny.build(kind, **kw)
    model.config._attn_implementation = "eager"
    return model, tok


TEXT = " ".join(_hf_tiny.WORDS[(7 * i) % 60] for i in range(40))



@pytest.fixture(scope="module", params=["gpt2", "llama", "mistral", "qwen2", "bert"])
def traced(request):
    model, tok = build(request.param, window=6)              # mistral: a 6-token sliding window
    return request.param, model, tok, trace_attention(model, tok, TEXT), capture_attention(model, tok, TEXT)


def test_pooled_rows_windows_and_cells_equal_output_attentions(traced):
    kind, model, tok, ref, cap = traced
    assert (cap.tokens, cap.token_ids, cap.num_layers, cap.num_heads, cap.is_causal) == \
        (ref.tokens, ref.token_ids, ref.num_layers, ref.num_heads, ref.is_causal)
    T = cap.seq_len
    for l, full in enumerate(ref.weights):                              # (H, T, T) each
        full = full.numpy()
        pooled = cap.pooled(l, pixels=math.ceil(T / 3))                 # f = 3
        assert pooled.factor == 3
        np.testing.assert_allclose(pooled.maps.numpy(), np_pool(full, 3), atol=2e-6)
        mean = cap.pooled(l, pixels=T, mean_heads=True)                 # exact mean of the heads
        np.testing.assert_allclose(mean.maps[0].numpy(), full.mean(axis=0), atol=2e-6)
        np.testing.assert_allclose(cap.row(l, T - 5).numpy(), full[:, T - 5], atol=2e-6)
        win = cap.window(l, (10, 25), (3, 30), pixels=64, head=2)
        np.testing.assert_allclose(win.maps[0].numpy(), full[2, 10:25, 3:30], atol=2e-6)
        assert cap.weight(l, 3, 20, 19) == pytest.approx(float(full[3, 20, 19]), abs=2e-6)
    if kind == "mistral":                                               # the window's mask was captured
        assert isinstance(cap.layers[0].mask, torch.Tensor) and float(cap.row(1, 30)[:, :24].max()) == 0.0


def test_the_model_is_left_as_it_was_and_can_capture_says_yes(traced):
    kind, model, tok, ref, cap = traced
    assert model.config._attn_implementation == "eager"
    assert can_capture(model) == ""
    again = trace_attention(model, tok, TEXT)                          # eager still returns weights
    torch.testing.assert_close(again.stacked(), ref.stacked())


def test_soft_capped_attention_cannot_be_captured_and_says_why():
    model, tok = build("gemma2")
    with pytest.raises(NotCapturable, match="passes softcap to its attention"):
        capture_attention(model, tok, TEXT)
    assert "softcap" in can_capture(model)
    assert model.config._attn_implementation == "eager"


def test_bad_input_names_the_argument():
    model, tok = build("llama")
    cap = capture_attention(model, tok, "the cat sat")
    with pytest.raises(ValueError, match="expected layer in 0..1 but found layer=2"):
        cap.row(2, 0)
    with pytest.raises(ValueError, match=r"expected head in 0..3 \(or None\) but found head=4"):
        cap.pooled(0, 8, head=4)
    with pytest.raises(ValueError, match="expected at most 64 tokens"):
        capture_attention(model, tok, " ".join(["cat"] * 80))
    with pytest.raises(ValueError, match="expected max_tokens to be an int >= 1"):
        capture_attention(model, tok, "the cat", max_tokens=0)
