"""The leak detector CLI's check and report, shared by ``--model`` and ``--hf``.

:func:`run_check` runs :func:`~attention.verify.report.leak_report` on a prepared model and input,
prints the text (:func:`format_report`) or JSON report and returns the exit status
(:data:`EXIT_CODES`).

Shape legend: ``B`` batch, ``T`` positions, ``E`` input features.
"""
from __future__ import annotations

import json
import time
import warnings
from typing import Any, Sequence

from torch import Tensor

from .calling import NonFiniteError, PrecisionWarning
from .cli_setup import CLIError, one_line
from .report import EXACT_LIMIT, LeakReport, leak_report

__all__ = ["EXIT_CODES", "EXIT_HELP", "choose_mode", "format_report", "run_check"]

EXIT_CODES = {"pass": 0, "leak": 1, "usage": 2, "undecided": 3}
EXIT_HELP = ("Exit status: 0 pass; 1 leak found (or a zoo entry misjudged); 2 usage error; 3 no "
             "verdict: NaN or inf in the outputs, the dependency map or the sweep (never a pass).")


def format_report(spec: str, shape: tuple[int, int, int], r: LeakReport, top: int,
                  probes: int | None = None, notes: Sequence[str] = ()) -> str:
    """The text report of one ``--model`` run."""
    B, T, E = shape
    forbidden = ~r.allowed_dense
    max_forbidden = float(r.dep_map[forbidden].max()) if bool(forbidden.any()) else 0.0
    checked = r.sweep_checked
    max_sweep = float(r.sweep[checked].max()) if bool(checked.any()) else 0.0
    kind = {"exact": "exact block norms", "probes": "float64 probes, estimated norms",
            "fast": "probes: exact pattern, estimated norms"}.get(r.mode, r.mode)
    lines = [f"attention.verify leak check: {spec}",
             f"  input (B, T, E) = ({B}, {T}, {E}); allowed relation: {r.allowed_name}",
             *(f"  {n}" for n in notes),
             f"  precision: dependency map {r.precision}, sweep {r.sweep_dtype}",
             f"  dependency map ({r.precision}, {kind}): max {float(r.dep_map.max()):.3e}, max forbidden "
             f"{max_forbidden:.3e} (threshold {r.atol:.1e}); {int(forbidden.sum())} forbidden pairs "
             f"checked; look-back reach {r.reach} positions"]
    if r.sweep_mode == "skipped":
        lines.append("  prefix sweep: skipped (--no-sweep)")
    else:
        mode = "" if r.sweep_mode == "batched" else f"; copies run {r.sweep_mode}"
        lines.append(f"  prefix sweep: {int(checked.sum())}/{T} prefixes checked, max |dy| {max_sweep:.3e} "
                     f"(atol {r.sweep_atol:.0e}){mode}")
    if r.passed:
        lines.append("PASS: no output depends on an input the relation forbids")
        return "\n".join(lines)
    if r.leaks:
        shown = r.leaks[:top]
        lines.append(f"LEAK: {len(r.leaks)} forbidden dependencies (output i depends on input j); "
                     f"largest {len(shown)}:")
        has_batch = any(l.batch is not None for l in shown)
        lines.append(f"  {'out i':>5} {'in j':>5}{' batch' if has_batch else ''}  ||dy_i/dx_j||")
        for l in shown:
            b = f" {l.batch:>5}" if has_batch else ""
            lines.append(f"  {l.out_pos:>5} {l.in_pos:>5}{b}  {l.magnitude:.3e}")
        if r.allowed_name.startswith("sliding_window"):
            lines.append(f"  the model looks back {r.reach} positions: stacked windows of W over N layers "
                         f"reach N*(W-1)+1; if that is by design, check --allowed sliding:{r.reach}")
    fails = r.sweep_failures
    if fails:
        worst = max(fails, key=lambda L: float(r.sweep[L]))
        listed = ", ".join(map(str, fails[:8])) + (", ..." if len(fails) > 8 else "")
        lines.append(f"  prefix sweep: outputs 0..L moved when inputs after L changed, for L = {listed} "
                     f"(max |dy| {float(r.sweep[worst]):.3e} at L={worst})")
    lines.append("FAIL")
    return "\n".join(lines)


def choose_mode(B: int, T: int, E: int, exact: bool, probes: int | None) -> tuple[bool, str]:
    """``(fast, why)``: the CLI's default is the fast verdict; exact block norms with ``--exact`` or
    when ``B·T·E <= EXACT_LIMIT`` (few enough vector-Jacobian products to take seconds at most)."""
    if exact and probes is not None:
        raise CLIError("--exact and --probes exclude each other: --exact computes every Jacobian block, "
                       "--probes K estimates them with K random probes per position")
    if exact:
        return False, "--exact"
    if probes is not None:
        return True, f"--probes {probes}"
    if B * T * E <= EXACT_LIMIT:
        return False, f"B*T*E = {B * T * E} <= {EXACT_LIMIT}: the exact map is cheap here"
    return True, (f"B*T*E = {B * T * E} > {EXACT_LIMIT}: the default fast verdict (--exact for "
                  f"exact block norms)")


def run_check(label: str, model: Any, x: Tensor, allowed: Any, args: Any, notes: list[str]) -> int:
    """Check ``model`` on ``x (B, T, E)`` against ``allowed``, print the report, return the exit status.

    ``args`` holds the shared options (``atol``, ``seed``, ``probes``, ``no_sweep``, ``top``,
    ``json``). A ``ValueError``/``TypeError`` from the check becomes a :class:`CLIError` (exit 2);
    :class:`NonFiniteError` propagates (exit 3).
    """
    B, T, E = x.shape
    fast, why = choose_mode(B, T, E, args.exact, args.probes)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PrecisionWarning)
        try:
            report = leak_report(model, x, allowed, args.atol, seed=args.seed,
                                 probes=(args.probes or 1) if fast else None, fast=fast,
                                 sweep=not args.no_sweep, progress=not args.json)
        except NonFiniteError:
            raise
        except (ValueError, TypeError) as err:
            raise CLIError(f"{label}: {one_line(err)}") from None
    seconds = time.perf_counter() - t0
    notes = notes + [f"mode: {report.mode} ({why}): {report.mode_detail}; checked in {seconds:.1f} s"] + [f"warning: {one_line(w.message)}" for w in caught
                     if issubclass(w.category, PrecisionWarning)]
    if args.json:
        print(json.dumps({"model": label, "shape": [B, T, E], "notes": notes,
                          **report.to_dict(max_leaks=args.top)}, indent=2))
    else:
        print(format_report(label, (B, T, E), report, args.top, notes=notes))
    return EXIT_CODES["pass"] if report.passed else EXIT_CODES["leak"]
