"""Long-context attention maps: weights computed in query tiles, pooled on the device, shipped as pixels.

At ``T = S = 4096`` with 16 heads the full weights ``(H, T, S)`` are 1 GiB of float32, and on a
GPU copying them to the host costs far more than computing them. The functions here never hold
more than one tile of query rows ``(..., H, tile, S)``: each tile is soft-maxed over its **full**
key rows (so every weight is exact), reduced on its own device to the pixel grid of the map, and
only the pixels travel to the host.

- :func:`pooled_attention_maps`: every head's ``T x S`` map, max-pooled to about ``pixels`` a side.
- :func:`attention_window`: rows ``q0:q1`` x cols ``k0:k1`` of that map (a zoom), exact when it
  fits ``pixels``, normalised over the whole key row like the full map.
- :func:`attention_row`: one query's exact row, at any ``T``.
- :func:`exact_weight`: one cell, exactly (hover).
- :func:`resolve_device`: ``"auto" | "cpu" | "cuda"`` to a ``torch.device``.

Shape legend: ``B`` batch (optional), ``H`` query heads, ``K`` key heads (``H % K == 0``:
grouped-query attention), ``T`` query positions, ``S`` key positions, ``D`` head size, ``R x C``
pixels of a map, ``f`` the pooling factor (one pixel covers ``f x f`` positions).

Masks are **keep-masks** (``True``/1 = may attend) as everywhere in this library; a query whose
keys are all blocked gets weights of 0, never NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .functional import masked_softmax
from .masks import check_keep_values

__all__ = [
    "PooledMaps",
    "attention_row",
    "attention_window",
    "exact_weight",
    "pooled_attention_maps",
    "resolve_device",
]

TILE_BYTES = 8 * 2**20    # default budget for one tile of scores (B * H * tile * S elements)
_REDUCTIONS = ("max", "mean")


@dataclass(frozen=True)
class PooledMaps:
    """A window of the attention maps reduced to a pixel grid.

    Attributes:
        maps: ``(..., H, R, C)`` float32 on the CPU. Pixel ``(r, c)`` reduces (``reduce``) the
            weights of queries ``q_bounds[r]`` and keys ``k_bounds[c]``.
        factor: ``f``, positions per pixel side; ``1`` means the pixels are the exact weights.
        q_range: ``(q0, q1)``, the query rows covered (``q1`` exclusive).
        k_range: ``(k0, k1)``, the key columns covered.
        reduce: ``"max"`` or ``"mean"``.
        max_future_weight: the largest exact weight that a query of ``q_range`` puts on a later key
            (``j > i``, any of the ``S`` keys, not only ``k_range``): for the whole map, equal to
            ``attention.max_future_weight(full_weights)``. 0 under a causal mask.
    """

    maps: Tensor
    factor: int
    q_range: tuple[int, int]
    k_range: tuple[int, int]
    reduce: str
    max_future_weight: float

    @property
    def exact(self) -> bool:
        """``True`` when every pixel is one weight (``factor == 1``)."""
        return self.factor == 1

    @property
    def q_bounds(self) -> Tensor:
        """``(R, 2)`` int64: ``[start, stop)`` query positions of each pixel row."""
        return _edges(self.q_range, self.factor)

    @property
    def k_bounds(self) -> Tensor:
        """``(C, 2)`` int64: ``[start, stop)`` key positions of each pixel column."""
        return _edges(self.k_range, self.factor)

    @property
    def image_bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in key/query coordinates, cell centres on integers.

        Every pixel is ``f`` positions wide, so the last row/column may reach past ``q1``/``k1``
        (those positions hold no weight); the ``bounds`` of an ``hv.Image`` of ``maps[h]``.
        """
        (q0, _), (k0, _) = self.q_range, self.k_range
        R, C = self.maps.shape[-2:]
        f = self.factor
        return (k0 - 0.5, q0 - 0.5, k0 + C * f - 0.5, q0 + R * f - 0.5)


def _edges(rng: tuple[int, int], f: int) -> Tensor:
    start = torch.arange(rng[0], rng[1], f)                   # (R,)
    return torch.stack([start, (start + f).clamp(max=rng[1])], dim=1)  # (R, 2)


# ----------------------------------------------------------------------------------------------
# devices
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"[:N]`` as a ``torch.device``.

    Raises ``ValueError`` for a CUDA device this process cannot use, instead of failing later
    inside a kernel. Default: ``"auto"``.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"expected device 'auto', 'cpu' or 'cuda' but found {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"expected device 'auto', 'cpu' or 'cuda' but found {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"expected a usable CUDA device but found device={device!r} while "
                f"torch.cuda.is_available() is False (no GPU, or a CPU-only torch build): use "
                f"device='auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"expected a CUDA index in 0..{torch.cuda.device_count() - 1} but found device={device!r}"
            )
    return dev


# ----------------------------------------------------------------------------------------------
# validation
def _check_qk(q: object, k: object) -> tuple[Tensor, Tensor, bool]:
    """Check shapes; return ``q (B, H, T, D)``, ``k (B, H, S, D)`` (key heads repeated for GQA)."""
    for name, t, pos in (("q", q, "T"), ("k", k, "S")):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected {name} to be a torch.Tensor but found {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"expected {name} to be a floating-point tensor but found dtype {t.dtype}")
        if t.dim() not in (3, 4):
            raise ValueError(f"expected {name} of shape (H, {pos}, D) or (B, H, {pos}, D) but found "
                             f"{tuple(t.shape)}")
    if k.dim() != q.dim():
        raise ValueError(f"expected k with {q.dim()} dims like q {tuple(q.shape)} but found k "
                         f"{tuple(k.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"expected q and k to share the head size D but found q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}")
    if q.shape[:-3] != k.shape[:-3]:
        raise ValueError(f"expected q and k with the same batch size B but found q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}")
    H, Kh = q.shape[-3], k.shape[-3]
    if Kh == 0 or H % Kh:
        raise ValueError(f"expected k with H={H} heads (or a divisor of H: grouped-query) but found "
                         f"k {tuple(k.shape)} for q {tuple(q.shape)}")
    if q.shape[-2] < 1 or k.shape[-2] < 1:
        raise ValueError(f"expected at least one query and one key position but found q "
                         f"{tuple(q.shape)} and k {tuple(k.shape)}")
    batched = q.dim() == 4
    q4, k4 = (q, k) if batched else (q[None], k[None])          # (B, H, T, D), (B, K, S, D)
    if Kh != H:
        B, _, S, D = k4.shape
        k4 = k4[:, :, None].expand(B, Kh, H // Kh, S, D).reshape(B, H, S, D)  # kv head h // G
    return q4, k4, batched


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {name} to be an int but found {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        want = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"expected {name} {want} but found {name}={value}")
    return value


def _check_range(name: str, rng: object, n: int, axis: str) -> tuple[int, int]:
    want = f"expected {name} = (start, stop) with 0 <= start < stop <= {axis} = {n}"
    if (not isinstance(rng, (tuple, list)) or len(rng) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in rng)):
        raise ValueError(f"{want} but found {name}={rng!r}")
    start, stop = rng
    if not 0 <= start < stop <= n:
        hint = " (reversed?)" if stop <= start else ""
        raise ValueError(f"{want} but found {name}={tuple(rng)}{hint}")
    return start, stop


class _TileMask:
    """The keep-mask of query rows ``i0:i1`` and keys ``0:s``, made on demand on the tile's device.

    ``mask`` is ``None``, ``"causal"`` (top-left: key ``j <= i``), a keep-mask broadcastable to
    ``q``'s scores ``(..., H, T, S)``, or a ``mask_mod(b, h, q_idx, kv_idx)`` predicate.
    """

    def __init__(self, mask, B: int, H: int, T: int, S: int, batched: bool) -> None:
        self.kind, self.keep, self.mod = "none", None, None
        if mask is None:
            return
        if isinstance(mask, str):
            if mask != "causal":
                raise ValueError(f"expected mask None, 'causal', a keep-mask tensor or a mask_mod but "
                                 f"found mask={mask!r}")
            self.kind = "causal"
        elif isinstance(mask, Tensor):
            keep = check_keep_values(mask)
            scores = ((B,) if batched else ()) + (H, T, S)
            try:
                fits = tuple(torch.broadcast_shapes(keep.shape, scores)) == scores
            except RuntimeError:
                fits = False
            if not fits:
                lead = "(B, H, T, S)" if batched else "(H, T, S)"
                raise ValueError(f"expected mask broadcastable to the scores' shape {lead} = {scores} "
                                 f"but found {tuple(keep.shape)}")
            keep = keep.reshape((1,) * (4 - keep.dim()) + tuple(keep.shape))   # (B|1, H|1, T|1, S|1)
            self.kind, self.keep = "tensor", keep.expand(*keep.shape[:2], T, S)  # a view, no copy
        elif callable(mask):
            self.kind, self.mod = "mod", mask
        else:
            raise TypeError(f"expected mask None, 'causal', a keep-mask tensor or a mask_mod but found "
                            f"{type(mask).__name__}")
        self.B, self.H = B, H

    def keys_needed(self, i1: int, S: int) -> int:
        """Keys ``0:s`` that rows below ``i1`` may attend to (all others are blocked)."""
        return min(S, i1) if self.kind == "causal" else S

    def softmax_(self, scores: Tensor, i0: int, i1: int) -> Tensor:
        """Masked softmax of the scores of rows ``i0:i1`` over keys ``0:s``, in place.

        ``scores (B, H, t, s)``; rows with no kept key become 0. A causal tile only needs its
        diagonal block ``[:, :, :, i0:s]`` filled: keys before ``i0`` are kept by every row.
        """
        if self.kind == "none":
            return torch.softmax(scores, -1, out=scores)
        device, s = scores.device, scores.shape[-1]
        q_idx = torch.arange(i0, i1, device=device).view(1, 1, -1, 1)
        if self.kind == "causal":
            if i0 < s:
                kv_idx = torch.arange(i0, s, device=device).view(1, 1, 1, -1)
                scores[..., i0:s].masked_fill_(kv_idx > q_idx, float("-inf"))  # (B, H, t, s - i0)
            return torch.softmax(scores, -1, out=scores)        # key 0 is kept by every row
        if self.kind == "tensor":
            keep = self.keep[..., i0:i1, :s].to(device)
        else:
            b = torch.arange(self.B, device=device).view(-1, 1, 1, 1)
            h = torch.arange(self.H, device=device).view(1, -1, 1, 1)
            kv_idx = torch.arange(s, device=device).view(1, 1, 1, -1)
            keep = torch.as_tensor(self.mod(b, h, q_idx, kv_idx), device=device).bool()
        return masked_softmax(scores, keep, inplace=True)      # (B, H, t, s)


def _max_future(w: Tensor, i0: int) -> Tensor:
    """Largest weight on a key after its query in the tile ``w (B, H, t, s)`` of rows ``i0:i0+t``."""
    t, s = w.shape[-2:]
    i1 = i0 + t
    best = w[..., i1:].amax() if s > i1 else w.new_zeros(())   # keys after the tile's last row
    if i0 + 1 < min(i1, s):                                     # the diagonal block
        q_idx = torch.arange(i0, i1, device=w.device).view(-1, 1)
        kv_idx = torch.arange(i0, min(i1, s), device=w.device).view(1, -1)
        block = w[..., i0:min(i1, s)]                           # (B, H, t, min(i1, s) - i0)
        best = torch.maximum(best, torch.where(kv_idx > q_idx, block, 0).amax())
    return best


def _pool_cols(w: Tensor, f: int, C: int, reduce: str) -> Tensor:
    """``(B, H, t, c)`` -> ``(B, H, t, C)``: reduce every ``f`` columns; columns past ``c`` are 0."""
    B, H, t, c = w.shape
    if f == 1 and c == C:
        return w
    out = w.new_zeros(B, H, t, C)
    full = c // f                                               # whole pixel columns in w
    op = torch.amax if reduce == "max" else torch.sum
    if full:
        blocks = w[..., :full * f].unflatten(-1, (full, f))     # (B, H, t, full, f), a view
        out[..., :full] = op(blocks, dim=-1)                    # (B, H, t, full)
    if c % f:
        out[..., full] = op(w[..., full * f:], dim=-1)          # a partial last column
    return out


def _pool_rows(w: Tensor, f: int, reduce: str) -> Tensor:
    """``(B, H, t, C)`` -> ``(B, H, ceil(t / f), C)``: reduce every ``f`` rows (zeros past ``t``)."""
    if f == 1:
        return w
    pad = -w.shape[-2] % f
    if pad:
        w = F.pad(w, (0, 0, 0, pad))                            # (B, H, t + pad, C)
    blocks = w.unflatten(-2, (-1, f))                           # (B, H, t'/f, f, C)
    return blocks.amax(-2) if reduce == "max" else blocks.sum(-2)


# ----------------------------------------------------------------------------------------------
# the one computation behind every public function
def _window(q, k, mask, q_range, k_range, f, scale, tile, reduce, device, mean_heads=False) -> PooledMaps:
    if reduce not in _REDUCTIONS:
        raise ValueError(f"expected reduce to be one of {_REDUCTIONS} but found {reduce!r}")
    q4, k4, batched = _check_qk(q, k)
    B, H, T, D = q4.shape
    S = k4.shape[2]
    q0, q1 = _check_range("q_range", q_range, T, "T")
    k0, k1 = _check_range("k_range", k_range, S, "S")
    tile_mask = _TileMask(mask, B, H, T, S, batched)
    device = q4.device if device is None else resolve_device(device)
    scale = 1.0 / math.sqrt(D) if scale is None else scale

    # Scale q (T*D values) rather than the scores (T*S values), as MultiHeadAttention does.
    q4 = (q4[:, :, q0:q1].to(device) * scale)                   # (B, H, q1-q0, D)
    k4 = k4.to(device)                                          # (B, H, S, D)
    R, C = math.ceil((q1 - q0) / f), math.ceil((k1 - k0) / f)
    if tile is None:
        tile = TILE_BYTES // (B * H * S * q4.element_size())
    else:
        tile = _check_int("tile", tile, 1)
    rows = max(f, tile // f * f)                                # whole pixel rows per tile
    if not isinstance(mean_heads, bool):
        raise TypeError(f"expected mean_heads to be a bool but found {type(mean_heads).__name__}")
    out = torch.zeros(B, 1 if mean_heads else H, R, C, dtype=torch.float32, device=device)
    future = torch.zeros((), dtype=torch.float32, device=device)
    with torch.no_grad():
        for r0 in range(q0, q1, rows):
            r1 = min(r0 + rows, q1)
            s = tile_mask.keys_needed(r1, S)                    # causal: keys past the tile are 0
            if s <= k0:
                continue                                        # the window's keys are all blocked
            qt = q4[:, :, r0 - q0:r1 - q0]                      # (B, H, t, D)
            scores = qt @ k4[:, :, :s].transpose(-2, -1)        # (B,H,t,D) @ (B,H,D,s) -> (B,H,t,s)
            w = tile_mask.softmax_(scores, r0, r1)              # (B, H, t, s): normalised over full rows
            future = torch.maximum(future, _max_future(w, r0).float())
            if mean_heads:
                w = w.mean(dim=1, keepdim=True)                 # (B, 1, t, s): the heads' mean map
            # Columns first (a view of the contiguous key dim), then rows of the f-times smaller tile.
            w = _pool_cols(w[..., k0:min(k1, s)], f, C, reduce)  # (B, H, t, C); keys past s are blocked: 0
            pix = _pool_rows(w, f, reduce)                      # (B, H, ceil(t / f), C)
            p0 = (r0 - q0) // f
            out[:, :, p0:p0 + pix.shape[2]] = pix               # rows start on a pixel edge: rows % f == 0
    if reduce == "mean" and f > 1:                              # divide by the positions per pixel
        qb, kb = _edges((q0, q1), f), _edges((k0, k1), f)
        count = (qb[:, 1] - qb[:, 0])[:, None] * (kb[:, 1] - kb[:, 0])[None, :]   # (R, C)
        out /= count.to(device)
    out = out.cpu() if batched else out[0].cpu()
    return PooledMaps(out, f, (q0, q1), (k0, k1), reduce, float(future))


def _factor(pixels: object, *sizes: int) -> int:
    pixels = _check_int("pixels", pixels, 1)
    return math.ceil(max(sizes) / pixels)


# ----------------------------------------------------------------------------------------------
# public functions
def pooled_attention_maps(
    q: Tensor,
    k: Tensor,
    *,
    mask=None,
    scale: float | None = None,
    pixels: int = 512,
    tile: int | None = None,
    reduce: str = "max",
    device: str | torch.device | None = None,
    mean_heads: bool = False,
) -> PooledMaps:
    """Every head's attention map, computed tile by tile and pooled on the device to ``pixels``.

    The factor is ``f = ceil(max(T, S) / pixels)``; ``f = 1`` gives the exact weights. Equivalent
    to the following, without ever holding ``(..., H, T, S)``::

        _, w = scaled_dot_product_attention(q, k, v, mask)        # (..., H, T, S)
        w = F.pad(w, (0, -S % f, 0, -T % f))                     # zeros past the edges
        maps = w.unflatten(-1, (-1, f)).unflatten(-3, (-1, f)).amax((-3, -1))  # (..., H, R, C)

    Args:
        q: ``(H, T, D)`` or ``(B, H, T, D)`` queries (as projected, before scaling).
        k: ``(K, S, D)`` or ``(B, K, S, D)`` keys; ``K`` divides ``H`` (grouped-query: query head
            ``h`` reads key head ``h // (H / K)``).
        mask: ``None``, ``"causal"`` (top-left: key ``j <= i``, the ``make_causal_mask`` layout; it
            also skips the blocked upper triangle), a keep-mask broadcastable to ``(..., H, T, S)``
            (``True``/1 = may attend), or a ``mask_mod(b, h, q_idx, kv_idx)``. Default: ``None``.
        scale: multiplier of ``q @ k^T``. Default: ``1 / sqrt(D)``.
        pixels: the most pixels on a side of each map. Default: 512.
        tile: query rows per tile (rounded down to a multiple of ``f``, at least ``f``). The peak
            extra memory follows the tile, not the map: about three ``(B, H, tile, S)`` buffers
            (measured at T=4096, H=16: +45 MiB with the default, +101 MiB with 32 MiB tiles, vs
            +2 GiB for the full map and numpy pooling). Default: as many rows as fit
            ``TILE_BYTES`` (8 MiB) of scores.
        reduce: ``"max"`` (a single strong weight stays visible) or ``"mean"``. Default: ``"max"``.
        device: where the tiles are computed: ``"auto"``, ``"cpu"``, ``"cuda"``. Default: ``q``'s.
        mean_heads: reduce the mean over the ``H`` heads' exact weights instead of each head
            (the map of a whole layer; ``maps (..., 1, R, C)``; ``max_future_weight`` is still
            over the single heads). Default: ``False``.

    Returns:
        :class:`PooledMaps` with ``maps (..., H, ceil(T/f), ceil(S/f))`` float32 on the CPU.
        Queries with every key blocked give rows of 0.
    """
    q4, k4, _ = _check_qk(q, k)
    T, S = q4.shape[2], k4.shape[2]
    return _window(q, k, mask, (0, T), (0, S), _factor(pixels, T, S), scale, tile, reduce, device,
                   mean_heads)


def attention_window(
    q: Tensor,
    k: Tensor,
    *,
    q_range: tuple[int, int],
    k_range: tuple[int, int],
    mask=None,
    scale: float | None = None,
    pixels: int = 512,
    tile: int | None = None,
    reduce: str = "max",
    device: str | torch.device | None = None,
    mean_heads: bool = False,
) -> PooledMaps:
    """The weights of query rows ``q0:q1`` and key columns ``k0:k1``: a zoom into the map.

    Exact (``factor == 1``) when the window fits ``pixels`` a side, else pooled by
    ``f = ceil(max(q1 - q0, k1 - k0) / pixels)`` from the window's top-left corner. Every row is
    soft-maxed over **all** ``S`` keys, so with ``f = 1`` the result equals
    ``full_weights[..., q0:q1, k0:k1]``. Costs ``(q1 - q0) x S`` scores, whatever the window width.

    Args:
        q_range: ``(q0, q1)`` query rows, ``0 <= q0 < q1 <= T``.
        k_range: ``(k0, k1)`` key columns, ``0 <= k0 < k1 <= S``.
        q, k, mask, scale, pixels, tile, reduce, device, mean_heads: as in
            :func:`pooled_attention_maps`.

    Returns:
        :class:`PooledMaps` with ``maps (..., H, ceil((q1-q0)/f), ceil((k1-k0)/f))`` (``H = 1``
        with ``mean_heads``).
    """
    q4, k4, _ = _check_qk(q, k)
    T, S = q4.shape[2], k4.shape[2]
    q0, q1 = _check_range("q_range", q_range, T, "T")
    k0, k1 = _check_range("k_range", k_range, S, "S")
    f = _factor(pixels, q1 - q0, k1 - k0)
    return _window(q, k, mask, (q0, q1), (k0, k1), f, scale, tile, reduce, device, mean_heads)


def attention_row(
    q: Tensor,
    k: Tensor,
    i: int,
    *,
    mask=None,
    scale: float | None = None,
    device: str | torch.device | None = None,
) -> Tensor:
    """Query ``i``'s exact weights over every key, in every head: ``full_weights[..., i, :]``.

    Args:
        i: query position, ``0 <= i < T``.
        q, k, mask, scale, device: as in :func:`pooled_attention_maps`.

    Returns:
        ``(..., H, S)`` float32 on the CPU; zeros when every key of ``i`` is blocked.
    """
    q4, k4, _ = _check_qk(q, k)
    T, S = q4.shape[2], k4.shape[2]
    i = _check_int("i", i, 0, T - 1)
    return _window(q, k, mask, (i, i + 1), (0, S), 1, scale, 1, "max", device).maps[..., 0, :]


def exact_weight(
    q: Tensor,
    k: Tensor,
    i: int,
    j: int,
    *,
    mask=None,
    scale: float | None = None,
    device: str | torch.device | None = None,
) -> Tensor:
    """The weight of query ``i`` on key ``j`` in every head, exactly (normalised over row ``i``).

    For hover on a pooled or zoomed map: computed, never read from pixels.

    Args:
        i: query position, ``0 <= i < T``.
        j: key position, ``0 <= j < S``.
        q, k, mask, scale, device: as in :func:`pooled_attention_maps`.

    Returns:
        ``(..., H)`` float32 on the CPU.
    """
    q4, k4, _ = _check_qk(q, k)
    T, S = q4.shape[2], k4.shape[2]
    i = _check_int("i", i, 0, T - 1)
    j = _check_int("j", j, 0, S - 1)
    return _window(q, k, mask, (i, i + 1), (j, j + 1), 1, scale, 1, "max", device).maps[..., 0, 0]
