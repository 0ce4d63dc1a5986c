"""Calling a model under test: the one helper every check uses, and the float64 copy.

What a "model" is here: an ``nn.Module`` or any callable ``x (B, T, E) -> y (B, T, ...)`` or
``-> (y, ...)`` (only ``y`` is used). A :class:`~attention.MultiHeadAttention` is called as plain
self-attention, ``model(x, need_weights=False, **model_kwargs)`` (no mask unless you pass one).

Shape legend: ``B`` batch, ``T`` positions, ``E`` input features, ``F`` output features (everything
after ``(B, T)``, flattened).
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..multihead import MultiHeadAttention

__all__ = [
    "NonFiniteError",
    "PrecisionWarning",
    "call_model",
    "check_finite",
    "check_model",
    "check_x",
    "float64_model",
    "model_name",
    "unwrap_output",
    "with_output",
]


class NonFiniteError(ValueError):
    """A NaN or infinite value where the verdict needs numbers: no verdict (never a pass).

    NaN makes every comparison false, so a NaN dependency or output difference would read as "no
    dependency". The checks raise this instead; the CLI exits with status 3 ("could not decide").

    Attributes:
        where: what held the values (``"model output"``, ``"dependency map"``, ...).
        positions: the offending positions, as tuples (at most 20).
    """

    def __init__(self, message: str, where: str, positions: list[tuple[int, ...]]) -> None:
        super().__init__(message)
        self.where, self.positions = where, positions


class PrecisionWarning(UserWarning):
    """A callable rejected float64 input, so its dependency map was computed in a lower precision."""


def check_finite(t: Tensor, where: str, labels: str, dims: int = 2) -> None:
    """Raise :class:`NonFiniteError` if ``t`` holds NaN or inf, naming the positions.

    Args:
        t: the values; its first ``dims`` dimensions are the positions, the rest are reduced.
        where: what ``t`` is, for the message (``"model output"``).
        labels: names of the position dimensions, for the message (``"(batch b, position t)"``).
        dims: how many leading dimensions index positions. Default: 2.
    """
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    per_pos = bad.reshape(*t.shape[:dims], -1).any(-1) if t.dim() > dims else bad
    idx = [tuple(p) for p in per_pos.nonzero().tolist()]
    kinds = " and ".join(k for k, m in (("NaN", torch.isnan(t)), ("inf", torch.isinf(t))) if bool(m.any()))
    shown = ", ".join(map(str, idx[:8])) + (f", ... ({len(idx)} in all)" if len(idx) > 8 else "")
    raise NonFiniteError(
        f"{where} holds {kinds} at {labels} = {shown}: NaN/inf make every comparison false, so no "
        f"verdict is possible (not a pass); fix the model or its input", where, idx[:20])


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
    ``model(x, **model_kwargs)``. The output is unwrapped by :func:`unwrap_output` (tuples,
    dicts, ``ModelOutput``-style objects). An exception raised by the model becomes a
    ``ValueError`` naming the model and the input shape.
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
    y = unwrap_output(y)
    if not isinstance(y, Tensor):
        raise TypeError(f"expected model {model_name(model)} to return a Tensor (B, T, ...) or a tuple "
                        f"starting with one but found {type(y).__name__}")
    if y.dim() < 2 or tuple(y.shape[:2]) != (B, T):
        raise ValueError(f"expected model {model_name(model)} to map x of shape (B, T, E) = {(B, T, E)} "
                         f"to y of shape (B, T, ...) = ({B}, {T}, ...) but found {tuple(y.shape)}")
    return y.reshape(B, T, -1)                                      # (B, T, F)


def unwrap_output(y: Any) -> Any:
    """The tensor in a model's output: ``y`` itself, ``y[0]`` of a tuple/list, ``y["last_hidden_state"]``
    of a dict (else its first tensor value, as ``ModelOutput[0]``), or ``y.last_hidden_state`` of an
    object that has one (Hugging Face ``ModelOutput``). Anything else is returned as it is (and
    rejected by :func:`call_model`). Pick another output with :func:`with_output`.
    """
    if isinstance(y, (tuple, list)) and y:
        return y[0]
    if isinstance(y, Mapping):
        if isinstance(y.get("last_hidden_state"), Tensor):
            return y["last_hidden_state"]
        return next((v for v in y.values() if isinstance(v, Tensor)), y)
    hidden = getattr(y, "last_hidden_state", None)
    return hidden if isinstance(hidden, Tensor) else y


def _select(y: Any, name: str) -> Any:
    if isinstance(y, Mapping):
        if name not in y:
            raise KeyError(f"output {name!r} not among the model's outputs {sorted(map(str, y))}")
        return y[name]
    if isinstance(y, (tuple, list)) and name.lstrip("-").isdigit():
        i = int(name)
        if not -len(y) <= i < len(y):
            raise IndexError(f"output {name!r} out of range: the model returned {len(y)} outputs")
        return y[i]
    if not hasattr(y, name):
        raise AttributeError(f"output {name!r} is not an attribute of the model's {type(y).__name__} "
                             f"output")
    return getattr(y, name)


class _OutputOf(nn.Module):
    """An ``nn.Module`` wrapper returning one named output (so ``.double()`` still reaches the model)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model, self.output_name = model, name
        self.__name__ = f"{model_name(model)}[{name}]"

    def forward(self, x: Tensor, **kwargs: Any) -> Any:
        return _select(self.model(x, **kwargs), self.output_name)


def with_output(model: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``model`` returning only its output ``name``: a dict key, an attribute (``"logits"``) or a
    tuple index (``"1"``). An ``nn.Module`` stays an ``nn.Module`` (a wrapper holding it)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"expected the output name to be a non-empty str but found {name!r}")
    if isinstance(model, nn.Module):
        return _OutputOf(model, name)

    def selected(x: Tensor, **kwargs: Any) -> Any:
        return _select(model(x, **kwargs), name)

    selected.__name__ = f"{model_name(model)}[{name}]"
    return selected


def model_name(model: object) -> str:
    """``model.__name__`` (functions) or its type's name (modules, other callables)."""
    return getattr(model, "__name__", None) or type(model).__name__


def float64_model(model: Callable[..., Any], x: Tensor, model_kwargs: Mapping[str, Any]):
    """A float64 copy of the model (the user's model is never touched) and the dtype it runs in.

    ``nn.Module``: ``copy.deepcopy(model).double()`` (train/eval mode kept). Other callables cannot be
    copied or cast, so they get float64 input; if they reject it (e.g. a closure over float32
    weights) they run in ``x.dtype`` with a :class:`PrecisionWarning` (the report says which
    precision ran).
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
            call_model(model, x, model_kwargs)                      # raises the real problem, if any
        warnings.warn(f"model {model_name(model)} rejects float64 input, so its dependency map runs in "
                      f"{str(x.dtype).replace('torch.', '')} (leak threshold "
                      f"{'1e-5' if x.dtype == torch.float32 else 'coarser'} x the largest dependency "
                      f"instead of 1e-9); pass an nn.Module (it is copied to float64) for full precision",
                      PrecisionWarning, stacklevel=3)
        return model, x.dtype



class Progress:
    """A tqdm bar (stderr) for a loop of ``total`` steps, shown only when it will take over ``after``
    seconds: the first step is timed, and the bar starts with the estimate in its title."""

    def __init__(self, total: int, desc: str, enabled: bool = False, after: float = 2.0) -> None:
        import time

        self._clock, self.total, self.desc, self.enabled, self.after = time.perf_counter, total, desc, enabled, after
        self._t0, self._done, self._bar = self._clock(), 0, None

    def step(self, n: int = 1) -> None:
        self._done += n
        if not self.enabled or self.total <= 1:
            return
        if self._bar is None and self._done < self.total:
            estimate = (self._clock() - self._t0) / self._done * self.total
            if estimate > self.after:
                from tqdm.auto import tqdm                          # lazy: only for long runs

                self._bar = tqdm(total=self.total, initial=self._done, unit="chunk", leave=False,
                                 desc=f"{self.desc} (estimate {estimate:.0f} s)")
            return
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
