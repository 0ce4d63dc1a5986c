"""Leaks: the dependencies a model has but its allowed relation forbids.

``find_leaks(model, x, allowed)`` computes the :func:`~attention.verify.dependency.dependency_map`
and lists the forbidden (output, input) pairs above a threshold, largest first; ``leaks_in_map``
does the comparison for a map you already have (no model call).

Shape legend: ``B`` batch, ``T`` output positions, ``S`` input positions.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import Tensor

from .calling import check_finite, check_x
from .dependency import dependency_map
from .relations import batch_dependent, dense_allowed, relation_name, uses_batch

__all__ = ["Leak", "find_leaks", "leak_atol", "leaks_in_map"]

# Leak threshold, relative to the largest dependency in the map. In float64 a blocked path gives an
# exact 0 (masked softmax weights are exactly 0, so are their gradients); anything above 1e-9 of the
# strongest dependency is a real path, not rounding.
_REL_ATOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


class Leak(NamedTuple):
    """One forbidden dependency: output ``out_pos`` depends on input ``in_pos`` with ``magnitude``.

    ``magnitude`` is ``‖∂y[out_pos]/∂x[in_pos]‖`` (see :func:`dependency_map`); ``batch`` is the
    batch item for batch-dependent relations (e.g. padding) and ``None`` otherwise.
    """

    out_pos: int
    in_pos: int
    magnitude: float
    batch: int | None = None


def leak_atol(dep_map: Tensor, atol: float | None) -> float:
    """``atol`` if given, else the default threshold: ``_REL_ATOL[dtype] ×`` the largest dependency."""
    if atol is not None:
        return float(atol)
    scale = float(dep_map.max()) if dep_map.numel() else 0.0
    return _REL_ATOL.get(dep_map.dtype, 1e-5) * scale


def leaks_in_map(dep_map: Tensor, allowed: Any = None, atol: float | None = None) -> list[Leak]:
    """The forbidden entries of a dependency map above ``atol``, largest first.

    No model call: use it to compare one map with several allowed relations.

    Args:
        dep_map: ``(T, S)`` from :func:`dependency_map`, or ``(B, T, S)`` (``reduce="none"``) for a
            batch-dependent relation.
        allowed: ``mask_mod``, dense keep-mask or ``None`` (causal), as in :func:`dense_allowed`.
        atol: entries ``<= atol`` count as no dependency. Default: ``1e-9 ×`` the largest entry
            (float64; exact zeros are what a blocked path gives).

    Returns:
        list of :class:`Leak`, sorted by magnitude (largest first), then position.
    """
    if not isinstance(dep_map, Tensor) or dep_map.dim() not in (2, 3):
        found = tuple(dep_map.shape) if isinstance(dep_map, Tensor) else type(dep_map).__name__
        raise ValueError(f"expected dep_map of shape (T, S) or (B, T, S) but found {found}")
    check_finite(dep_map, "dependency map", "(batch b, output i, input j)" if dep_map.dim() == 3
                 else "(output i, input j)", dims=dep_map.dim())
    T, S = dep_map.shape[-2:]
    batch = dep_map.shape[0] if dep_map.dim() == 3 else 1
    if dep_map.dim() == 2 and callable(allowed) and not isinstance(allowed, Tensor) \
            and uses_batch(allowed, T, S):
        raise ValueError(f"allowed relation {relation_name(allowed)} depends on the batch item: compute "
                         f"the map with reduce='none' to get (B, T, S)")
    keep = dense_allowed(allowed, T, S, batch).to(dep_map.device)
    if keep.dim() == 3 and dep_map.dim() == 2:
        raise ValueError(f"allowed of shape {tuple(keep.shape)} depends on the batch item: compute "
                         f"the map with reduce='none' to get (B, T, S)")
    atol = leak_atol(dep_map, atol)
    bad = (dep_map > atol) & ~keep                                   # (B?, T, S)
    idx = bad.nonzero()                                             # (n, 2 or 3), row-major order
    mags = dep_map[bad]                                             # (n,), same order
    order = torch.sort(mags, descending=True, stable=True).indices  # ties keep position order
    leaks = []
    for k in order.tolist():
        pos = idx[k].tolist()
        if dep_map.dim() == 3:
            leaks.append(Leak(pos[1], pos[2], float(mags[k]), pos[0]))
        else:
            leaks.append(Leak(pos[0], pos[1], float(mags[k])))
    return leaks


def find_leaks(
    model: Callable[..., Any],
    x: Tensor,
    allowed: Any = None,
    atol: float | None = None,
    *,
    probes: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> list[Leak]:
    """Every (output, input) pair the model depends on but the allowed relation forbids.

    Computes the exact :func:`dependency_map` and returns its entries above ``atol`` outside the
    allowed relation, largest first. An empty list means no forbidden dependency at this ``x``.

    The relation is about *dependencies*, not attention weights: output ``i`` of an attention layer
    always depends on input ``i`` through its own query, even where the attention mask blocks key
    ``i`` (padding). For such masks allow the diagonal too:
    ``or_masks(padding_mod(lengths), lambda b, h, q, kv: q == kv)``.

    Args:
        model: ``nn.Module`` or callable ``x (B, T, E) -> y (B, T, ...)`` (see :func:`dependency_map`).
        x: ``(B, T, E)`` input.
        allowed: ``mask_mod`` (``True`` = output ``q_idx`` may depend on input ``kv_idx``), a dense
            ``(T, T)`` keep-mask, or ``None`` for causal (``j <= i``). Default: ``None``.
        atol: threshold for "depends". Default: ``1e-9 ×`` the largest dependency.
        probes: ``None`` for the exact map; ``k`` for ``k`` random probes per output position
            (same leaks, estimated magnitudes; see :func:`dependency_map`). Default: ``None``.
        model_kwargs: extra keyword arguments for every model call. Default: none.

    Raises:
        NonFiniteError: (a ``ValueError``) when the model's output or the map holds NaN or inf:
            no verdict, never an empty list.

    Returns:
        list of :class:`Leak` ``(out_pos, in_pos, magnitude, batch)``.
    """
    x = check_x(x)
    B, T = x.shape[:2]
    per_item = batch_dependent(allowed, B, T)
    dep = dependency_map(model, x, reduce="none" if per_item else "fro", probes=probes,
                         model_kwargs=model_kwargs)
    return leaks_in_map(dep, allowed, atol)
