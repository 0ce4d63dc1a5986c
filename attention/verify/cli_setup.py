"""What the leak detector's CLI sets up before it checks: the model, its input size, the input, the relation.

``--model pkg.module:factory`` is imported from the caller's working directory; ``--dim`` is read
from the model when it states its width; ``--input-scale`` draws the random input at a scale
(or as rows of the model's embedding table); ``--allowed`` is parsed here, ``auto`` included.
Every problem is a :class:`CLIError` (one line, exit status 2).

Shape legend: ``B`` batch, ``T`` positions, ``E`` input features.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from ..zoo import parse_relation

__all__ = [
    "CLIError",
    "RELATION_HELP",
    "auto_relation",
    "build_model",
    "infer_dim",
    "load_factory",
    "make_input",
    "one_line",
    "parse_allowed",
    "stacked_window_reach",
    "takes_dim",
]

RELATION_HELP = (
    "what output i may depend on: causal (inputs 0..i) | full (every input: an encoder) | "
    "sliding:W (inputs i-W+1..i, the window of ONE layer; N stacked layers of window W reach "
    "N*(W-1)+1 positions, e.g. 2 layers of sliding:4 need sliding:7) | prefix:P (bidirectional over "
    "0..P-1, causal after) | document:IDS (one document id per position, e.g. document:0,0,0,1,1,2) "
    "| padding:LENS (an encoder with key padding: one length per batch item, e.g. padding:12,9; "
    "output i sees the real inputs and itself) | auto (from what the model states: a causal flag "
    "-> causal, a non-causal flag -> full, sliding_window W and N layers -> sliding:N*(W-1)+1; "
    "causal when it states nothing)"
)
_DIM_ATTRS = ("d_model", "embed_dim", "hidden_size", "n_embd", "embedding_dim", "dim")
_LAYER_ATTRS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")


class CLIError(Exception):
    """A usage problem: printed as one line, exit status 2."""


def load_factory(spec: str):
    """Import ``pkg.module:factory`` (from the caller's working directory too) and return it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"expected --model as pkg.module:factory but found {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:                   # console scripts omit it
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:                                        # noqa: BLE001 - one-line report
        raise CLIError(f"cannot import module {module_name!r} (from --model {spec}): "
                       f"{type(err).__name__}: {err}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {module_name!r} has no attribute {attr!r} (from --model {spec})")
        obj = getattr(obj, part)
    return obj


def takes_dim(obj: Any) -> bool:
    """Whether a factory has a ``dim`` parameter (then it builds a model of any width)."""
    if isinstance(obj, nn.Module) or not callable(obj):
        return False
    try:
        return "dim" in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


def build_model(obj: Any, spec: str, dim: int | None, seq_len: int, seed: int):
    """An ``nn.Module`` instance is used as is; anything else callable is called as the factory
    with those of ``dim=``, ``seq_len=``, ``seed=`` it has parameters for."""
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CLIError(f"--model {spec} names an object of type {type(obj).__name__}, not a factory "
                       f"(callable) or nn.Module")
    offered = {"dim": dim, "seq_len": seq_len, "seed": seed}
    try:
        params = inspect.signature(obj).parameters
        kwargs = {k: v for k, v in offered.items() if k in params and v is not None}
    except (TypeError, ValueError):
        kwargs = {}
    torch.manual_seed(seed)
    try:
        model = obj(**kwargs)
    except Exception as err:                                        # noqa: BLE001 - one-line report
        raise CLIError(f"factory {spec} raised {type(err).__name__}: {err}") from None
    if not callable(model):
        raise CLIError(f"factory {spec} returned an object of type {type(model).__name__}, not an "
                       f"nn.Module or a callable x (B, T, E) -> y (B, T, ...)")
    return model


def _stating_objects(model: Any) -> Iterator[tuple[str, Any]]:
    """``(path, object)`` for the model, its ``config``, then every submodule and its ``config``."""
    yield "model", model
    if getattr(model, "config", None) is not None:
        yield "model.config", model.config
    if isinstance(model, nn.Module):
        for name, sub in model.named_modules():
            if name:
                yield f"model.{name}", sub
                if getattr(sub, "config", None) is not None:
                    yield f"model.{name}.config", sub.config


def _stated(model: Any, names: tuple[str, ...], kind: type) -> tuple[Any, str] | None:
    for path, obj in _stating_objects(model):
        for name in names:
            value = getattr(obj, name, None)
            if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
                return value, f"{path}.{name}"
    return None


def infer_dim(model: Any) -> tuple[int, str]:
    """``E`` as the model states it: an attribute (``d_model``, ``hidden_size``, ``embed_dim``, ...)
    of the model, its config or a submodule, else the input width of its first Linear / LayerNorm /
    Conv1d / BatchNorm1d. Returns ``(E, where it was found)``."""
    found = _stated(model, _DIM_ATTRS, int)
    if found is not None and found[0] >= 1:
        return found
    if isinstance(model, nn.Module):
        for name, sub in model.named_modules():
            width = (sub.in_features if isinstance(sub, nn.Linear) else
                     sub.normalized_shape[-1] if isinstance(sub, nn.LayerNorm) else
                     sub.in_channels if isinstance(sub, nn.Conv1d) else
                     sub.num_features if isinstance(sub, nn.BatchNorm1d) else None)
            if width:
                return int(width), f"the input width of model.{name or '(root)'} ({type(sub).__name__})"
    raise CLIError("cannot infer --dim: the model states no width (no d_model / hidden_size / "
                   "embed_dim attribute, no Linear or LayerNorm inside); pass --dim E")


def stacked_window_reach(window: int, layers: int) -> int:
    """Positions a stack of ``layers`` sliding windows of ``window`` reaches: ``layers·(window-1)+1``."""
    return layers * (window - 1) + 1


def auto_relation(model: Any) -> tuple[str, str]:
    """``(relation spec, reason)`` from what the model states (see :data:`RELATION_HELP`)."""
    window = _stated(model, ("sliding_window", "window"), int)
    if window is not None:
        layers = _stated(model, _LAYER_ATTRS, int)
        n, where = (layers if layers is not None else (1, "no layer count stated: 1 layer"))
        reach = stacked_window_reach(window[0], n)
        return f"sliding:{reach}", (f"{window[1]} = {window[0]} over {n} layers ({where}) reaches "
                                    f"{n}*({window[0]}-1)+1 = {reach} positions")
    flag = _stated(model, ("is_causal", "causal"), bool)
    if flag is not None:
        return ("causal" if flag[0] else "full"), f"{flag[1]} = {flag[0]}"
    return "causal", "the model states no causal flag: assuming a decoder (use --allowed full for an encoder)"


def parse_allowed(spec: str, T: int, batch: int, model: Any = None):
    """``--allowed`` text -> ``(mask_mod, note)``; ``note`` explains ``auto`` (else empty)."""
    note = ""
    if spec == "auto":
        spec, reason = auto_relation(model)
        note = f"auto -> {spec}: {reason}"
    kind, sep, arg = spec.partition(":")
    if kind == "padding" and sep and len(arg.split(",")) != batch:
        raise CLIError(f"--allowed padding:LENS needs one length per batch item (--batch {batch}) but "
                       f"found {len(arg.split(','))} in {spec!r}")
    if spec in ("causal", "full") or (sep and kind in ("sliding", "prefix", "document", "padding")):
        try:
            return parse_relation(spec, T), note
        except ValueError as err:
            raise CLIError(f"--allowed: {err}") from None
    raise CLIError(f"expected --allowed to be causal, full, sliding:W, prefix:P, document:IDS, "
                   f"padding:LENS or auto but found {spec!r}")


def _embedding_table(model: Any, E: int) -> tuple[Tensor, str]:
    get = getattr(model, "get_input_embeddings", None)
    if callable(get) and isinstance(get(), nn.Embedding) and get().embedding_dim == E:
        return get().weight, "model.get_input_embeddings()"
    if isinstance(model, nn.Module):
        for name, sub in model.named_modules():
            if isinstance(sub, nn.Embedding) and sub.embedding_dim == E:
                return sub.weight, f"model.{name}"
    raise CLIError(f"--input-scale embedding: the model has no nn.Embedding of width E={E}; pass a "
                   f"number instead (e.g. --input-scale 0.05)")


def make_input(model: Any, B: int, T: int, E: int, scale: str, seed: int) -> tuple[Tensor, str]:
    """The random ``(B, T, E)`` float32 input and a sentence saying how it was drawn.

    ``scale`` is a positive number (``N(0, scale²)`` entries) or ``"embedding"`` (rows of the
    model's token-embedding table drawn uniformly: the scale of real inputs).
    """
    gen = torch.Generator().manual_seed(seed)
    if scale == "embedding":
        table, where = _embedding_table(model, E)
        rows = torch.randint(table.shape[0], (B, T), generator=gen)
        return table.detach().float()[rows].clone(), f"random rows of the embedding table {where}"
    try:
        s = float(scale)
    except ValueError:
        raise CLIError(f"expected --input-scale to be a positive number or 'embedding' but found "
                       f"{scale!r}") from None
    if not s > 0 or s == float("inf"):
        raise CLIError(f"expected --input-scale to be a positive finite number but found {scale!r}")
    return torch.randn(B, T, E, generator=gen) * s, f"N(0, {s:g}^2) entries"


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) turned into one space."""
    return " ".join(str(text).split())
