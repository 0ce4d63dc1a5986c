"""The bug zoo: small sequence models with the information leaks people really write, and fixed twins.

Every entry names one mistake (or one correct pattern), says in a sentence what goes wrong, gives the
relation the model must respect (a ``mask_mod`` from :mod:`attention.mask_mods`: output position
``q_idx`` may depend on input position ``kv_idx``) and builds the model from a seed. The leak
detector (:func:`attention.verify.find_leaks`) must catch every buggy entry and pass every
correct one; ``python -m attention.verify --zoo`` prints that table.

    >>> entry = ZOO["off_by_one_causal_mask"]
    >>> model = entry.build(dim=16, seed=0)            # an nn.Module: x (B, T, 16) -> y (B, T, 16)
    >>> allowed = entry.allowed(12)                     # the relation at T = 12 (here: causal)

The package: :mod:`~attention.zoo.layers` (the building blocks), :mod:`~attention.zoo.entries`
(the entries and :data:`ZOO`), :mod:`~attention.zoo.relations` (relations by name,
:func:`parse_relation`, :func:`mask_gallery`). A zoo model's leak report:
:func:`attention.verify.check_entry`.

Shape legend: ``B`` batch, ``T`` positions, ``E`` features (``dim``).
"""
from __future__ import annotations
from .entries import ZOO, ZooEntry
from .layers import kv_block_size
from .relations import DOC_LEN, PREFIX, RELATIONS, WINDOW, document_ids, mask_gallery, parse_relation

__all__ = [
    "DOC_LEN",
    "PREFIX",
    "RELATIONS",
    "WINDOW",
    "ZOO",
    "ZooEntry",
    "document_ids",
    "kv_block_size",
    "mask_gallery",
    "parse_relation",
]
