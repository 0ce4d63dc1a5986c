"""Calling a model under test: the one helper every check uses, and the float64 copy.

What a "model" is here: an ``nn.Module`` or any callable ``x (B, T, E) -> y (B, T, ...)`` or
``-> (y, ...)`` (only ``y`` is used). A :class:`~attention.MultiHeadAttention` is called as plain
self-attention, ``model(x, need_weights=False, **model_kwargs)`` (no mask unless you pass one).

Shape legend: ``B`` batch, ``T`` positions, ``E`` input features, ``F`` output features (everything
after ``(B, T)``, flattened).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..multihead import MultiHeadAttention

__all__ = ["call_model", "check_model", "check_x", "float64_model", "model_name"]


def check_x(x: object) -> Tensor:
    """``x`` as ``(B, T, E)`` (a ``(T, E)`` input gains a batch of one), or a TypeError/ValueError."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("expected x to be a floating-point torch.Tensor but found "
                        + (f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__))
    if x.dim() == 2:
        x = x.unsqueeze(0)                                          # (T, E) -> (1, T, E)
    if x.dim() != 3 or x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"expected x of shape (B, T, E) or (T, E) with B, T, E >= 1 but found "
                         f"{tuple(x.shape)}")
    return x


def check_model(model: object) -> None:
    """A ``TypeError`` unless ``model`` is callable."""
    if not callable(model):
        raise TypeError(f"expected model to be an nn.Module or a callable x (B, T, E) -> y (B, T, ...) "
                        f"but found {type(model).__name__}")


def call_model(model: Callable[..., Any], x: Tensor,
               model_kwargs: Mapping[str, Any] | None = None) -> Tensor:
    """Run the model on ``x (B, T, E)`` and return ``y`` reshaped to ``(B, T, F)``, or explain why not.

    The one place every check calls a model. A :class:`~attention.MultiHeadAttention` is called as
    self-attention, ``model(x, need_weights=False, **model_kwargs)``; anything else as
    ``model(x, **model_kwargs)``. A tuple or list output gives its first element. An exception
    raised by the model becomes a ``ValueError`` naming the model and the input shape.
    """
    B, T, E = x.shape
    model_kwargs = model_kwargs or {}
    try:
        if isinstance(model, MultiHeadAttention):
            y = model(x, need_weights=False, **model_kwargs)
        else:
            y = model(x, **model_kwargs)
    except Exception as err:                                        # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"model {model_name(model)} failed on x of shape (B, T, E) = {(B, T, E)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if isinstance(y, (tuple, list)) and y:
        y = y[0]
    if not isinstance(y, Tensor):
        raise TypeError(f"expected model {model_name(model)} to return a Tensor (B, T, ...) or a tuple "
                        f"starting with one but found {type(y).__name__}")
    if y.dim() < 2 or tuple(y.shape[:2]) != (B, T):
        raise ValueError(f"expected model {model_name(model)} to map x of shape (B, T, E) = {(B, T, E)} "
                         f"to y of shape (B, T, ...) = ({B}, {T}, ...) but found {tuple(y.shape)}")
    return y.reshape(B, T, -1)                                      # (B, T, F)


def model_name(model: object) -> str:
    """``model.__name__`` (functions) or its type's name (modules, other callables)."""
    return getattr(model, "__name__", None) or type(model).__name__


def float64_model(model: Callable[..., Any], x: Tensor, model_kwargs: Mapping[str, Any]):
    """A float64 copy of the model (the user's model is never touched) and the dtype it runs in.

    ``nn.Module``: ``copy.deepcopy(model).double()`` (train/eval mode kept). Other callables cannot be
    copied or cast, so they get float64 input; if they reject it (e.g. a closure over float32
    weights) they run in ``x.dtype``.
    """
    if isinstance(model, nn.Module):
        return copy.deepcopy(model).double(), torch.float64
    try:
        with torch.no_grad():
            call_model(model, x.to(torch.float64), model_kwargs)
        return model, torch.float64
    except (ValueError, TypeError):
        if x.dtype == torch.float64:
            raise
        with torch.no_grad():
            call_model(model, x, model_kwargs)                           # raises the real problem, if any
        return model, x.dtype

