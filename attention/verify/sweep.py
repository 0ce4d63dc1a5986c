"""The prefix-invariance sweep: ``check_output_invariance`` for every prefix ``L`` in one batched call.

Shape legend: ``B`` batch, ``T`` positions, ``E`` input features, ``F`` output features.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import Tensor, nn

from .calling import call_model, check_finite, check_model, check_x
from .lookahead import default_atol

__all__ = ["SweepRun", "invariance_sweep", "perturbed_copies", "run_sweep"]


def perturbed_copies(x: Tensor, seed: int) -> Tensor:
    """``(T, B, T, E)``: copy ``L`` has every position after ``L`` replaced by fresh values.

    Copy ``L`` uses the values ``check_output_invariance(model, x, L, generator=
    torch.Generator().manual_seed(seed))`` would draw, so the two agree for every ``L``.
    """
    B, T, E = x.shape
    copies = x.unsqueeze(0).repeat(T, 1, 1, 1)                      # (T, B, T, E)
    for L in range(T - 1):                                          # copy T-1 changes nothing
        gen = torch.Generator(device=x.device).manual_seed(seed)
        fresh = torch.randn((B, T - L - 1, E), generator=gen, device=x.device, dtype=torch.float32)
        copies[L, :, L + 1:] = fresh.to(x.dtype)
    return copies


class SweepRun(NamedTuple):
    """What :func:`run_sweep` found: the values, and how the copies were run."""

    values: Tensor              # (T,) max |dy| at positions 0..L, per prefix L
    batch_mixing: bool          # outputs depend on other batch items (BatchNorm in training mode)
    mode: str                   # "batched", or why the copies ran one by one


def run_sweep(model, x: Tensor, seed: int, model_kwargs: Mapping[str, Any]) -> SweepRun:
    """The sweep for a checked ``x (B, T, E)`` (see :func:`invariance_sweep`).

    Raises :class:`~attention.verify.calling.NonFiniteError` when an output the sweep compares
    (``model(x)``, or positions ``0..L`` of copy ``L``) holds NaN or inf.
    """
    B, T, E = x.shape
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model)                                # no side effects (BatchNorm stats)
    copies = perturbed_copies(x, seed)                              # (T, B, T, E)
    mixing, mode = False, "batched"
    with torch.no_grad():
        y = call_model(model, x, model_kwargs)                      # (B, T, F), the reference
        check_finite(y, "model output", "(batch b, position t)")
        stacked = torch.cat([x, copies.reshape(T * B, T, E)])       # (B + T·B, T, E): one batch
        try:
            y_all = call_model(model, stacked, model_kwargs)        # one batched forward
        except ValueError as err:                                   # e.g. a mask fixed to batch B
            y_copies, mode = None, f"one by one (the model failed on batch {B * (T + 1)}: {err})"
        else:
            y_ref, y_copies = y_all[:B], y_all[B:].view(T, B, T, -1)
            # A model that mixes the batch (BatchNorm in training mode) sees different statistics
            # in the stacked batch: then evaluate every copy on its own.
            mixing = bool((y_ref.float() - y.float()).abs().max() > default_atol(x.dtype))
            if mixing:
                y_copies, mode = None, "one by one (batch-mixing model)"
        if y_copies is None:
            y_copies = torch.stack([call_model(model, copies[L], model_kwargs) for L in range(T)])
    diff = (y_copies.float() - y.float().unsqueeze(0)).abs()        # (T copies, B, T, F)
    per_pos = diff.amax(dim=(1, 3))                                 # (T copies, T positions)
    past = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # positions 0..L of copy L
    per_pos = per_pos.masked_fill(~past, 0)
    check_finite(per_pos, "model output in the prefix sweep", "(copy L, position t <= L)")
    return SweepRun(per_pos.amax(dim=1).cpu(), mixing, mode)


def invariance_sweep(
    model: Callable[..., Any],
    x: Tensor,
    *,
    seed: int = 0,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor:
    """``check_output_invariance`` for every prefix ``L`` at once: max |Δy| at positions ``0..L``.

    Builds ``T`` copies of ``x``, copy ``L`` with every position after ``L`` replaced by fresh random
    values (the same values ``check_output_invariance(model, x, L, generator=
    torch.Generator().manual_seed(seed))`` uses), stacks them with ``x`` along the batch and runs
    the model **once** on the ``(B·(T+1), T, E)`` batch. A causal model gives zeros (up to
    rounding) everywhere.

    Batch-mixing models (BatchNorm in training mode) would see the statistics of the stacked batch,
    so the sweep checks that the reference rows of the stacked call equal ``model(x)``; if they do
    not, it runs each copy on its own (``T + 1`` calls), as it does when the model rejects the
    stacked batch (e.g. a mask fixed to batch ``B``). An ``nn.Module`` runs on a deep copy, so its
    running statistics are not changed; other callables run as they are. Runs in ``x.dtype``.

    Args:
        model: ``nn.Module`` or callable ``x (B, T, E) -> y (B, T, ...)`` (see :func:`dependency_map`).
        x: ``(B, T, E)`` input.
        seed: seed of the perturbations. Default: 0.
        model_kwargs: extra keyword arguments for every model call. Default: none.

    Returns:
        ``(T,)`` float32 tensor: entry ``L`` is max |y' - y| over positions ``0..L``.
    """
    check_model(model)
    x = check_x(x)
    return run_sweep(model, x, seed, dict(model_kwargs or {})).values
