"""Allowed relations: which inputs each output may depend on, as a mask_mod or a dense keep-mask.

A relation is a ``mask_mod(b, h, q_idx, kv_idx) -> bool`` from :mod:`attention.mask_mods` (output
position ``q_idx`` may depend on input position ``kv_idx``), a dense ``(T, S)`` / ``(B, T, S)``
keep-mask (``True`` = allowed), or ``None`` for causal.

Shape legend: ``B`` batch, ``T`` output positions, ``S`` input positions.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..mask_mods import causal_mod, materialize_mask
from ..masks import check_keep_values

__all__ = ["batch_dependent", "dense_allowed", "relation_name", "sweep_checked_prefixes", "uses_batch"]


def dense_allowed(allowed: Any, T: int, S: int | None = None, batch: int = 1) -> Tensor:
    """The allowed relation as a dense keep-mask: ``(T, S)``, or ``(B, T, S)`` if it depends on ``b``.

    Args:
        allowed: a ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (output position ``q_idx`` may depend on
            input position ``kv_idx``), a ``(T, S)`` (or ``(B, T, S)``) bool / 0-1 keep-mask, or
            ``None`` for causal. Keep-mask convention: ``True`` = allowed.
        T, S: output and input positions. ``S`` defaults to ``T``.
        batch: ``B`` for batch-dependent mask_mods (padding, per-item documents). Default: 1.
    """
    S = T if S is None else S
    if allowed is None:
        allowed = causal_mod
    if callable(allowed) and not isinstance(allowed, Tensor):
        keep = materialize_mask(allowed, batch, 1, T, S)[:, 0]      # (B|1, T, S)
        return keep[0] if keep.shape[0] == 1 else keep
    if not isinstance(allowed, Tensor):
        raise TypeError(f"expected allowed to be None, a mask_mod or a (T, S) keep-mask tensor but "
                        f"found {type(allowed).__name__}")
    keep = check_keep_values(allowed, "allowed")
    if keep.dim() == 2 and tuple(keep.shape) == (T, S):
        return keep
    if keep.dim() == 3 and tuple(keep.shape) in ((batch, T, S), (1, T, S)):
        return keep[0] if keep.shape[0] == 1 else keep
    raise ValueError(f"expected allowed of shape (T, S) = {(T, S)} (or (B, T, S) = {(batch, T, S)}) "
                     f"but found {tuple(keep.shape)}")



def relation_name(allowed: Any) -> str:
    """Readable name of a relation: ``"causal"`` for ``None``, the mask_mod's name, or the mask's shape."""
    if allowed is None:
        return "causal"
    if isinstance(allowed, Tensor):
        return f"dense mask {tuple(allowed.shape)}"
    return getattr(allowed, "__name__", None) or repr(allowed)


def uses_batch(mask_mod: Any, T: int, S: int) -> bool:
    """Whether a mask_mod reads ``b``: evaluate it with a batch index of two zeros (always in range)."""
    b = torch.zeros(2, 1, 1, 1, dtype=torch.long)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long)
    q = torch.arange(T).view(1, 1, T, 1)
    kv = torch.arange(S).view(1, 1, 1, S)
    out = torch.as_tensor(mask_mod(b, h, q, kv))
    return out.dim() == 4 and out.shape[0] == 2


def batch_dependent(allowed: Any, B: int, T: int) -> bool:
    """True when the relation differs between batch items (padding lengths, per-item documents)."""
    if isinstance(allowed, Tensor):
        return allowed.dim() == 3 and allowed.shape[0] > 1
    return callable(allowed) and uses_batch(allowed, T, T)        # non-callables: dense_allowed checks



def sweep_checked_prefixes(allowed_dense: Tensor) -> Tensor:
    """``(T,)`` bool: prefix ``L`` is checked when no output ``<= L`` may see an input ``> L``."""
    T = allowed_dense.shape[-2]
    keep = allowed_dense if allowed_dense.dim() == 2 else allowed_dense.any(0)
    # crossing[L] = any allowed (i, j) with i <= L < j
    i = torch.arange(T).view(T, 1, 1)                               # L
    rows = torch.arange(T).view(1, T, 1)
    cols = torch.arange(keep.shape[-1]).view(1, 1, -1)
    crossing = (keep.cpu().unsqueeze(0) & (rows <= i) & (cols > i)).flatten(1).any(1)
    return ~crossing
