"""Leak detector: which inputs can each output see? Exact dependency maps, leaks, prefix sweeps.

``dependency_map(model, x)`` measures, with autograd in float64, how strongly every output position
depends on every input position: ``D[i, j] = ‖∂y_i/∂x_j‖``. ``find_leaks`` compares that map to the
relation the model must respect (a ``mask_mod`` from :mod:`attention.masks` or a dense keep-mask;
default causal) and lists the forbidden pairs it finds. ``invariance_sweep`` is the black-box
counterpart: for every prefix ``L`` it replaces the positions after ``L`` and measures how far outputs
``0..L`` move, all ``L`` in one batched call. ``leak_report`` runs all three and returns plain data
(tensors, lists, floats) for the CLI and the dashboard.

What a "model" is here: an ``nn.Module`` or any callable ``x (B, T, E) -> y (B, T, ...)`` or
``-> (y, ...)`` (only ``y`` is used). A :class:`~attention.MultiHeadAttention` is called as plain
self-attention, ``model(x, need_weights=False, **model_kwargs)`` (no mask unless you pass one, so an
unmasked attention layer is bidirectional and *does* leak); for a causal or masked layer pass
``model_kwargs={"is_causal": True}`` / ``{"mask": sliding_window(4)}``, or a closure
``lambda x: mha(x, is_causal=True)``.

Shape legend: ``B`` batch, ``T`` positions (``T_out`` outputs, ``T_in`` inputs; equal here), ``E``
input features, ``F`` output features (everything after ``(B, T)``, flattened).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..masks import causal_mod, materialize_mask

__all__ = [
    "Leak",
    "LeakReport",
    "dense_allowed",
    "dependency_map",
    "find_leaks",
    "invariance_sweep",
    "leak_report",
    "leaks_in_map",
    "sweep_checked_prefixes",
]

# Leak threshold, relative to the largest dependency in the map. In float64 a blocked path gives an
# exact 0 (masked softmax weights are exactly 0, so are their gradients); anything above 1e-9 of the
# strongest dependency is a real path, not rounding.
_REL_ATOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
# Probe vectors per vmapped chunk: keeps each chunk's activations to a few hundred MB at T = 256.
_CHUNK_ELEMENTS = 2**22


class Leak(NamedTuple):
    """One forbidden dependency: output ``out_pos`` depends on input ``in_pos`` with ``magnitude``.

    ``magnitude`` is ``‖∂y[out_pos]/∂x[in_pos]‖`` (see :func:`dependency_map`); ``batch`` is the
    batch item for batch-dependent relations (e.g. padding) and ``None`` otherwise.
    """

    out_pos: int
    in_pos: int
    magnitude: float
    batch: int | None = None


# ------------------------------------------------------------------------------------------------
# Calling models
# ------------------------------------------------------------------------------------------------
def _check_x(x: object) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("expected x to be a floating-point torch.Tensor but found "
                        + (f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__))
    if x.dim() == 2:
        x = x.unsqueeze(0)                                          # (T, E) -> (1, T, E)
    if x.dim() != 3 or x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"expected x of shape (B, T, E) or (T, E) with B, T, E >= 1 but found "
                         f"{tuple(x.shape)}")
    return x


def _check_model(model: object) -> None:
    if not callable(model):
        raise TypeError(f"expected model to be an nn.Module or a callable x (B, T, E) -> y (B, T, ...) "
                        f"but found {type(model).__name__}")


def _call(model: Callable[..., Any], x: Tensor, model_kwargs: Mapping[str, Any]) -> Tensor:
    """Run the model on ``x (B, T, E)`` and return ``y`` reshaped to ``(B, T, F)``, or explain why not."""
    from ..multihead import MultiHeadAttention

    B, T, E = x.shape
    try:
        if isinstance(model, MultiHeadAttention):
            y = model(x, need_weights=False, **model_kwargs)
        else:
            y = model(x, **model_kwargs)
    except Exception as err:                                        # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"model {_model_name(model)} failed on x of shape (B, T, E) = {(B, T, E)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if isinstance(y, (tuple, list)) and y:
        y = y[0]
    if not isinstance(y, Tensor):
        raise TypeError(f"expected model {_model_name(model)} to return a Tensor (B, T, ...) or a tuple "
                        f"starting with one but found {type(y).__name__}")
    if y.dim() < 2 or tuple(y.shape[:2]) != (B, T):
        raise ValueError(f"expected model {_model_name(model)} to map x of shape (B, T, E) = {(B, T, E)} "
                         f"to y of shape (B, T, ...) = ({B}, {T}, ...) but found {tuple(y.shape)}")
    return y.reshape(B, T, -1)                                      # (B, T, F)


def _model_name(model: object) -> str:
    return getattr(model, "__name__", None) or type(model).__name__


def _float64_model(model: Callable[..., Any], x: Tensor, model_kwargs: Mapping[str, Any]):
    """A float64 copy of the model (the user's model is never touched) and the dtype it runs in.

    ``nn.Module``: ``copy.deepcopy(model).double()`` (train/eval mode kept). Other callables cannot be
    copied or cast, so they get float64 input; if they reject it (e.g. a closure over float32
    weights) they run in ``x.dtype``.
    """
    if isinstance(model, nn.Module):
        return copy.deepcopy(model).double(), torch.float64
    try:
        with torch.no_grad():
            _call(model, x.to(torch.float64), model_kwargs)
        return model, torch.float64
    except (ValueError, TypeError):
        if x.dtype == torch.float64:
            raise
        with torch.no_grad():
            _call(model, x, model_kwargs)                           # raises the real problem, if any
        return model, x.dtype


# ------------------------------------------------------------------------------------------------
# Dependency map
# ------------------------------------------------------------------------------------------------
def dependency_map(
    model: Callable[..., Any],
    x: Tensor,
    *,
    reduce: str = "fro",
    probes: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor:
    """How strongly every output position depends on every input position, from exact Jacobians.

    ``D[i, j] = ‖∂y_i/∂x_j‖``: the Frobenius norm of the Jacobian block between output position
    ``i`` (all its features) and input position ``j`` (all its features). With ``reduce="fro"``
    (default) the norm also runs over the batch, cross-item terms included::

        D[i, j]² = Σ_b Σ_b' Σ_f Σ_e (∂y[b, i, f] / ∂x[b', j, e])²

    so a model that mixes batch items (BatchNorm in training mode) shows those paths too.
    ``reduce="max"`` takes the largest per-output-item norm; ``reduce="none"`` returns the
    ``(B, T, T)`` per-output-item maps ``D[b, i, j]² = Σ_b' Σ_f Σ_e (...)²``.

    How: the model runs **once** in float64 (an ``nn.Module`` is deep-copied and cast; the original is
    untouched) on the full batch with autograd on, so BatchNorm in training mode and other
    batch-coupled layers behave exactly as in training; then ``torch.func.vmap`` runs the backward
    pass (a vector-Jacobian product) for a whole chunk of one-hot cotangents at once, one per output
    ``(b, i, f)``: ``B·T·F`` rows of the Jacobian, no Python loop of backward passes. If there are
    fewer input entries than output entries (``E < F``) it computes columns instead: the
    Jacobian-vector products ``J v`` for the ``B·T·E`` one-hot tangents, as vmapped vjps of the vjp
    (no second forward pass, so BatchNorm still sees the real batch).

    ``probes=k`` trades exactness for speed: ``k`` random Gaussian cotangents per output ``(b, i)``
    instead of ``F`` one-hot ones (``B·T·k`` passes). ``D²`` is then an unbiased estimate; blocked
    paths still give exactly 0 and a nonzero block gives a nonzero entry with probability 1, so the
    *support* (which is what leak detection needs) stays exact.

    Scaled dot-product attention runs with PyTorch's math backend inside this function (its CPU
    flash backward has no vmap rule).

    Args:
        model: an ``nn.Module`` or callable ``x (B, T, E) -> y (B, T, ...)`` or ``-> (y, ...)``; a
            ``MultiHeadAttention`` is called as self-attention ``model(x, need_weights=False,
            **model_kwargs)``. The model runs in its current mode: call ``.eval()`` first if it has
            dropout.
        x: ``(B, T, E)`` input (``(T, E)`` is a batch of one). Its values matter for nonlinear models.
        reduce: ``"fro"``, ``"max"`` or ``"none"`` (see above). Default: ``"fro"``.
        probes: random probes per output position, or ``None`` for the exact map. Default: ``None``.
        generator: source of the random probes. Default: a generator seeded with 0.
        chunk_size: probes per vmapped backward call. Default: about ``2**22 / (B·T·max(T, F))``.
        model_kwargs: extra keyword arguments for every model call. Default: none.

    Returns:
        float64 tensor ``(T_out, T_in)`` (``(B, T_out, T_in)`` for ``reduce="none"``); ``T_out =
        T_in = T``. In the model's own dtype (float32, ...) only for a callable that rejects float64.
    """
    if reduce not in ("fro", "max", "none"):
        raise ValueError(f"expected reduce to be 'fro', 'max' or 'none' but found {reduce!r}")
    if probes is not None and (isinstance(probes, bool) or not isinstance(probes, int) or probes < 1):
        raise ValueError(f"expected probes to be None or an int >= 1 but found {probes!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"expected chunk_size to be None or an int >= 1 but found {chunk_size!r}")
    _check_model(model)
    x = _check_x(x)
    kwargs = dict(model_kwargs or {})
    model, dtype = _float64_model(model, x, kwargs)
    B, T, E = x.shape
    xr = x.detach().to(dtype).clone().requires_grad_(True)
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        y = _call(model, xr, kwargs)                                # (B, T, F), one forward pass
    F = y.shape[-1]
    if not y.requires_grad:                                         # output does not use x at all
        D2 = torch.zeros(B, T, T, dtype=dtype, device=x.device)
    elif probes is not None:
        D2 = _rows(y, xr, _random_rows(B, T, F, probes, generator, y), probes, chunk_size)
    elif E < F:
        D2 = _columns(y, xr, chunk_size)
    else:
        D2 = _rows(y, xr, None, 1, chunk_size)
    D = D2.clamp_min(0).sqrt()                                      # (B, T_out, T_in)
    if reduce == "fro":
        return D2.sum(0).clamp_min(0).sqrt()
    if reduce == "max":
        return D.amax(0)
    return D


def _auto_chunk(B: int, T: int, F: int, n: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // (B * T * max(T, F)))
    return max(1, min(n, chunk_size))


def _random_rows(B, T, F, k, generator, y):
    """Cotangent generator for ``probes=k``: row ``r`` is output ``(b, i)`` = divmod(r // k, T)."""
    gen = torch.Generator().manual_seed(0) if generator is None else generator

    def make(rows: Tensor) -> tuple[Tensor, Tensor]:
        c = rows.numel()
        pos = rows // k                                             # flat (b, i) per probe
        ct = torch.zeros(c, B * T, F, dtype=y.dtype)
        ct[torch.arange(c), pos] = torch.randn(c, F, generator=gen, dtype=torch.float64).to(y.dtype)
        return ct.view(c, B, T, F).to(y.device), pos.to(y.device)

    return make


def _rows(y: Tensor, xr: Tensor, make, k: int, chunk_size: int | None) -> Tensor:
    """``D2[b, i, j] = Σ_f Σ_b' Σ_e (∂y[b,i,f]/∂x[b',j,e])²`` from vmapped vjps (one per row)."""
    B, T, F = y.shape
    n = B * T * (F if make is None else k)                          # rows to compute
    c = _auto_chunk(B, T, F, n, chunk_size)
    D2 = torch.zeros(B * T, T, dtype=y.dtype, device=y.device)     # flat (b, i) x j

    def vjp(ct: Tensor) -> Tensor:
        return torch.autograd.grad(y, xr, ct, retain_graph=True, allow_unused=True)[0]

    for start in range(0, n, c):
        rows = torch.arange(start, min(start + c, n))
        if make is None:                                            # one-hot: row r = (b, i, f)
            ct = torch.zeros(rows.numel(), B * T * F, dtype=y.dtype, device=y.device)
            ct[torch.arange(rows.numel()), rows.to(y.device)] = 1
            ct, pos = ct.view(-1, B, T, F), (rows // F).to(y.device)
        else:
            ct, pos = make(rows)
        g = vmap(vjp)(ct)                                           # (c, B, T, E): rows of J
        if g is None:
            continue
        sq = g.square().sum(dim=(1, 3))                             # (c, T_in): Σ over b', e
        D2.index_add_(0, pos, sq / (1 if make is None else k))
    return D2.view(B, T, T)


def _columns(y: Tensor, xr: Tensor, chunk_size: int | None) -> Tensor:
    """Same ``D2`` from Jacobian-vector products ``J v`` (one per input entry ``(b', j, e)``).

    ``u -> J^T u`` is linear, so the vjp of it at any ``u`` maps ``v -> J v``: a vmapped
    double-backward, with no second forward pass.
    """
    B, T, F = y.shape
    E = xr.shape[-1]
    u = torch.zeros_like(y, requires_grad=True)
    (jt_u,) = torch.autograd.grad(y, xr, u, create_graph=True)      # J^T u, differentiable in u
    n = B * T * E
    c = _auto_chunk(B, T, F, n, chunk_size)
    D2t = torch.zeros(T, B, T, dtype=y.dtype, device=y.device)     # j x (b, i)

    def jvp(v: Tensor) -> Tensor:
        return torch.autograd.grad(jt_u, u, v, retain_graph=True, allow_unused=True)[0]

    for start in range(0, n, c):
        cols = torch.arange(start, min(start + c, n), device=y.device)
        v = torch.zeros(cols.numel(), n, dtype=y.dtype, device=y.device)
        v[torch.arange(cols.numel()), cols] = 1
        g = vmap(jvp)(v.view(-1, B, T, E))                          # (c, B, T, F): columns of J
        if g is None:
            continue
        sq = g.square().sum(dim=3)                                  # (c, B, T_out): Σ over f
        D2t.index_add_(0, (cols // E) % T, sq)                      # input position j of each column
    return D2t.permute(1, 2, 0)                                     # (B, T_out, T_in)


# ------------------------------------------------------------------------------------------------
# Allowed relations and leaks
# ------------------------------------------------------------------------------------------------
def dense_allowed(allowed: Any, T: int, S: int | None = None, batch: int = 1) -> Tensor:
    """The allowed relation as a dense keep-mask: ``(T, S)``, or ``(B, T, S)`` if it depends on ``b``.

    Args:
        allowed: a ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (output position ``q_idx`` may depend on
            input position ``kv_idx``), a ``(T, S)`` (or ``(B, T, S)``) bool / 0-1 keep-mask, or
            ``None`` for causal. Keep-mask convention: ``True`` = allowed.
        T, S: output and input positions. ``S`` defaults to ``T``.
        batch: ``B`` for batch-dependent mask_mods (padding, per-item documents). Default: 1.
    """
    S = T if S is None else S
    if allowed is None:
        allowed = causal_mod
    if callable(allowed) and not isinstance(allowed, Tensor):
        keep = materialize_mask(allowed, batch, 1, T, S)[:, 0]      # (B|1, T, S)
        return keep[0] if keep.shape[0] == 1 else keep
    if not isinstance(allowed, Tensor):
        raise TypeError(f"expected allowed to be None, a mask_mod or a (T, S) keep-mask tensor but "
                        f"found {type(allowed).__name__}")
    from ..masks import check_keep_values

    keep = check_keep_values(allowed, "allowed")
    if keep.dim() == 2 and tuple(keep.shape) == (T, S):
        return keep
    if keep.dim() == 3 and tuple(keep.shape) in ((batch, T, S), (1, T, S)):
        return keep[0] if keep.shape[0] == 1 else keep
    raise ValueError(f"expected allowed of shape (T, S) = {(T, S)} (or (B, T, S) = {(batch, T, S)}) "
                     f"but found {tuple(keep.shape)}")


def _default_atol(dep_map: Tensor, atol: float | None) -> float:
    if atol is not None:
        return float(atol)
    scale = float(dep_map.max()) if dep_map.numel() else 0.0
    return _REL_ATOL.get(dep_map.dtype, 1e-5) * scale


def leaks_in_map(dep_map: Tensor, allowed: Any = None, atol: float | None = None) -> list[Leak]:
    """The forbidden entries of a dependency map above ``atol``, largest first.

    No model call: use it to compare one map with several allowed relations.

    Args:
        dep_map: ``(T, S)`` from :func:`dependency_map`, or ``(B, T, S)`` (``reduce="none"``) for a
            batch-dependent relation.
        allowed: ``mask_mod``, dense keep-mask or ``None`` (causal), as in :func:`dense_allowed`.
        atol: entries ``<= atol`` count as no dependency. Default: ``1e-9 ×`` the largest entry
            (float64; exact zeros are what a blocked path gives).

    Returns:
        list of :class:`Leak`, sorted by magnitude (largest first), then position.
    """
    if not isinstance(dep_map, Tensor) or dep_map.dim() not in (2, 3):
        found = tuple(dep_map.shape) if isinstance(dep_map, Tensor) else type(dep_map).__name__
        raise ValueError(f"expected dep_map of shape (T, S) or (B, T, S) but found {found}")
    T, S = dep_map.shape[-2:]
    batch = dep_map.shape[0] if dep_map.dim() == 3 else 1
    if dep_map.dim() == 2 and callable(allowed) and not isinstance(allowed, Tensor) \
            and _uses_batch(allowed, T, S):
        raise ValueError(f"allowed relation {_rel_name(allowed)} depends on the batch item: compute "
                         f"the map with reduce='none' to get (B, T, S)")
    keep = dense_allowed(allowed, T, S, batch).to(dep_map.device)
    if keep.dim() == 3 and dep_map.dim() == 2:
        raise ValueError(f"allowed of shape {tuple(keep.shape)} depends on the batch item: compute "
                         f"the map with reduce='none' to get (B, T, S)")
    atol = _default_atol(dep_map, atol)
    bad = (dep_map > atol) & ~keep                                   # (B?, T, S)
    idx = bad.nonzero()                                             # (n, 2 or 3), row-major order
    mags = dep_map[bad]                                             # (n,), same order
    order = torch.sort(mags, descending=True, stable=True).indices  # ties keep position order
    leaks = []
    for k in order.tolist():
        pos = idx[k].tolist()
        if dep_map.dim() == 3:
            leaks.append(Leak(pos[1], pos[2], float(mags[k]), pos[0]))
        else:
            leaks.append(Leak(pos[0], pos[1], float(mags[k])))
    return leaks


def _rel_name(allowed: Any) -> str:
    if allowed is None:
        return "causal"
    if isinstance(allowed, Tensor):
        return f"dense mask {tuple(allowed.shape)}"
    return getattr(allowed, "__name__", None) or repr(allowed)


def _uses_batch(mask_mod: Any, T: int, S: int) -> bool:
    """Whether a mask_mod reads ``b``: evaluate it with a batch index of two zeros (always in range)."""
    b = torch.zeros(2, 1, 1, 1, dtype=torch.long)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long)
    q = torch.arange(T).view(1, 1, T, 1)
    kv = torch.arange(S).view(1, 1, 1, S)
    out = torch.as_tensor(mask_mod(b, h, q, kv))
    return out.dim() == 4 and out.shape[0] == 2


def _batch_dependent(allowed: Any, B: int, T: int) -> bool:
    """True when the relation differs between batch items (padding lengths, per-item documents)."""
    if isinstance(allowed, Tensor):
        return allowed.dim() == 3 and allowed.shape[0] > 1
    return callable(allowed) and _uses_batch(allowed, T, T)        # non-callables: dense_allowed checks


def find_leaks(
    model: Callable[..., Any],
    x: Tensor,
    allowed: Any = None,
    atol: float | None = None,
    *,
    probes: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> list[Leak]:
    """Every (output, input) pair the model depends on but the allowed relation forbids.

    Computes the exact :func:`dependency_map` and returns its entries above ``atol`` outside the
    allowed relation, largest first. An empty list means no forbidden dependency at this ``x``.

    The relation is about *dependencies*, not attention weights: output ``i`` of an attention layer
    always depends on input ``i`` through its own query, even where the attention mask blocks key
    ``i`` (padding). For such masks allow the diagonal too:
    ``or_masks(padding_mod(lengths), lambda b, h, q, kv: q == kv)``.

    Args:
        model: ``nn.Module`` or callable ``x (B, T, E) -> y (B, T, ...)`` (see :func:`dependency_map`).
        x: ``(B, T, E)`` input.
        allowed: ``mask_mod`` (``True`` = output ``q_idx`` may depend on input ``kv_idx``), a dense
            ``(T, T)`` keep-mask, or ``None`` for causal (``j <= i``). Default: ``None``.
        atol: threshold for "depends". Default: ``1e-9 ×`` the largest dependency.
        probes: ``None`` for the exact map; ``k`` for ``k`` random probes per output position
            (same leaks, estimated magnitudes; see :func:`dependency_map`). Default: ``None``.
        model_kwargs: extra keyword arguments for every model call. Default: none.

    Returns:
        list of :class:`Leak` ``(out_pos, in_pos, magnitude, batch)``.
    """
    x = _check_x(x)
    B, T = x.shape[:2]
    per_item = _batch_dependent(allowed, B, T)
    dep = dependency_map(model, x, reduce="none" if per_item else "fro", probes=probes,
                         model_kwargs=model_kwargs)
    return leaks_in_map(dep, allowed, atol)


# ------------------------------------------------------------------------------------------------
# Prefix-invariance sweep
# ------------------------------------------------------------------------------------------------
def _perturbed_copies(x: Tensor, seed: int) -> Tensor:
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


def _sweep(model, x, seed, model_kwargs) -> tuple[Tensor, bool]:
    B, T, E = x.shape
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model)                                # no side effects (BatchNorm stats)
    copies = _perturbed_copies(x, seed)                             # (T, B, T, E)
    with torch.no_grad():
        y = _call(model, x, model_kwargs)                           # (B, T, F), the reference
        stacked = torch.cat([x, copies.reshape(T * B, T, E)])       # (B + T·B, T, E): one batch
        y_all = _call(model, stacked, model_kwargs)                 # one batched forward
        y_ref, y_copies = y_all[:B], y_all[B:].view(T, B, T, -1)
        # A model that mixes the batch (BatchNorm in training mode) sees different statistics in
        # the stacked batch: then evaluate every copy on its own.
        mixing = bool((y_ref.float() - y.float()).abs().max() > _sweep_atol(x.dtype, None))
        if mixing:
            y_copies = torch.stack([_call(model, copies[L], model_kwargs) for L in range(T)])
    diff = (y_copies.float() - y.float().unsqueeze(0)).abs()        # (T copies, B, T, F)
    per_pos = diff.amax(dim=(1, 3))                                 # (T copies, T positions)
    past = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # positions 0..L of copy L
    return per_pos.masked_fill(~past, 0).amax(dim=1).cpu(), mixing


def _sweep_atol(dtype: torch.dtype, atol: float | None) -> float:
    from . import default_atol

    return default_atol(dtype) if atol is None else float(atol)


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
    not, it runs each copy on its own (``T + 1`` calls). An ``nn.Module`` runs on a deep copy, so its
    running statistics are not changed; other callables run as they are. Runs in ``x.dtype``.

    Args:
        model: ``nn.Module`` or callable ``x (B, T, E) -> y (B, T, ...)`` (see :func:`dependency_map`).
        x: ``(B, T, E)`` input.
        seed: seed of the perturbations. Default: 0.
        model_kwargs: extra keyword arguments for every model call. Default: none.

    Returns:
        ``(T,)`` float32 tensor: entry ``L`` is max |y' - y| over positions ``0..L``.
    """
    _check_model(model)
    x = _check_x(x)
    return _sweep(model, x, seed, dict(model_kwargs or {}))[0]


# ------------------------------------------------------------------------------------------------
# The report the CLI and the dashboard show
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeakReport:
    """Everything the leak detector found for one model, input and allowed relation (plain data).

    Attributes:
        dep_map: ``(T, T)`` float64 dependency map ``‖∂y_i/∂x_j‖`` (:func:`dependency_map`,
            ``reduce="fro"``).
        allowed_dense: ``(T, T)`` bool keep-mask of the allowed relation (``True`` = may depend);
            for a batch-dependent relation, the union over the batch.
        leaks: forbidden dependencies, largest first (:func:`find_leaks`).
        sweep: ``(T,)`` max |Δy| at positions ``0..L`` per prefix ``L`` (:func:`invariance_sweep`).
        sweep_checked: ``(T,)`` bool, ``True`` where the allowed relation forbids every output
            ``0..L`` to see an input after ``L`` (so ``sweep[L]`` must stay within ``sweep_atol``).
            All ``True`` for causal relations; ``False`` for ``L`` inside a prefix-LM prefix.
        sweep_atol: tolerance of the sweep (``default_atol`` of ``x.dtype``).
        atol: threshold used for the leaks.
        allowed_name: readable name of the relation, e.g. ``"sliding_window(4)"``.
        batch_mixing: the model's outputs depend on other batch items (the sweep ran per copy).
        passed: no leak and no failed sweep prefix.
    """

    dep_map: Tensor = field(repr=False)
    allowed_dense: Tensor = field(repr=False)
    leaks: list[Leak]
    sweep: Tensor = field(repr=False)
    sweep_checked: Tensor = field(repr=False)
    sweep_atol: float
    atol: float
    allowed_name: str
    batch_mixing: bool
    passed: bool

    @property
    def sweep_failures(self) -> list[int]:
        """Prefixes ``L`` whose outputs ``0..L`` moved although the relation forbids it."""
        bad = self.sweep_checked & (self.sweep > self.sweep_atol)
        return bad.nonzero().flatten().tolist()

    @property
    def first_leak(self) -> Leak | None:
        """The largest leak, or ``None``."""
        return self.leaks[0] if self.leaks else None

    def to_dict(self, max_leaks: int | None = None) -> dict[str, Any]:
        """JSON-ready dict (lists and floats only)."""
        leaks = self.leaks if max_leaks is None else self.leaks[:max_leaks]
        return {
            "passed": self.passed,
            "allowed": self.allowed_name,
            "n_leaks": len(self.leaks),
            "leaks": [l._asdict() for l in leaks],
            "max_dependency": float(self.dep_map.max()) if self.dep_map.numel() else 0.0,
            "max_forbidden_dependency": float(self.dep_map[~self.allowed_dense].max())
            if bool((~self.allowed_dense).any()) else 0.0,
            "atol": self.atol,
            "sweep": [float(v) for v in self.sweep],
            "sweep_checked": [bool(v) for v in self.sweep_checked],
            "sweep_failures": self.sweep_failures,
            "sweep_atol": self.sweep_atol,
            "batch_mixing": self.batch_mixing,
        }


def sweep_checked_prefixes(allowed_dense: Tensor) -> Tensor:
    """``(T,)`` bool: prefix ``L`` is checked when no output ``<= L`` may see an input ``> L``."""
    T = allowed_dense.shape[-2]
    keep = allowed_dense if allowed_dense.dim() == 2 else allowed_dense.any(0)
    # crossing[L] = any allowed (i, j) with i <= L < j
    i = torch.arange(T).view(T, 1, 1)                               # L
    rows = torch.arange(T).view(1, T, 1)
    cols = torch.arange(keep.shape[-1]).view(1, 1, -1)
    crossing = (keep.cpu().unsqueeze(0) & (rows <= i) & (cols > i)).flatten(1).any(1)
    return ~crossing


def leak_report(
    model: Callable[..., Any],
    x: Tensor,
    allowed: Any = None,
    atol: float | None = None,
    *,
    seed: int = 0,
    sweep: bool = True,
    probes: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> LeakReport:
    """Run the dependency map, the leak search and the prefix sweep; return a :class:`LeakReport`.

    Args:
        model: ``nn.Module`` or callable ``x (B, T, E) -> y (B, T, ...)``.
        x: ``(B, T, E)`` input.
        allowed: ``mask_mod``, dense ``(T, T)`` keep-mask or ``None`` (causal). Default: ``None``.
        atol: leak threshold. Default: ``1e-9 ×`` the largest dependency.
        seed: seed of the sweep's perturbations. Default: 0.
        sweep: run the invariance sweep (skip it to save ``T`` forward passes). Default: ``True``.
        probes: ``None`` for the exact map (``B·T·F`` backward passes); ``k`` for ``k`` random
            probes per output position (``B·T·k`` passes: the same leaks, estimated magnitudes).
            Default: ``None``.
        model_kwargs: extra keyword arguments for every model call. Default: none.
    """
    _check_model(model)
    x = _check_x(x)
    kwargs = dict(model_kwargs or {})
    B, T = x.shape[:2]
    per_item = _batch_dependent(allowed, B, T)
    dep_items = dependency_map(model, x, reduce="none", probes=probes, model_kwargs=kwargs)  # (B, T, T)
    dep = dep_items.square().sum(0).sqrt()                          # (T, T), reduce="fro"
    leaks = leaks_in_map(dep_items if per_item else dep, allowed, atol)
    keep = dense_allowed(allowed, T, T, B)
    keep_union = keep if keep.dim() == 2 else keep.any(0)
    checked = sweep_checked_prefixes(keep)
    s_atol = _sweep_atol(x.dtype, None)
    if sweep:
        sweep_values, mixing = _sweep(model, x, seed, kwargs)
    else:
        sweep_values, mixing = torch.zeros(T), False
    failed = bool((checked & (sweep_values > s_atol)).any())
    return LeakReport(dep_map=dep, allowed_dense=keep_union, leaks=leaks, sweep=sweep_values,
                      sweep_checked=checked, sweep_atol=s_atol,
                      atol=_default_atol(dep_items if per_item else dep, atol),
                      allowed_name=_rel_name(allowed), batch_mixing=mixing,
                      passed=not leaks and not failed)
