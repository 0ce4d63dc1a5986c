"""Mask builders and mask validation.

One rule everywhere: a mask is a **keep-mask**. ``True``/``1`` means "this query may attend to
this key", ``False``/``0`` means "blocked". This is the convention of ``torch.tril(torch.ones(T, S))``
and of the boolean ``attn_mask`` of ``torch.nn.functional.scaled_dot_product_attention``; it is
the *opposite* of the boolean ``attn_mask`` and ``key_padding_mask`` of
``torch.nn.MultiheadAttention`` (there ``True`` means "blocked").

Masks as predicates (``mask_mod(b, h, q_idx, kv_idx)``: ``causal_mod``, ``sliding_window``, ...)
live in :mod:`attention.mask_mods`; this module re-exports their names
because the README and older code import them from ``attention.masks``.

Shape legend: ``B`` batch, ``H`` heads, ``T`` query positions, ``S`` key positions.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .checks import ALIGNS, check_positive_int
# The predicates are re-exported for ``from attention.masks import sliding_window`` (public since the
# README named this module); new code imports them from attention.mask_mods, which never imports
# this module (no cycle).
from .mask_mods import (
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
    "check_keep_values",
    "make_causal_mask",
    "make_padding_mask",
    "prepare_mask",
    # re-exported from attention.mask_mods
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


def make_causal_mask(
    T: int,
    S: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    align: str = "top_left",
) -> Tensor:
    """Lower-triangular keep-mask: query ``i`` may attend to keys ``j <= i``.

    Equivalent to ``torch.tril(torch.ones(T, S, dtype=dtype, device=device))`` for the default
    ``align="top_left"``. With ``align="bottom_right"`` the diagonal is shifted so that the *last*
    query lines up with the *last* key: the layout of a block of ``T`` new queries at the end of a
    longer key sequence (KV-cache decoding), i.e. ``torch.tril(ones(T, S), diagonal=S - T)``.

    Keep-mask convention: 1 = may attend, 0 = blocked (the opposite of
    ``nn.MultiheadAttention``'s boolean masks).

    Args:
        T: number of query positions. Must be >= 1.
        S: number of key positions. Default: ``T``.
        device: device of the result. Default: ``"cpu"``.
        dtype: dtype of the result; ``torch.bool`` gives a boolean mask. Default: ``torch.float32``.
        align: ``"top_left"`` or ``"bottom_right"``. Default: ``"top_left"``.

    Returns:
        ``(T, S)`` tensor of ones (keep) and zeros (blocked).
    """
    T = check_positive_int("T", T)
    S = T if S is None else check_positive_int("S", S)
    if align not in ALIGNS:
        raise ValueError(f"expected align to be one of {ALIGNS} but found {align!r}")
    diagonal = 0 if align == "top_left" else S - T
    keep = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=diagonal)
    return keep.to(dtype)


def make_padding_mask(lengths: Tensor | Sequence[int], S: int) -> Tensor:
    """Key-padding keep-mask from sequence lengths: ``True`` = real token, ``False`` = padding.

    Args:
        lengths: ``(B,)`` integer lengths, each in ``0..S``. Real tokens come first (right padding).
        S: padded sequence length.

    Returns:
        ``(B, S)`` bool tensor with ``mask[b, s] = s < lengths[b]``.
    """
    S = check_positive_int("S", S)
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"expected lengths of shape (B,) but found {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
        raise TypeError(f"expected integer lengths but found dtype {lengths.dtype}")
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > S):
        raise ValueError(
            f"expected every length in 0..{S} (S={S}) but found {lengths.tolist()}"
        )
    return torch.arange(S, device=lengths.device)[None, :] < lengths[:, None]  # (B, S)


def check_keep_values(mask: Tensor, name: str = "mask") -> Tensor:
    """Return ``mask`` as bool after checking a float/int mask holds only 0 and 1."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor but found {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex():
        raise TypeError(f"expected {name} to be bool, integer or float but found {mask.dtype}")
    is_binary = ((mask == 0) | (mask == 1)).all()
    if not bool(is_binary):
        bad = mask[(mask != 0) & (mask != 1)]
        sample = bad.flatten()[:3].tolist()
        hint = ""
        if bool(torch.isinf(bad).any()) or bool((bad < 0).any()):
            hint = (
                " It looks like an additive mask (0 / -inf): this library takes keep-masks, so pass "
                "`additive_mask == 0` (True = may attend) instead."
            )
        raise ValueError(
            f"expected {name} to hold only 0 and 1 (1 = may attend, 0 = blocked) but found "
            f"values such as {sample}.{hint}"
        )
    return mask != 0


def prepare_mask(
    mask: Tensor,
    batch: int,
    heads: int,
    T: int,
    S: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Validate a keep-mask and broadcast it to ``(B|1, H|1, T, S)`` bool.

    Accepted shapes: ``(S,)``, ``(T, S)``, ``(B, T, S)``, ``(B, 1|H, T, S)``; any dimension may also
    be 1 to broadcast. A ``mask_mod(b, h, q_idx, kv_idx) -> bool`` predicate (see
    :func:`sliding_window`, :func:`document_mask`, ...) is accepted too and materialized with
    :func:`materialize_mask`. Bool, integer and float masks are accepted; integer and float masks must
    hold only 0 and 1 (an additive ``-inf`` mask is rejected with a message that says so).

    Keep-mask convention: ``True``/1 = may attend, ``False``/0 = blocked (the opposite of
    ``nn.MultiheadAttention``'s boolean ``attn_mask``).

    Args:
        mask: the keep-mask.
        batch, heads, T, S: the sizes ``B, H, T, S`` it must broadcast to.
        device: move the result there. Default: the mask's device.

    Returns:
        bool tensor of shape ``(B or 1, H or 1, T, S)``.
    """
    if callable(mask) and not isinstance(mask, Tensor):             # a mask_mod predicate
        return materialize_mask(mask, batch, heads, T, S, device=device)
    keep = check_keep_values(mask)
    target = (batch, heads, T, S)
    if keep.dim() == 0 or keep.dim() > 4:
        raise ValueError(
            f"expected mask of shape (S), (T, S), (B, T, S) or (B, H, T, S) broadcastable to "
            f"(B, H, T, S) = {target} but found {tuple(keep.shape)}"
        )
    shape4 = (1,) * (4 - keep.dim()) + tuple(keep.shape)
    if keep.dim() == 3:  # (B, T, S): the leading dim is the batch, heads broadcast
        shape4 = (keep.shape[0], 1, keep.shape[1], keep.shape[2])
    for got, want in zip(shape4, target):
        if got not in (1, want):
            raise ValueError(
                f"mask of shape {tuple(keep.shape)} cannot be broadcast to (B, H, T, S) = {target}"
            )
    keep = keep.reshape(shape4)
    keep = keep.expand(shape4[0], shape4[1], T, S)  # (B|1, H|1, T, S), no copy
    if device is not None:
        keep = keep.to(device)
    return keep

