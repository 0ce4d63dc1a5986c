"""The zoo's entries: every model with the mistake it makes (or the correct pattern) and its relation.

Shape legend: ``B`` batch, ``T`` positions, ``E`` features (``dim``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..mask_mods import MaskMod, sliding_window
from .layers import (
    BatchNormOverTime,
    BlockStack,
    CausalSelfAttention,
    Conv,
    CumulativeMean,
    KVBlockAttention,
    MaskedSelfAttention,
    MeanPoolContext,
    SequenceNorm,
    heads_for,
)
from .relations import DOC_LEN, PREFIX, RELATIONS, WINDOW

__all__ = ["ZOO", "ZooEntry"]

_causal, _window = RELATIONS["causal"], RELATIONS["sliding_window"]
_prefix, _documents = RELATIONS["prefix_lm"], RELATIONS["document"]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model.

    Attributes:
        name: identifier named for the mistake (or the correct pattern).
        description: one sentence: what the code does and why it leaks (or why it does not).
        buggy: ``True`` if the model breaks its relation.
        allowed: ``T -> mask_mod``, the relation the model must respect at sequence length ``T``.
        factory: ``(dim, seed) -> nn.Module`` mapping ``x (B, T, dim) -> y (B, T, dim)``.
        min_seq_len: shortest ``T`` at which a buggy entry's leak can show. Default: 2.
    """

    name: str
    description: str
    buggy: bool
    allowed: Callable[[int], MaskMod]
    factory: Callable[[int, int], nn.Module]
    min_seq_len: int = 2

    def build(self, dim: int = 16, seed: int = 0) -> nn.Module:
        """The model with weights drawn from ``seed`` (the global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.factory(dim, seed)


def _off_by_one(T: int) -> Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=1)     # diagonal=1: one step too far


def _transposed(T: int) -> Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril().T             # (S, T) layout read as (T, S)


def _batchnorm(train: bool):
    def make(dim: int, seed: int) -> nn.Module:
        m = BatchNormOverTime(dim)
        with torch.no_grad():                                       # running stats as after training
            m.bn.running_mean.uniform_(-0.5, 0.5)
            m.bn.running_var.uniform_(0.5, 1.5)
        return m.train(train)
    return make


_ENTRIES = [
    # ---- buggy --------------------------------------------------------------------------------
    ZooEntry(
        "off_by_one_causal_mask",
        "Builds the causal mask with tril(diagonal=1), so every position also attends to the next "
        "token.",
        True, _causal, lambda d, s: MaskedSelfAttention(d, _off_by_one).eval()),
    ZooEntry(
        "transposed_mask",
        "Uses the transpose of the causal keep-mask (upper instead of lower triangle), so each "
        "position attends to itself and every later token instead of the earlier ones.",
        True, _causal, lambda d, s: MaskedSelfAttention(d, _transposed).eval()),
    ZooEntry(
        "kv_cache_top_left_mask",
        "Attends to a KV block holding the last S of T positions with a top-left causal mask; the "
        "block needs bottom-right alignment (slot k is position T-S+k), so top-left lets position "
        "i see up to T-S tokens ahead.",
        True, _causal, lambda d, s: KVBlockAttention(d, "top_left").eval(), min_seq_len=2),
    ZooEntry(
        "norm_over_sequence_axis",
        "Normalizes each feature with the mean and variance over the sequence axis (dim=1) instead "
        "of the feature axis, so every position is scaled by statistics of future tokens.",
        True, _causal, lambda d, s: SequenceNorm(d).eval()),
    ZooEntry(
        "batchnorm_over_time_train",
        "Applies BatchNorm1d over time in training mode: the batch statistics pool every position "
        "of every sequence, future tokens included.",
        True, _causal, _batchnorm(train=True)),
    ZooEntry(
        "causal_conv_padded_both_sides",
        "A 'causal' Conv1d of width 3 with padding=1 pads both sides, so each output mixes in the "
        "next token; pad kernel-1 on the left only.",
        True, _causal, lambda d, s: Conv(d, 3, causal=False).eval()),
    ZooEntry(
        "reversed_cumsum",
        "Takes the cumulative sum over the flipped sequence (a suffix sum), so position i "
        "aggregates tokens i..T-1 instead of 0..i.",
        True, _causal, lambda d, s: CumulativeMean(d, reverse=True).eval()),
    ZooEntry(
        "packed_without_document_mask",
        f"Packs documents of {DOC_LEN} tokens into one row but uses a plain causal mask, so the first "
        f"tokens of a document attend to the end of the previous one.",
        True, _documents, lambda d, s: CausalSelfAttention(d).eval(), min_seq_len=DOC_LEN + 1),
    ZooEntry(
        "sliding_window_one_too_wide",
        f"Declares a sliding window of {WINDOW} keys but builds it with {WINDOW + 1} (q - kv <= W "
        f"instead of q - kv < W), so each position sees one token too far back.",
        True, _window, lambda d, s: MaskedSelfAttention(d, lambda T: sliding_window(WINDOW + 1)).eval(),
        min_seq_len=WINDOW + 1),
    ZooEntry(
        "mean_pool_whole_sequence",
        "Adds a context vector mean-pooled over the whole sequence to every position, so each "
        "output depends on all tokens, future ones included.",
        True, _causal, lambda d, s: MeanPoolContext(d).eval()),
    # ---- correct ------------------------------------------------------------------------------
    ZooEntry(
        "causal_mha",
        "Multi-head self-attention with is_causal=True: position i attends to positions 0..i.",
        False, _causal, lambda d, s: CausalSelfAttention(d).eval()),
    ZooEntry(
        "causal_gqa",
        "Grouped-query attention (4 query heads sharing 2 key/value heads) with a causal mask.",
        False, _causal, lambda d, s: CausalSelfAttention(d, heads_for(d, 4), heads_for(d, 2)).eval()),
    ZooEntry(
        "gpt_block_stack",
        "Two pre-norm GPT blocks (LayerNorm over features, causal attention, MLP) and a final "
        "LayerNorm: every op is per position except the causal attention.",
        False, _causal, lambda d, s: BlockStack(d, num_heads=4, n_layers=2).eval()),
    ZooEntry(
        "causal_conv_left_padded",
        "Conv1d of width 3 after padding kernel-1 positions on the left only: output i sees "
        "inputs i-2..i.",
        False, _causal, lambda d, s: Conv(d, 3, causal=True).eval()),
    ZooEntry(
        "cumsum",
        "Running mean via a cumulative sum over the sequence: position i aggregates tokens 0..i.",
        False, _causal, lambda d, s: CumulativeMean(d, reverse=False).eval()),
    ZooEntry(
        "sliding_window",
        f"Self-attention with sliding_window({WINDOW}): each position sees itself and the "
        f"{WINDOW - 1} tokens before it.",
        False, _window, lambda d, s: MaskedSelfAttention(d, _window).eval()),
    ZooEntry(
        "document_mask",
        f"Packed documents of {DOC_LEN} tokens with a document mask: causal attention within each "
        f"document, nothing across documents.",
        False, _documents, lambda d, s: MaskedSelfAttention(d, _documents).eval()),
    ZooEntry(
        "prefix_lm",
        f"Prefix-LM attention: bidirectional over the first {PREFIX} positions, causal after them.",
        False, _prefix, lambda d, s: MaskedSelfAttention(d, _prefix).eval()),
    ZooEntry(
        "kv_cache_bottom_right_mask",
        "Attends to a KV block holding the last S of T positions with a bottom-right causal mask: "
        "slot k (position T-S+k) is visible only from position T-S+k on.",
        False, _causal, lambda d, s: KVBlockAttention(d, "bottom_right").eval()),
    ZooEntry(
        "batchnorm_over_time_eval",
        "The same BatchNorm1d over time in eval mode: running statistics make it a per-position "
        "affine map, so it cannot leak.",
        False, _causal, _batchnorm(train=False)),
]

ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}
"""Every zoo entry by name, buggy ones first."""
