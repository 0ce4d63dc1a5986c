"""Look-ahead checks: weights on future keys, and outputs that must not move when the future does.

``verify_no_lookahead`` and ``max_future_weight`` read attention weights; ``check_output_invariance``
treats a model as a black box: perturb every position after a prefix and check that the outputs at
positions ``0..prefix`` do not move. ``python -m attention.verify`` runs them over a grid.

Shape legend: ``B`` batch, ``H`` heads, ``T`` query positions, ``S`` key positions, ``E`` embedding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..masks import make_causal_mask
from .calling import call_model

__all__ = [
    "InvarianceResult",
    "check_output_invariance",
    "default_atol",
    "max_future_weight",
    "verify_no_lookahead",
]

# Tolerances for "unchanged": a causal model's past outputs are normally bit-identical, but
# kernels may reorder sums; these bounds sit far above rounding noise and far below a real leak.
_DEFAULT_ATOL = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 1e-3,
    torch.bfloat16: 1e-2,
}


def default_atol(dtype: torch.dtype) -> float:
    """The tolerance used when ``atol=None``: 1e-10 (f64), 1e-5 (f32), 1e-3 (f16), 1e-2 (bf16)."""
    return _DEFAULT_ATOL.get(dtype, 1e-5)


def max_future_weight(attn_weights: Tensor, align: str = "top_left") -> float:
    """Largest weight that any query puts on a key after it (above the causal diagonal).

    Args:
        attn_weights: ``(..., T, S)`` weights, e.g. ``(B, H, T, S)``.
        align: where the causal diagonal sits, as in ``make_causal_mask``. Default: ``"top_left"``.

    Returns:
        the maximum weight on future keys, as a float; 0.0 when there is no future cell (T = S = 1).
    """
    if not isinstance(attn_weights, Tensor):
        raise TypeError(f"expected attn_weights to be a torch.Tensor but found {type(attn_weights).__name__}")
    if attn_weights.dim() < 2:
        raise ValueError(f"expected attn_weights of shape (..., T, S) but found {tuple(attn_weights.shape)}")
    T, S = attn_weights.shape[-2:]
    if T == 0 or S == 0:
        return 0.0
    future = ~make_causal_mask(T, S, device=attn_weights.device, dtype=torch.bool, align=align)
    if not bool(future.any()):
        return 0.0
    # Row blocks, each read only from its first future column on: no gather of the (..., T, S)
    # future cells and no full-size temporaries (a boolean index copied ~half the tensor twice).
    w = attn_weights.detach()
    first = torch.where(future.any(-1), future.int().argmax(-1), S).tolist()   # per row; S: none
    best = None
    for r0 in range(0, T, _ROW_BLOCK):
        r1 = min(r0 + _ROW_BLOCK, T)
        c0 = min(first[r0:r1])
        if c0 >= S:
            continue
        block = torch.where(future[r0:r1, c0:], w[..., r0:r1, c0:], 0).abs().amax()
        best = block if best is None else torch.maximum(best, block)
    return best.item()


_ROW_BLOCK = 128        # rows per block in max_future_weight (a few MB of temporaries at most)


def verify_no_lookahead(attn_weights: Tensor, atol: float = 1e-6) -> bool:
    """True when every weight above the causal diagonal is at most ``atol``.

    Args:
        attn_weights: ``(..., T, S)`` attention weights.
        atol: largest weight on a future key still counted as zero. Default: 1e-6.
    """
    return max_future_weight(attn_weights) <= atol


@dataclass(frozen=True)
class InvarianceResult:
    """Outcome of :func:`check_output_invariance`.

    Attributes:
        prefix: the last position that must not change (``L``).
        max_diff: max |y - y'| over positions ``0..prefix`` (all batch items and features).
        passed: ``max_diff <= atol``.
        atol: the tolerance used.
        position_diff: ``(T,)`` max |y - y'| at every position: ``<= atol`` up to the prefix for a
            causal model, typically large after it.
        perturbed_from: first perturbed position (``prefix + 1``).
    """

    prefix: int
    max_diff: float
    passed: bool
    atol: float
    position_diff: Tensor = field(repr=False)
    perturbed_from: int = 0

    def __bool__(self) -> bool:  # ``if check_output_invariance(...):`` reads naturally
        return self.passed


def check_output_invariance(
    model: Callable[..., Any],
    x: Tensor,
    prefix: int,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    atol: float | None = None,
) -> InvarianceResult:
    """Perturb every position after ``prefix`` and measure how far outputs ``0..prefix`` move.

    The functional proof of no look-ahead: run ``model(x)``, replace ``x[:, prefix+1:]`` with fresh
    random values, run again and compare positions ``0..prefix``. A causal model passes with a
    difference of (essentially) zero; an unmasked one fails.

    Args:
        model: a ``MultiHeadAttention`` (called as self-attention, ``model(x, mask=mask)``) or any
            callable ``x -> y`` / ``x -> (y, ...)`` with ``y (B, T, ...)``. The model runs as it is
            (call ``.eval()`` first if it has dropout).
        x: ``(B, T, E)`` input (``(T, E)`` is treated as a batch of one).
        prefix: ``L`` in ``0..T-1``; positions ``0..L`` must not change.
        mask: keep-mask passed to the model (``True``/1 = may attend). Default: ``None``.
        generator: source of the perturbation. Default: a generator seeded with 0.
        atol: tolerance. Default: :func:`default_atol` of ``x.dtype``.

    Returns:
        :class:`InvarianceResult`.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"expected x to be a floating-point torch.Tensor but found {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else ""))
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"expected x of shape (B, T, E) or (T, E) but found {tuple(x.shape)}")
    T = x.shape[1]
    if T < 1:
        raise ValueError(f"expected at least one position (T >= 1) but found x of shape {tuple(x.shape)}")
    if isinstance(prefix, bool) or not isinstance(prefix, int):
        raise TypeError(f"expected prefix to be an int but found {type(prefix).__name__}")
    if not 0 <= prefix < T:
        raise ValueError(f"expected prefix in 0..T-1 = 0..{T - 1} but found prefix={prefix}")
    atol = default_atol(x.dtype) if atol is None else float(atol)
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(0)

    x_new = x.clone()
    fresh = torch.randn(x[:, prefix + 1:].shape, generator=generator, device=x.device,
                        dtype=torch.float32).to(x.dtype)
    x_new[:, prefix + 1:] = fresh                                    # change the whole future
    with torch.no_grad():
        kwargs = {} if mask is None else {"mask": mask}
        y, y_new = call_model(model, x, kwargs), call_model(model, x_new, kwargs)   # (B, T, F)
    diff = (y.float() - y_new.float()).abs()                        # (B, T, F)
    position_diff = diff.transpose(0, 1).reshape(T, -1).amax(dim=1)  # (T,)
    max_diff = position_diff[: prefix + 1].max().item()
    return InvarianceResult(prefix=prefix, max_diff=max_diff, passed=max_diff <= atol, atol=atol,
                            position_diff=position_diff.cpu(), perturbed_from=prefix + 1)
