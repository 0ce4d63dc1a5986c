"""Scaled dot-product attention that returns its weights, and its one-query building block.

Shape legend: ``T`` query positions, ``S`` key positions, ``D``/``d_k`` query-key size, ``d_v``
value size; ``...`` any leading batch / head dimensions.

Masks are **keep-masks** (``True``/1 = may attend, ``False``/0 = blocked), the opposite of
``torch.nn.MultiheadAttention``'s boolean masks. A query whose keys are all blocked gets weights of
0 and an output of 0, never NaN.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .mask_mods import materialize_mask
from .masks import check_keep_values, make_causal_mask

__all__ = ["scaled_dot_product_attention", "single_token_attention", "masked_softmax"]


def _check_tensor(name: str, t: object, min_dim: int, want: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor but found {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor but found dtype {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"expected {name} of shape {want} but found {tuple(t.shape)}")
    return t


def _check_dropout(dropout_p: float) -> None:
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"expected dropout_p in [0, 1) but found {dropout_p}")


def masked_softmax(scores: Tensor, keep: Tensor | None, *, is_causal: bool = False,
                   inplace: bool = False) -> Tensor:
    """Softmax over the last dim, skipping blocked keys; rows with no kept key give all zeros.

    ``scores (..., T, S)``, ``keep`` bool broadcastable to it (True = may attend) or ``None``.
    No ``-1e9`` fill (it overflows in float16): blocked keys get a bias of ``-inf`` added (kept
    keys ``+0``, which leaves their scores bit for bit), rows that would be all ``-inf`` are
    neutralised before the softmax and zeroed after it. Adding a float bias is one vectorised
    pass over the scores; a boolean ``masked_fill`` over a broadcast mask is several times slower.

    float16 scores are blocked with ``masked_fill(-inf)`` instead: a product of two moderate
    float16 vectors can overflow to ``+inf`` (``|q·k| > 65504``), and ``+inf + -inf`` is NaN, which
    would spoil the whole row although the key is blocked; the fill replaces the ``+inf`` (as
    torch's kernels, which accumulate float16 scores in float32, never see it). In float32/64 (and
    bfloat16, float32's range) a blocked score of ``+inf`` needs ``|q·k| > 3.4e38``; there the row
    becomes NaN, as with a float ``attn_mask`` in ``F.scaled_dot_product_attention``.

    ``is_causal=True`` also blocks the keys after each query, top-left aligned like
    ``make_causal_mask(T, S)`` (query ``i`` sees keys ``j <= i``). Without ``keep`` it costs one
    ``(T, S)`` bias and no mask check: every causal row keeps key 0. Default: ``False``.

    ``inplace=True`` reuses ``scores`` for the bias (and for the softmax itself when ``scores``
    needs no gradient): for a fresh scores tensor that nobody else reads, it saves whole
    ``(..., T, S)`` allocations. Default: ``False``.
    """
    no_grad = not scores.requires_grad
    T, S = scores.shape[-2:]
    if keep is not None and is_causal:
        keep = keep & make_causal_mask(T, S, device=keep.device, dtype=torch.bool)   # (..., T, S)
    fill = scores.dtype == torch.float16                          # +inf + -inf would be NaN: fill instead
    if keep is not None:
        any_kept = keep.any(dim=-1, keepdim=True)                 # (..., T, 1): cheap, on the mask
        empty_rows = None if bool(any_kept.all()) else ~any_kept  # None for any causal mask
        blocked = ~keep
    elif is_causal:
        empty_rows = None                                         # query i keeps key 0
        blocked = torch.ones(T, S, dtype=torch.bool, device=scores.device).triu_(1)   # (T, S)
    else:
        return torch.softmax(scores, -1, out=scores) if inplace and no_grad else torch.softmax(scores, -1)
    # After the bias the tensor is ours: the caller's (inplace) or a fresh sum. Without autograd
    # every later step then works in place in it: one (..., T, S) buffer in all, instead of a
    # copy per step (the allocations cost more than the softmax at large T).
    own = no_grad or inplace
    if fill:
        scores = (scores.masked_fill_(blocked, float("-inf")) if inplace
                  else scores.masked_fill(blocked, float("-inf")))
    else:
        bias = scores.new_zeros(blocked.shape).masked_fill_(blocked, float("-inf"))   # blocked's shape
        scores = scores.add_(bias) if inplace else scores + bias
    if empty_rows is not None:
        scores = scores.masked_fill_(empty_rows, 0.0) if own else scores.masked_fill(empty_rows, 0.0)
    weights = torch.softmax(scores, -1, out=scores) if no_grad else torch.softmax(scores, -1)
    if empty_rows is None:
        return weights                                            # blocked keys got exp(-inf) = 0
    # Fully blocked rows -> 0 (the softmax output is saved for backward: not in place then).
    return weights.masked_fill_(empty_rows, 0.0) if no_grad else weights.masked_fill(empty_rows, 0.0)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention over every query at once, returning ``(output, weights)``.

    Equivalent to the following (plus validation and the fully-masked-row rule)::

        scores = q @ k.transpose(-2, -1) * scale             # (..., T, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)                         # rows sum to 1
        return weights @ v, weights                          # (..., T, d_v), (..., T, S)

    Args:
        q: ``(..., T, d_k)`` queries.
        k: ``(..., S, d_k)`` keys.
        v: ``(..., S, d_v)`` values.
        mask: keep-mask broadcastable to ``(..., T, S)``; ``True``/1 = may attend, ``False``/0 =
            blocked (the opposite of ``nn.MultiheadAttention``). Float/int masks must hold only
            0 and 1. A ``mask_mod(b, h, q_idx, kv_idx)`` predicate (see ``attention.mask_mods``) is
            evaluated with ``b = h = 0`` on the ``(T, S)`` grid. Default: ``None``.
        dropout_p: dropout probability on the weights, applied only when ``training=True``.
            Default: 0.0.
        training: apply dropout. Default: ``False``.
        scale: multiplier of ``q @ k^T``. Default: ``1 / sqrt(d_k)``.

    Returns:
        ``output (..., T, d_v)`` and ``weights (..., T, S)``: the weights that multiplied ``v``
        (after dropout when it is active). A query with every key blocked gets zero weights and a
        zero output.
    """
    q = _check_tensor("q", q, 2, "(..., T, d_k)")
    k = _check_tensor("k", k, 2, "(..., S, d_k)")
    v = _check_tensor("v", v, 2, "(..., S, d_v)")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"expected q and k to share the last dim d_k but found q {tuple(q.shape)} and "
            f"k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"expected k and v to have the same number of positions S but found k "
            f"{tuple(k.shape)} and v {tuple(v.shape)}"
        )
    _check_dropout(dropout_p)
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    try:
        lead = tuple(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    except RuntimeError:
        raise ValueError(
            f"expected q, k and v with broadcastable leading dims (...) but found q "
            f"{tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)}"
        ) from None

    keep = None
    if callable(mask) and not isinstance(mask, Tensor):   # a mask_mod(b, h, q_idx, kv_idx) predicate
        mask = materialize_mask(mask, 1, 1, T, S, device=q.device)[0, 0]   # (T, S)
    if mask is not None:
        keep = check_keep_values(mask).to(q.device)
        scores_shape = lead + (T, S)
        try:
            fits = tuple(torch.broadcast_shapes(keep.shape, scores_shape)) == scores_shape
        except RuntimeError:
            fits = False
        if not fits:  # the mask may not add dims or grow any dim of the scores
            raise ValueError(
                f"mask of shape {tuple(keep.shape)} cannot be broadcast to the scores' shape "
                f"(..., T, S) = {scores_shape}"
            )

    scores = (q @ k.transpose(-2, -1)) * scale         # (..., T, d_k) @ (..., d_k, S) -> (..., T, S)
    weights = masked_softmax(scores, keep)              # (..., T, S)
    if training and dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return weights @ v, weights                         # (..., T, S) @ (..., S, d_v) -> (..., T, d_v)


def single_token_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention for one query: the building block that equals one row of the full attention.

    Args:
        q: ``(..., d_k)`` one query vector (per leading index).
        k: ``(..., S, d_k)`` keys.
        v: ``(..., S, d_v)`` values.
        mask: ``(..., S)`` keep-mask (``True``/1 = may attend, ``False``/0 = blocked; the
            opposite of ``nn.MultiheadAttention``). Default: ``None``.
        dropout_p, training, scale: as in :func:`scaled_dot_product_attention`.

    Returns:
        ``output (..., d_v)`` and ``weights (..., S)``.
    """
    q = _check_tensor("q", q, 1, "(..., d_k)")
    if mask is not None:
        mask = check_keep_values(mask)
        if mask.dim() == 0:
            raise ValueError(f"expected mask of shape (..., S) but found {tuple(mask.shape)}")
        mask = mask.unsqueeze(-2)                       # (..., 1, S)
    out, weights = scaled_dot_product_attention(
        q.unsqueeze(-2), k, v, mask=mask, dropout_p=dropout_p, training=training, scale=scale
    )                                                   # (..., 1, d_v), (..., 1, S)
    return out.squeeze(-2), weights.squeeze(-2)
