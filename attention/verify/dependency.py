"""Dependency maps: how strongly every output position depends on every input position.

``dependency_map(model, x)`` measures, with autograd in float64, ``D[i, j] = ‖∂y_i/∂x_j‖`` (exact
Jacobian blocks, or random probes that keep the support exact). :mod:`attention.verify.leaks`
compares the map with an allowed relation.

Shape legend: ``B`` batch, ``T`` positions (``T_out`` outputs, ``T_in`` inputs; equal here), ``E``
input features, ``F`` output features (everything after ``(B, T)``, flattened).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

import torch
from torch import Tensor
from torch.func import vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from .calling import Progress, call_model, check_finite, check_model, check_x, float64_model

__all__ = ["VmapUnsupported", "batch_independent", "dependency_map", "probe_cotangents", "replicated_rows",
           "vmapped_rows"]

# Probe vectors per vmapped chunk: keeps each chunk's activations to a few hundred MB at T = 256.
_CHUNK_ELEMENTS = 2**22


def dependency_map(
    model: Callable[..., Any],
    x: Tensor,
    *,
    reduce: str = "fro",
    probes: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
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
        progress: a tqdm bar on stderr when the map will take over ~2 s (estimated from the first
            chunk). Default: ``False``.

    Raises:
        NonFiniteError: (a ``ValueError``) when the output or the map holds NaN or inf, naming the
            positions: such a map has no verdict.

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
    check_model(model)
    x = check_x(x)
    kwargs = dict(model_kwargs or {})
    model, dtype = float64_model(model, x, kwargs)
    B, T, E = x.shape
    xr = x.detach().to(dtype).clone().requires_grad_(True)
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        y = call_model(model, xr, kwargs)                                # (B, T, F), one forward pass
    check_finite(y.detach(), "model output", "(batch b, position t)")
    F = y.shape[-1]
    if not y.requires_grad:                                         # output does not use x at all
        D2 = torch.zeros(B, T, T, dtype=dtype, device=x.device)
    elif probes is not None:
        D2 = _rows(y, xr, _random_rows(B, T, F, probes, generator, y), probes, chunk_size, progress)
    elif E < F:
        D2 = _columns(y, xr, chunk_size, progress)
    else:
        D2 = _rows(y, xr, None, 1, chunk_size, progress)
    check_finite(D2, "dependency map", "(batch b, output i, input j)", dims=3)
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


def _rows(y: Tensor, xr: Tensor, make, k: int, chunk_size: int | None, progress: bool = False) -> Tensor:
    """``D2[b, i, j] = Σ_f Σ_b' Σ_e (∂y[b,i,f]/∂x[b',j,e])²`` from vmapped vjps (one per row)."""
    B, T, F = y.shape
    n = B * T * (F if make is None else k)                          # rows to compute
    c = _auto_chunk(B, T, F, n, chunk_size)
    D2 = torch.zeros(B * T, T, dtype=y.dtype, device=y.device)     # flat (b, i) x j

    def vjp(ct: Tensor) -> Tensor:
        return torch.autograd.grad(y, xr, ct, retain_graph=True, allow_unused=True)[0]

    bar = Progress(-(-n // c), f"dependency map ({n} vjps, {str(y.dtype)[6:]})", progress)
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
        bar.step()
    bar.close()
    return D2.view(B, T, T)


def _columns(y: Tensor, xr: Tensor, chunk_size: int | None, progress: bool = False) -> Tensor:
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

    bar = Progress(-(-n // c), f"dependency map ({n} jvps, {str(y.dtype)[6:]})", progress)
    for start in range(0, n, c):
        cols = torch.arange(start, min(start + c, n), device=y.device)
        v = torch.zeros(cols.numel(), n, dtype=y.dtype, device=y.device)
        v[torch.arange(cols.numel()), cols] = 1
        g = vmap(jvp)(v.view(-1, B, T, E))                          # (c, B, T, F): columns of J
        if g is None:
            continue
        sq = g.square().sum(dim=3)                                  # (c, B, T_out): Σ over f
        D2t.index_add_(0, (cols // E) % T, sq)                      # input position j of each column
        bar.step()
    bar.close()
    return D2t.permute(1, 2, 0)                                     # (B, T_out, T_in)


def probe_cotangents(B: int, T: int, F: int, probes: int, generator: torch.Generator | None = None) -> Tensor:
    """``(probes, B, T, F)`` float64 Gaussian cotangents: probe ``p`` of output ``(b, i)`` is ``[p, b, i]``.

    Drawn once in float64 so that a float32 pass and a float64 recomputation of the same rows use the
    same vectors (their estimates differ only by rounding).
    """
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    return torch.randn(probes, B, T, F, generator=gen, dtype=torch.float64)


def batch_independent(model: Callable[..., Any], x: Tensor, kwargs: Mapping[str, Any]) -> bool:
    """Whether stacking other rows next to ``x`` leaves ``model(x)`` unchanged (no BatchNorm in
    training mode, no mask fixed to batch ``B``): then copies of ``x`` along the batch are independent
    and one backward through a stacked batch gives one Jacobian row per copy."""
    B = x.shape[0]
    with torch.no_grad():
        try:
            y = call_model(model, x, kwargs)
            # rows unlike x (a seeded generator, not the global RNG; shifted so that an x drawn with
            # the same seed is not reproduced)
            other = (torch.randn(x.shape, generator=torch.Generator().manual_seed(1234)) + 1.0).to(x)
            y2 = call_model(model, torch.cat([x, other]), kwargs)[:B]
        except (ValueError, TypeError):
            return False
    scale = float(y.abs().max()) if y.numel() else 0.0
    return bool(torch.isfinite(y2).all()) and float((y2 - y).abs().max()) <= 1e-4 * (1.0 + scale)


def replicated_rows(
    model: Callable[..., Any],
    x: Tensor,
    cotangents: Tensor,
    rows: Tensor,
    model_kwargs: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
) -> Tensor:
    """``D2 (B, T, T)``: squared Jacobian-row norms of the output rows ``rows`` (flat ``b·T + i``),
    summed over the probes in ``cotangents`` ``(k, B, T, F)`` and divided by ``k``.

    One copy of ``x`` per (row, probe) is stacked along the batch; each chunk is one batched forward
    and **one** backward whose cotangent has a single nonzero output ``(b, i)`` per copy (no vmap, so
    SDPA keeps its fast CPU kernels). Runs in ``x.dtype``; only for models that
    :func:`batch_independent` accepts. Rows not in ``rows`` stay 0.
    """
    kwargs = dict(model_kwargs or {})
    B, T, E = x.shape
    k, _, _, F = cotangents.shape
    flat_ct = cotangents.to(x.dtype).reshape(k, B * T, F)
    jobs = [(int(r), p) for r in rows.tolist() for p in range(k)]
    c = chunk_size or max(1, _CHUNK_ELEMENTS // (B * T * max(T, F)))
    D2 = torch.zeros(B * T, T, dtype=x.dtype, device=x.device)
    bar = Progress(-(-len(jobs) // c), f"dependency rows ({len(jobs)} vjps, {str(x.dtype)[6:]})", progress)
    for start in range(0, len(jobs), c):
        part = jobs[start:start + c]
        n = len(part)
        xr = x.detach().repeat(n, 1, 1).requires_grad_(True)           # (n·B, T, E): n copies of x
        with torch.enable_grad():
            y = call_model(model, xr, kwargs)                           # (n·B, T, F)
            ct = torch.zeros(n, B * T, F, dtype=y.dtype, device=y.device)
            r = torch.tensor([j[0] for j in part], device=x.device)
            p = torch.tensor([j[1] for j in part], device=x.device)
            ct[torch.arange(n, device=x.device), r] = flat_ct[p, r]
            if not y.requires_grad:
                break
            (g,) = torch.autograd.grad(y, xr, ct.view(y.shape), allow_unused=True, materialize_grads=True)
        sq = g.view(n, B, T, E).square().sum(dim=(1, 3))               # (n, T_in): Σ over b', e
        D2.index_add_(0, r, sq / k)
        bar.step()
    bar.close()
    return D2.view(B, T, T)


# functorch warns once per process when an op (CPU flash attention's backward) has no batching rule
# and runs item by item; that per-item loop is what ``vmapped_rows`` measures as its fastest path.
_NO_BATCHING_RULE = "There is a performance drop because we have not yet implemented the batching rule"


class VmapUnsupported(RuntimeError):
    """The model's backward pass cannot run under ``vmap`` (``vmapped_rows`` callers fall back)."""


def vmapped_rows(
    model: Callable[..., Any],
    x: Tensor,
    cotangents: Tensor | int,
    rows: Tensor | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    batched: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(D2 (B, T, T), y (B, T, F), cotangents)``: what :func:`replicated_rows` computes, from
    **one** forward pass.

    The model runs once on ``x`` (the real batch, so batch-coupled layers behave as they do) in
    ``x.dtype`` with its default SDPA backend; then each chunk of (row, probe) jobs is one backward
    pass vmapped over its cotangents (``autograd.grad(..., is_grads_batched=True)``), each with a
    single nonzero output ``(b, i)``. (Stacked copies of ``x`` repeat the same forward pass once per
    copy; here only the backward passes differ.)

    Args:
        cotangents: ``(k, B, T, F)`` probe vectors, or ``k`` to draw :func:`probe_cotangents` once
            ``F`` is known (returned, so a float64 recomputation can reuse them).
        rows: output rows to compute (flat ``b·T + i``). Default: all ``B·T``. Other rows stay 0.
        batched: vmap the backward passes over each chunk; ``False`` runs them one by one (slow,
            but for any model autograd can differentiate). Default: ``True``.

    Raises:
        NonFiniteError: the model's output holds NaN or inf (checked before any backward pass).
        VmapUnsupported: the backward cannot be vmapped (a custom ``autograd.Function`` that reads
            values in Python, ...): use :func:`replicated_rows` instead.
    """
    kwargs = dict(model_kwargs or {})
    B, T, E = x.shape
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = call_model(model, xr, kwargs)                               # (B, T, F), one forward
    check_finite(y.detach(), "model output", "(batch b, position t)")
    F = y.shape[-1]
    if isinstance(cotangents, int):
        cotangents = probe_cotangents(B, T, F, cotangents)
    k = cotangents.shape[0]
    if tuple(cotangents.shape[1:]) != (B, T, F):
        raise ValueError(f"expected cotangents of shape (k, B, T, F) = (k, {B}, {T}, {F}) but found "
                         f"{tuple(cotangents.shape)}")
    rows = torch.arange(B * T) if rows is None else rows
    D2 = torch.zeros(B * T, T, dtype=x.dtype, device=x.device)
    if not y.requires_grad:                                         # output does not use x at all
        return D2.view(B, T, T), y.detach(), cotangents
    flat_ct = cotangents.to(device=x.device, dtype=y.dtype).reshape(k, B * T, F)
    r_all = rows.to(x.device).repeat_interleave(k)                  # job = (row, probe), probes inner
    p_all = torch.arange(k, device=x.device).repeat(rows.numel())
    n = r_all.numel()
    c = _auto_chunk(B, T, F, n, chunk_size) if batched else 1
    bar = Progress(-(-n // c), f"dependency rows ({n} vjps, {str(x.dtype)[6:]})", progress)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NO_BATCHING_RULE)
        for start in range(0, n, c):
            r, p = r_all[start:start + c], p_all[start:start + c]
            ct = torch.zeros(r.numel(), B * T, F, dtype=y.dtype, device=y.device)
            ct[torch.arange(r.numel(), device=y.device), r] = flat_ct[p, r]
            try:
                (g,) = torch.autograd.grad(y, xr, ct.view(-1, B, T, F) if batched else ct.view(B, T, F),
                                           retain_graph=True, allow_unused=True,
                                           materialize_grads=True, is_grads_batched=batched)
                g = g.view(-1, B, T, E)                             # (c, B, T, E): rows of J
            except RuntimeError as err:
                if not batched:
                    raise
                raise VmapUnsupported(f"the backward pass cannot be vmapped: {err}") from err
            D2.index_add_(0, r, g.square().sum(dim=(1, 3)) / k)      # (c, T_in): Σ over b', e
            bar.step()
    bar.close()
    return D2.view(B, T, T), y.detach(), cotangents
