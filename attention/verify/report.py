"""The leak detector's report: dependency map, leaks and prefix sweep for one model, as plain data.

``leak_report`` runs :func:`~attention.verify.dependency.dependency_map`, the leak search and the
:func:`~attention.verify.sweep.invariance_sweep`; the CLI and the dashboard show its
:class:`LeakReport`.

Shape legend: ``B`` batch, ``T`` positions, ``E`` input features.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from .calling import call_model, check_finite, check_model, check_x, float64_model
from .dependency import (
    VmapUnsupported,
    batch_independent,
    dependency_map,
    probe_cotangents,
    replicated_rows,
    vmapped_rows,
)
from .leaks import Leak, leak_atol, leaks_in_map
from .lookahead import default_atol
from .relations import batch_dependent, dense_allowed, relation_name, sweep_checked_prefixes
from .sweep import run_sweep

__all__ = ["EXACT_LIMIT", "LeakReport", "fast_dependency", "leak_report"]

# The CLI runs the exact map by default only up to this many vector-Jacobian products (B·T·E): a
# few seconds at most on a 2-core CPU (B*T*E = 4096, the shipped model with its vocabulary-wide output,
# took 16 s on the loaded machine).
EXACT_LIMIT = 1024


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
        passed: no leak and no failed sweep prefix (never true by default: a NaN or inf anywhere
            raises :class:`~attention.verify.calling.NonFiniteError` instead of giving a report).
        precision: dtype of the dependency map (``"float64"``, or the input's dtype for a
            callable that rejects float64 input).
        sweep_dtype: dtype the sweep ran in (``x.dtype``).
        sweep_mode: ``"batched"``, ``"skipped"``, or why the copies ran one by one.
        input_rms: root mean square of the input ``x`` (its scale).
        mode: how the map was computed: ``"exact"`` (block norms, ``B·T·min(E, F)`` products),
            ``"probes"`` (``k`` float64 probes per position) or ``"fast"`` (``k`` float32 probes
            per position give the pattern; rows with a forbidden entry are recomputed in float64).
        mode_detail: one sentence on the mode (probes, what was recomputed, why).
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
    precision: str = "float64"
    sweep_dtype: str = "float32"
    sweep_mode: str = "batched"
    input_rms: float = float("nan")
    mode: str = "exact"
    mode_detail: str = ""

    @property
    def sweep_failures(self) -> list[int]:
        """Prefixes ``L`` whose outputs ``0..L`` moved although the relation forbids it."""
        bad = self.sweep_checked & (self.sweep > self.sweep_atol)
        return bad.nonzero().flatten().tolist()

    @property
    def reach(self) -> int:
        """Look-back reach: ``1 + max(i - j)`` over dependencies ``D[i, j] > atol`` with ``j <= i``
        (``sliding:reach`` is the narrowest window relation the model's look-back satisfies)."""
        T = self.dep_map.shape[-1]
        i = torch.arange(T).view(T, 1)
        j = torch.arange(T).view(1, T)
        back = (self.dep_map.cpu() > self.atol) & (j <= i)
        return int(((i - j) + 1)[back].max()) if bool(back.any()) else 0

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
            "precision": {"dependency_map": self.precision, "sweep": self.sweep_dtype},
            "sweep_mode": self.sweep_mode,
            "input_rms": self.input_rms,
            "reach": self.reach,
            "mode": self.mode,
            "mode_detail": self.mode_detail,
        }


def leak_report(
    model: Callable[..., Any],
    x: Tensor,
    allowed: Any = None,
    atol: float | None = None,
    *,
    seed: int = 0,
    sweep: bool = True,
    probes: int | None = None,
    fast: bool = False,
    progress: bool = False,
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
        fast: the fast verdict (:func:`fast_dependency`): ``probes`` (default 1) float32 probes per
            position give the dependency pattern (a structural zero is exactly zero in any
            precision), and only the rows holding a forbidden entry are recomputed in float64 for
            their magnitudes and the float64 threshold. The same verdicts as the float64 map; the
            allowed entries are float32 estimates. Default: ``False`` (the CLI's default is fast).
        progress: tqdm bars on stderr for steps estimated over ~2 s. Default: ``False``.
        model_kwargs: extra keyword arguments for every model call. Default: none.

    Raises:
        NonFiniteError: (a ``ValueError``) when the model's outputs, the dependency map or the sweep
            hold NaN or inf, naming the positions: no verdict is possible.
    """
    check_model(model)
    x = check_x(x)
    kwargs = dict(model_kwargs or {})
    B, T = x.shape[:2]
    per_item = batch_dependent(allowed, B, T)
    keep = dense_allowed(allowed, T, T, B)
    if fast:
        dep_items, precision, mode, detail = fast_dependency(model, x, keep, probes or 1, kwargs, progress)
    else:
        dep_items = dependency_map(model, x, reduce="none", probes=probes, model_kwargs=kwargs,
                                   progress=progress)               # (B, T, T)
        precision = _dtype_name(dep_items.dtype)
        mode = "exact" if probes is None else "probes"
        detail = ("exact block norms" if probes is None else
                  f"{probes} random probe(s) per position in {precision}: exact pattern, estimated norms")
    dep = dep_items.square().sum(0).sqrt()                          # (T, T), reduce="fro"
    leaks = leaks_in_map(dep_items if per_item else dep, allowed, atol)
    keep_union = keep if keep.dim() == 2 else keep.any(0)
    checked = sweep_checked_prefixes(keep)
    s_atol = default_atol(x.dtype)
    if sweep:
        run = run_sweep(model, x, seed, kwargs)
        sweep_values, mixing, sweep_mode = run.values, run.batch_mixing, run.mode
    else:
        sweep_values, mixing, sweep_mode = torch.zeros(T), False, "skipped"
    failed = bool((checked & (sweep_values > s_atol)).any())
    return LeakReport(dep_map=dep, allowed_dense=keep_union, leaks=leaks, sweep=sweep_values,
                      sweep_checked=checked, sweep_atol=s_atol,
                      atol=leak_atol(dep_items if per_item else dep, atol),
                      allowed_name=relation_name(allowed), batch_mixing=mixing,
                      passed=not leaks and not failed, precision=precision,
                      sweep_dtype=_dtype_name(x.dtype), sweep_mode=sweep_mode,
                      input_rms=float(x.double().square().mean().sqrt()), mode=mode,
                      mode_detail=detail)


def fast_dependency(
    model: Callable[..., Any],
    x: Tensor,
    keep: Tensor,
    probes: int = 1,
    model_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> tuple[Tensor, str, str, str]:
    """The fast verdict's per-item map ``(B, T, T)``: ``(map, precision, mode, detail)``.

    1. Pattern: ``probes`` Gaussian cotangents per output ``(b, i)``, in float32: **one** forward
       pass with autograd, then the backward passes vmapped over chunks of cotangents
       (:func:`~attention.verify.dependency.vmapped_rows`). A blocked path gives exactly 0 in any
       precision; a real dependency gives a nonzero entry with probability 1.
    2. Magnitudes: the rows ``(b, i)`` with any nonzero *forbidden* entry are recomputed in float64
       with the same cotangents, so leaks are judged against the float64 threshold (``1e-9 ×`` the
       largest dependency) and float32 rounding can never make a leak (nor hide one: it is a
       candidate whenever its float32 value is not exactly 0).

    A model whose backward pass cannot be vmapped gets one copy of ``x`` per probe stacked along the
    batch instead (:func:`~attention.verify.dependency.replicated_rows`), or, if it also mixes the
    batch or rejects a stacked batch, one backward pass at a time (slow, but the same numbers). A
    callable that rejects float64 keeps its float32 values (and the float32 threshold).
    """
    kwargs = dict(model_kwargs or {})
    B, T, E = x.shape
    m32 = copy.deepcopy(model).float() if isinstance(model, nn.Module) else model
    x32 = x.detach().float()
    stacked = False
    try:
        D2, _, cts = vmapped_rows(m32, x32, probes, None, kwargs, progress=progress)
        how = "one forward, vmapped backward passes"
    except VmapUnsupported:
        stacked = batch_independent(m32, x32, kwargs)
        if stacked:
            D2, cts = _stacked_rows(m32, x32, probes, torch.arange(B * T), kwargs, progress)
            how = "stacked copies of x: the backward cannot be vmapped"
        else:
            D2, _, cts = vmapped_rows(m32, x32, probes, None, kwargs, progress=progress, batched=False)
            how = ("one backward pass at a time: the backward cannot be vmapped and the model mixes "
                   "the batch or rejects a stacked batch")
    check_finite(D2, "dependency map", "(batch b, output i, input j)", dims=3)
    forbidden = ~(keep if keep.dim() == 3 else keep.unsqueeze(0)).to(D2.device)
    candidates = ((D2 > 0) & forbidden).any(-1).flatten().nonzero().flatten()   # flat rows b·T + i
    detail = (f"{probes} float32 probe(s) per position ({B * T * probes} vjps, {how}): "
              f"the exact pattern with probability 1")
    if candidates.numel() == 0:
        return D2.double().clamp_min(0).sqrt(), "float32", "fast", detail + "; no forbidden entry is nonzero"
    m64, dtype = float64_model(model, x, kwargs)
    if dtype != torch.float64:
        return D2.clamp_min(0).sqrt(), "float32", "fast", detail + (
            f"; {candidates.numel()} row(s) with forbidden entries kept in float32 (the callable "
            f"rejects float64)")
    x64 = x.detach().double()
    try:
        D64, _, _ = vmapped_rows(m64, x64, cts, candidates, kwargs, progress=progress)
    except VmapUnsupported:
        D64 = (_stacked_rows(m64, x64, cts, candidates, kwargs, progress)[0] if stacked else
               vmapped_rows(m64, x64, cts, candidates, kwargs, progress=progress, batched=False)[0])
    check_finite(D64, "dependency map", "(batch b, output i, input j)", dims=3)
    out = D2.double().view(B * T, T)
    out[candidates] = D64.view(B * T, T)[candidates]
    return out.view(B, T, T).clamp_min(0).sqrt(), "float32 pattern, float64 leaking rows", "fast", detail + (
        f"; {candidates.numel()} row(s) with nonzero forbidden entries recomputed in float64")


def _stacked_rows(model, x, probes, rows, kwargs, progress) -> tuple[Tensor, Tensor]:
    """:func:`replicated_rows` for ``probes`` (a count, drawn here, or the cotangents): ``(D2, cts)``."""
    if isinstance(probes, int):
        with torch.no_grad():
            y = call_model(model, x, kwargs)                        # (B, T, F)
        check_finite(y, "model output", "(batch b, position t)")
        probes = probe_cotangents(x.shape[0], x.shape[1], y.shape[-1], probes)
    return replicated_rows(model, x, probes, rows, kwargs, progress=progress), probes


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
