"""The zoo's relations: the constants its models are built for, relations by name, and pictures.

A relation says which input positions output ``q_idx`` may depend on, as a ``mask_mod`` from
:mod:`attention.mask_mods` (True = may depend). :data:`RELATIONS` maps a name to ``T -> mask_mod``;
:func:`parse_relation` reads the text form the CLI and the dashboard take; :func:`mask_gallery`
draws the mask zoo as small dense keep-masks.

Shape legend: ``T`` positions, ``S`` key positions.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..mask_mods import (
    MaskMod,
    and_masks,
    causal_mask_mod,
    causal_mod,
    document_mask,
    full_mod,
    materialize_mask,
    or_masks,
    padding_mod,
    prefix_lm,
    sliding_window,
)

__all__ = [
    "DOC_LEN",
    "PREFIX",
    "RELATIONS",
    "WINDOW",
    "document_ids",
    "mask_gallery",
    "padding_relation",
    "parse_relation",
]

WINDOW = 3      # declared sliding-window width (keys per query, itself included)
PREFIX = 3      # prefix-LM: bidirectional over positions 0..PREFIX-1
DOC_LEN = 4     # packed documents of DOC_LEN tokens each: ids 0,0,0,0,1,1,1,1,...


def document_ids(T: int, device: torch.device | str | None = None) -> Tensor:
    """``(T,)`` document id of every position when documents of ``DOC_LEN`` tokens are packed."""
    return torch.arange(T, device=device) // DOC_LEN


def _causal(T: int) -> MaskMod:
    return causal_mod


def _window(T: int) -> MaskMod:
    return sliding_window(WINDOW)


def _prefix(T: int) -> MaskMod:
    return prefix_lm(PREFIX)


def _documents(T: int) -> MaskMod:
    mod = document_mask(document_ids(T))
    mod.__name__ = f"document_mask({DOC_LEN}-token docs)"       # short name for tables
    return mod


RELATIONS: dict[str, Callable[[int], MaskMod]] = {
    "causal": _causal,
    "sliding_window": _window,
    "prefix_lm": _prefix,
    "document": _documents,
    "full": lambda T: full_mod,
}
"""Allowed relations a user can pick, by name: ``T -> mask_mod`` with the zoo's constants."""


def _diagonal(b, h, q_idx, kv_idx):
    return q_idx == kv_idx


def padding_relation(lengths) -> MaskMod:
    """An encoder with key padding: output ``i`` of batch item ``b`` may depend on every real input
    ``j < lengths[b]`` (both directions) and on input ``i`` itself (its own query reads it even
    where the mask blocks that key).

    Args:
        lengths: ``(B,)`` non-negative lengths, one per batch item (real tokens first).
    """
    pad = padding_mod(lengths)
    mod = or_masks(pad, MaskMod(_diagonal, "diagonal"))
    return MaskMod(mod, f"padding({pad.lengths.tolist()})")


def parse_relation(spec: str, T: int) -> MaskMod:
    """An allowed relation from text: a :data:`RELATIONS` name (``causal``, ``full``, ...),
    ``sliding:W`` (output ``i`` may depend on inputs ``i-W+1..i``: one layer's window of ``W``;
    ``N`` stacked layers reach ``N·(W-1)+1``), ``prefix:P``, ``document:IDS`` (one id per position,
    comma-separated, e.g. ``document:0,0,0,1,1,2``) or ``padding:LENS`` (one length per batch
    item, e.g. ``padding:5,3``; see :func:`padding_relation`).

    Raises:
        ValueError: naming the spec and what was expected.
    """
    if not isinstance(spec, str):
        raise TypeError(f"expected the relation as a string but found {type(spec).__name__}")
    if spec in RELATIONS:
        return RELATIONS[spec](T)
    kind, sep, arg = spec.partition(":")
    try:
        if sep and kind == "sliding":
            return sliding_window(int(arg))
        if sep and kind == "prefix":
            return prefix_lm(int(arg))
        if sep and kind == "document":
            ids = [int(v) for v in arg.split(",")]
            if len(ids) != T:
                raise ValueError(f"document:IDS needs one id per position (T={T}) but found {len(ids)} ids")
            return document_mask(ids)
        if sep and kind == "padding":
            lens = [int(v) for v in arg.split(",")]
            if any(not 0 <= n <= T for n in lens):
                raise ValueError(f"padding:LENS needs lengths in 0..T={T} but found {lens}")
            return padding_relation(lens)
    except (ValueError, TypeError) as err:
        raise ValueError(f"bad relation {spec!r}: {err}") from None
    raise ValueError(f"expected a relation among {sorted(RELATIONS)} or sliding:W, prefix:P, "
                     f"document:IDS, padding:LENS but found {spec!r}")


def mask_gallery(T: int = 12) -> dict[str, Tensor]:
    """The mask zoo as small dense keep-masks ``(T_q, S)`` (``True`` = may attend), by name.

    For pictures: causal (both alignments, bottom-right with ``T // 2`` queries on ``T`` keys),
    sliding window, prefix-LM, packed documents, causal with key padding (length ``T - 3``; named
    "causal + padding", as it is drawn) and a composition.
    """
    Tq = max(1, T // 2)
    docs = document_mask(document_ids(T))
    mods = {
        "causal": (causal_mod, T, T),
        "causal (bottom-right)": (causal_mask_mod("bottom_right", T=Tq, S=T), Tq, T),
        f"sliding_window({WINDOW})": (sliding_window(WINDOW), T, T),
        f"prefix_lm({PREFIX})": (prefix_lm(PREFIX), T, T),
        f"document ({DOC_LEN}-token docs)": (docs, T, T),
        f"causal + padding (length {max(T - 3, 0)})": (and_masks(causal_mod, padding_mod([max(T - 3, 0)])), T, T),
        f"sliding_window({WINDOW}) & document": (and_masks(sliding_window(WINDOW), docs), T, T),
    }
    return {name: materialize_mask(mod, 1, 1, q, k)[0, 0] for name, (mod, q, k) in mods.items()}
