"""``check_entry``: the leak report of one bug-zoo model (:mod:`attention.zoo`) on a random input.

Lives in ``verify`` (not in ``zoo``) so that the zoo, a collection of models and relations, never
imports the verifier that judges it.

Shape legend: ``B`` batch, ``T`` positions, ``E`` features.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..mask_mods import MaskMod
from ..zoo import ZOO, parse_relation
from .report import LeakReport, leak_report

__all__ = ["check_entry"]


def check_entry(
    name: str,
    *,
    seq_len: int = 12,
    dim: int = 16,
    batch: int = 2,
    seed: int = 0,
    allowed: MaskMod | Tensor | str | None = None,
    fast: bool = False,
) -> LeakReport:
    """Build zoo entry ``name``, draw a random ``(batch, seq_len, dim)`` input and return its
    :class:`~attention.verify.report.LeakReport` against ``allowed`` (default: the entry's own
    relation; a string goes through :func:`attention.zoo.parse_relation`). ``fast=True`` runs the
    fast verdict (:func:`~attention.verify.report.leak_report` with ``fast=True``) instead of the
    exact map.
    """
    if name not in ZOO:
        raise ValueError(f"expected a zoo entry among {sorted(ZOO)} but found {name!r}")
    entry = ZOO[name]
    if seq_len < entry.min_seq_len:
        raise ValueError(f"expected seq_len >= {entry.min_seq_len} for {name} but found {seq_len}")
    if allowed is None:
        allowed = entry.allowed(seq_len)
    elif isinstance(allowed, str):
        allowed = parse_relation(allowed, seq_len)
    x = torch.randn(batch, seq_len, dim, generator=torch.Generator().manual_seed(seed))
    return leak_report(entry.build(dim, seed), x, allowed, seed=seed, fast=fast)
