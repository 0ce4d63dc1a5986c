"""The zoo's building blocks: small sequence layers, correct and buggy, ``x (B, T, E) -> y (B, T, E)``.

Shape legend: ``B`` batch, ``T`` positions, ``S`` key positions, ``E`` features (``dim``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..mask_mods import causal_mask_mod, causal_mod
from ..models import Block
from ..multihead import MultiHeadAttention

__all__ = [
    "BatchNormOverTime",
    "BlockStack",
    "CausalSelfAttention",
    "Conv",
    "CumulativeMean",
    "KVBlockAttention",
    "MaskedSelfAttention",
    "MeanPoolContext",
    "SequenceNorm",
    "heads_for",
    "kv_block_size",
]


def kv_block_size(T: int) -> int:
    """Size ``S`` of the KV block in the KV-cache entries: the last ``ceil(T / 2)`` positions."""
    return T - T // 2


def heads_for(dim: int, preferred: int = 2) -> int:
    """``preferred`` heads if they divide ``dim``, else 1."""
    return preferred if dim % preferred == 0 else 1


class MaskedSelfAttention(nn.Module):
    """Self-attention with a mask built from ``T`` at every call: ``mask_fn(T) -> keep-mask or mask_mod``."""

    def __init__(self, dim: int, mask_fn: Callable[[int], object], num_heads: int | None = None,
                 num_kv_heads: int | None = None) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads or heads_for(dim), num_kv_heads=num_kv_heads)
        self.mask_fn = mask_fn

    def forward(self, x: Tensor) -> Tensor:                        # (B, T, E) -> (B, T, E)
        return self.attn(x, mask=self.mask_fn(x.shape[1]), need_weights=False)[0]


class CausalSelfAttention(nn.Module):
    """``MultiHeadAttention(..., is_causal=True)``: the textbook causal layer."""

    def __init__(self, dim: int, num_heads: int | None = None, num_kv_heads: int | None = None) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads or heads_for(dim), num_kv_heads=num_kv_heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x, is_causal=True, need_weights=False)[0]


class KVBlockAttention(nn.Module):
    """Every position attends to a KV block holding the last ``S`` positions (``T - S + k`` is slot ``k``).

    ``align="bottom_right"`` is right for this layout (slot ``k`` is visible to query ``i`` when
    ``T - S + k <= i``); ``"top_left"`` is the bug.
    """

    def __init__(self, dim: int, align: str) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads_for(dim))
        self.align = align

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        S = kv_block_size(T)
        kv = x[:, T - S:]                                           # (B, S, E): the cached block
        mask = causal_mask_mod(self.align, T=T, S=S) if self.align == "bottom_right" else causal_mod
        out, _ = self.attn(x, kv, kv, mask=mask, need_weights=False)  # (B, T, E); rows with no key -> 0
        return x + out


class BlockStack(nn.Module):
    """``n_layers`` pre-norm causal blocks (:class:`attention.models.Block`, MLP ``4 × dim``) and a
    final LayerNorm: a tiny GPT without embeddings."""

    def __init__(self, dim: int, num_heads: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        heads = num_heads if dim % num_heads == 0 else 1
        self.blocks = nn.ModuleList(Block(dim, heads, d_ff=4 * dim) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, need_weights=False)[0]                     # (B, T, E)
        return self.ln_f(x)


class SequenceNorm(nn.Module):
    """The bug: normalizes every feature over the *sequence* axis (dim 1) instead of features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)                          # (B, 1, E): over all positions
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return self.proj((x - mean) / torch.sqrt(var + 1e-5))


class BatchNormOverTime(nn.Module):
    """``nn.BatchNorm1d`` on ``(B, E, T)``: statistics over batch *and time* in training mode."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.bn(x.transpose(1, 2)).transpose(1, 2))  # (B, E, T) -> (B, T, E)


class Conv(nn.Module):
    """Temporal convolution of width ``kernel``; ``causal=True`` pads ``kernel - 1`` on the left only."""

    def __init__(self, dim: int, kernel: int = 3, causal: bool = True) -> None:
        super().__init__()
        self.kernel, self.causal = kernel, causal
        self.conv = nn.Conv1d(dim, dim, kernel, padding=0 if causal else kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(1, 2)                                       # (B, E, T)
        if self.causal:
            h = F.pad(h, (self.kernel - 1, 0))                      # left padding only
        return self.conv(h).transpose(1, 2)                         # (B, T, E)


class CumulativeMean(nn.Module):
    """Running mean over positions: ``y_i = mean(x_0..x_i)`` (or, reversed, over ``x_i..x_{T-1}``)."""

    def __init__(self, dim: int, reverse: bool = False) -> None:
        super().__init__()
        self.reverse = reverse
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        count = torch.arange(1, T + 1, device=x.device, dtype=x.dtype).view(1, T, 1)
        if self.reverse:
            s = x.flip(1).cumsum(dim=1).flip(1)                     # suffix sums: x_i + ... + x_{T-1}
            count = count.flip(1)
        else:
            s = x.cumsum(dim=1)                                     # prefix sums: x_0 + ... + x_i
        return self.proj(s / count)


class MeanPoolContext(nn.Module):
    """The bug: adds a context vector pooled over the *whole* sequence to every position."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(x.mean(dim=1, keepdim=True))          # (B, 1, E) broadcast to all T
