"""Helpers shared by the tests of attention.verify (test_verify_*.py): an oracle and small models."""
from __future__ import annotations

import torch
from torch import nn

from attention import MultiHeadAttention


def brute_force_map(fn, x: torch.Tensor, reduce: str = "fro") -> torch.Tensor:
    """``‖∂y_i/∂x_j‖`` from one ``backward`` per output entry ``(b, i, f)``: the slow, obvious oracle."""
    xr = x.detach().double().clone().requires_grad_(True)
    y = fn(xr)
    y = (y[0] if isinstance(y, tuple) else y).reshape(x.shape[0], x.shape[1], -1)  # (B, T, F)
    B, T, F = y.shape
    d2 = torch.zeros(B, T, T, dtype=torch.float64)
    for b in range(B):
        for i in range(T):
            for f in range(F):
                (g,) = torch.autograd.grad(y[b, i, f], xr, retain_graph=True, allow_unused=True)
                if g is not None:
                    d2[b, i] += g.square().sum(dim=(0, 2))             # Σ over b', e -> (T_in,)
    if reduce == "none":
        return d2.sqrt()
    if reduce == "max":
        return d2.sqrt().amax(0)
    return d2.sum(0).sqrt()


class BatchNormOverTime(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x):
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class UpProjectCumsum(nn.Module):
    """E < F, so the map is computed from columns (Jacobian-vector products)."""

    def __init__(self, e: int, f: int) -> None:
        super().__init__()
        self.up = nn.Linear(e, f)

    def forward(self, x):
        return torch.tanh(self.up(x)).cumsum(dim=1)


def mha_for_tests(seed: int = 0, dim: int = 8, heads: int = 2, kv: int | None = None) -> MultiHeadAttention:
    torch.manual_seed(seed)
    return MultiHeadAttention(dim, heads, num_kv_heads=kv).eval()
