"""Masks as predicates, in FlexAttention's ``mask_mod`` form, and their dense evaluation.

A ``mask_mod(b, h, q_idx, kv_idx) -> bool`` says whether query ``q_idx`` of batch item ``b`` and
head ``h`` may attend to key ``kv_idx`` (True = may attend: a keep-mask, the opposite of
``torch.nn.MultiheadAttention``'s boolean masks). Every mod below works on plain ints
(``mod(0, 0, 3, 2) -> True``) and on broadcast index tensors (so :func:`materialize_mask` evaluates
it in one shot, and ``torch.nn.attention.flex_attention.create_mask`` can evaluate it under
``vmap``): they use only torch ops, comparisons and ``&``/``|``, never Python ``if``/``and``/``or``
on index values. Tensor keep-masks (``make_causal_mask``, ``prepare_mask``) live in
:mod:`attention.masks`.

Shape legend: ``B`` batch, ``H`` heads, ``T`` query positions, ``S`` key positions.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .checks import ALIGNS, check_positive_int

__all__ = [
    "MaskMod",
    "and_masks",
    "causal_mask_mod",
    "causal_mod",
    "document_mask",
    "full_mod",
    "materialize_mask",
    "or_masks",
    "padding_mod",
    "prefix_lm",
    "sliding_window",
]


class MaskMod:
    """A named ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (True = may attend).

    A thin wrapper that gives a predicate a readable name (``repr(sliding_window(4))`` is
    ``"sliding_window(4)"``, also its ``__name__``) and turns the 0-dim tensor some predicates return
    for plain-int indices into a Python ``bool``. Calling it with index tensors returns the bool
    tensor the predicate computes, so it can be passed to FlexAttention's ``create_mask`` /
    ``create_block_mask`` unchanged.
    """

    def __init__(self, fn, name: str) -> None:
        if not callable(fn):
            raise TypeError(f"expected fn to be callable but found {type(fn).__name__}")
        self.fn = fn
        self.__name__ = name

    def __call__(self, b, h, q_idx, kv_idx):
        out = self.fn(b, h, q_idx, kv_idx)
        if not any(isinstance(i, Tensor) for i in (b, h, q_idx, kv_idx)) and isinstance(out, Tensor):
            return bool(out)                          # plain ints in -> plain bool out
        return out

    def __repr__(self) -> str:
        return self.__name__


def _mod_name(mod) -> str:
    return getattr(mod, "__name__", None) or repr(mod)


def _check_mask_mods(name: str, mods) -> None:
    if not mods:
        raise ValueError(f"expected at least one mask_mod in {name}() but found none")
    for i, m in enumerate(mods):
        if not callable(m):
            raise TypeError(f"expected every argument of {name}() to be a mask_mod (callable) but "
                            f"argument {i} is {type(m).__name__}")


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _full(b, h, q_idx, kv_idx):
    return (kv_idx >= 0) | (kv_idx < 0)               # True of the broadcast shape (works on ints)


causal_mod = MaskMod(_causal, "causal")
"""Top-left causal ``mask_mod``: ``kv_idx <= q_idx`` (the mask of ``make_causal_mask(T, S)``)."""

full_mod = MaskMod(_full, "full")
"""Every query may attend to every key (bidirectional, no mask)."""


def causal_mask_mod(align: str = "top_left", T: int | None = None, S: int | None = None) -> MaskMod:
    """Causal ``mask_mod`` aligned like ``make_causal_mask``.

    ``align="top_left"``: ``kv_idx <= q_idx`` (no sizes needed; returns :data:`causal_mod`).
    ``align="bottom_right"``: ``kv_idx <= q_idx + (S - T)``, the last query lines up with the last key:
    a block of ``T`` new queries at the end of ``S`` keys (KV-cache decoding). Needs ``T`` and ``S``.

    Args:
        align: ``"top_left"`` or ``"bottom_right"``. Default: ``"top_left"``.
        T: query positions (bottom-right only).
        S: key positions (bottom-right only).
    """
    if align not in ALIGNS:
        raise ValueError(f"expected align to be one of {ALIGNS} but found {align!r}")
    if align == "top_left":
        return causal_mod
    if T is None or S is None:
        raise ValueError(f"align='bottom_right' needs T and S (the diagonal sits at S - T) but found "
                         f"T={T}, S={S}")
    T, S = check_positive_int("T", T), check_positive_int("S", S)
    offset = S - T

    def bottom_right(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + offset

    return MaskMod(bottom_right, f"causal(bottom_right, T={T}, S={S})")


def sliding_window(window: int) -> MaskMod:
    """Causal sliding window: each query sees itself and the ``window - 1`` keys before it.

    ``q_idx - window < kv_idx <= q_idx``: at most ``window`` keys, the query's own position
    included. ``sliding_window(1)`` is the diagonal; a window ``>= T`` is plain causal.

    Args:
        window: ``W >= 1``, the number of keys a query may see.
    """
    W = check_positive_int("window", window)

    def window_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < W)

    return MaskMod(window_mod, f"sliding_window({W})")


def prefix_lm(prefix: int) -> MaskMod:
    """Prefix-LM: bidirectional over the first ``P`` positions, causal after.

    ``kv_idx < P or kv_idx <= q_idx``: every query sees the whole prefix ``0..P-1`` (so prefix
    queries also see later prefix keys), and past keys causally.

    Args:
        prefix: ``P >= 0``, the length of the bidirectional prefix (0 = plain causal).
    """
    if isinstance(prefix, bool) or not isinstance(prefix, int):
        raise TypeError(f"expected prefix to be an int but found {type(prefix).__name__}")
    if prefix < 0:
        raise ValueError(f"expected prefix >= 0 but found prefix={prefix}")
    P = prefix

    def prefix_mod(b, h, q_idx, kv_idx):
        return (kv_idx < P) | (kv_idx <= q_idx)

    return MaskMod(prefix_mod, f"prefix_lm({P})")


def _int_vector(name: str, values, dims: tuple[int, ...] = (1,)) -> Tensor:
    t = torch.as_tensor(values)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"expected integer {name} but found dtype {t.dtype}")
    if t.dim() not in dims:
        want = " or ".join({1: "(L,)", 2: "(B, L)"}[d] for d in dims)
        raise ValueError(f"expected {name} of shape {want} but found {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"expected a non-empty {name} but found shape {tuple(t.shape)}")
    return t.long()


def _on_device_of(table: Tensor, index) -> Tensor:
    """``table`` on the device of ``index`` (a type check, never a check of index values)."""
    return table.to(index.device) if isinstance(index, Tensor) else table


def _short_list(t: Tensor) -> str:
    vals = t.tolist()
    if t.dim() == 1 and len(vals) > 12:
        return "[" + ", ".join(map(str, vals[:12])) + f", ... ({len(vals)})]"
    return str(vals)


def document_mask(doc_ids) -> MaskMod:
    """Packed sequences: attend only within the same document, causally.

    ``doc_ids[q_idx] == doc_ids[kv_idx] and kv_idx <= q_idx``. Use it when several documents are
    packed into one row: without it a token sees the end of the previous document.

    Args:
        doc_ids: ``(L,)`` document id of every position (shared by the batch), e.g.
            ``[0, 0, 0, 1, 1, 2]``, or ``(B, L)`` per batch item. ``L`` must cover every query and
            key position the mask is evaluated at.
    """
    ids = _int_vector("doc_ids", doc_ids, dims=(1, 2))
    if ids.dim() == 1:
        def doc_mod(b, h, q_idx, kv_idx):
            d = _on_device_of(ids, q_idx)
            return (d[q_idx] == d[kv_idx]) & (kv_idx <= q_idx)
    else:
        def doc_mod(b, h, q_idx, kv_idx):
            d = _on_device_of(ids, q_idx)
            return (d[b, q_idx] == d[b, kv_idx]) & (kv_idx <= q_idx)

    mod = MaskMod(doc_mod, f"document_mask({_short_list(ids)})")
    mod.doc_ids = ids
    return mod


def padding_mod(lengths) -> MaskMod:
    """Key padding by lengths: key ``kv_idx`` is real in batch item ``b`` when ``kv_idx < lengths[b]``.

    The predicate form of :func:`make_padding_mask` (right padding: real tokens first). It does not
    block queries; combine it with a causal or window mod using :func:`and_masks`.

    Args:
        lengths: ``(B,)`` non-negative integer lengths.
    """
    lens = _int_vector("lengths", lengths)
    if bool((lens < 0).any()):
        raise ValueError(f"expected every length >= 0 but found {lens.tolist()}")

    def pad_mod(b, h, q_idx, kv_idx):
        return kv_idx < _on_device_of(lens, kv_idx)[b]

    mod = MaskMod(pad_mod, f"padding({_short_list(lens)})")
    mod.lengths = lens
    return mod


def and_masks(*mask_mods) -> MaskMod:
    """Intersection: a key is allowed when every ``mask_mod`` allows it."""
    _check_mask_mods("and_masks", mask_mods)

    def and_mod(b, h, q_idx, kv_idx):
        out = mask_mods[0](b, h, q_idx, kv_idx)
        for m in mask_mods[1:]:
            out = out & m(b, h, q_idx, kv_idx)
        return out

    return MaskMod(and_mod, "and(" + ", ".join(_mod_name(m) for m in mask_mods) + ")")


def or_masks(*mask_mods) -> MaskMod:
    """Union: a key is allowed when any ``mask_mod`` allows it."""
    _check_mask_mods("or_masks", mask_mods)

    def or_mod(b, h, q_idx, kv_idx):
        out = mask_mods[0](b, h, q_idx, kv_idx)
        for m in mask_mods[1:]:
            out = out | m(b, h, q_idx, kv_idx)
        return out

    return MaskMod(or_mod, "or(" + ", ".join(_mod_name(m) for m in mask_mods) + ")")


def materialize_mask(
    mask_mod,
    B: int,
    H: int,
    T: int,
    S: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Evaluate a ``mask_mod`` on every ``(b, h, q, kv)`` and return the dense keep-mask.

    One call of ``mask_mod`` on broadcast index tensors ``b (B,1,1,1)``, ``h (1,H,1,1)``,
    ``q (1,1,T,1)``, ``kv (1,1,1,S)`` (no Python loops). Dimensions the predicate does not depend on
    stay size 1, so ``materialize_mask(causal_mod, 8, 4, T, S)`` is ``(1, 1, T, S)``. Equals
    ``torch.nn.attention.flex_attention.create_mask(mask_mod, B, H, T, S)`` after broadcasting.

    Keep-mask convention: ``True`` = may attend.

    Args:
        mask_mod: ``mask_mod(b, h, q_idx, kv_idx) -> bool``.
        B, H, T, S: batch, heads, query and key positions.
        device: device of the index tensors and of the result. Default: ``"cpu"``.

    Returns:
        bool tensor of shape ``(B or 1, H or 1, T, S)``.
    """
    if not callable(mask_mod):
        raise TypeError(f"expected mask_mod to be callable but found {type(mask_mod).__name__}")
    for name, v in (("B", B), ("H", H), ("T", T), ("S", S)):
        check_positive_int(name, v)
    device = torch.device("cpu") if device is None else torch.device(device)
    b = torch.arange(B, device=device).view(B, 1, 1, 1)
    h = torch.arange(H, device=device).view(1, H, 1, 1)
    q = torch.arange(T, device=device).view(1, 1, T, 1)
    kv = torch.arange(S, device=device).view(1, 1, 1, S)
    try:
        out = mask_mod(b, h, q, kv)
    except IndexError as err:
        raise ValueError(
            f"mask_mod {_mod_name(mask_mod)} could not be evaluated for (B, H, T, S) = "
            f"{(B, H, T, S)}: {err} (are its doc_ids / lengths long enough?)"
        ) from err
    out = torch.as_tensor(out, device=device)
    if out.dtype != torch.bool:
        raise TypeError(f"expected mask_mod {_mod_name(mask_mod)} to return bool but found {out.dtype}")
    try:
        shape = torch.broadcast_shapes(out.shape, (1, 1, T, S))
    except RuntimeError as err:
        raise ValueError(f"mask_mod {_mod_name(mask_mod)} returned shape {tuple(out.shape)}, which "
                         f"does not broadcast to (B, H, T, S) = {(B, H, T, S)}") from err
    if len(shape) != 4 or shape[0] not in (1, B) or shape[1] not in (1, H) or shape[2:] != (T, S):
        raise ValueError(f"mask_mod {_mod_name(mask_mod)} returned shape {tuple(out.shape)}, which "
                         f"does not broadcast to (B, H, T, S) = {(B, H, T, S)}")
    return out.expand(shape).contiguous()
