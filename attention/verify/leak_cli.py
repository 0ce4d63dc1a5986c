"""``python -m attention.verify --model pkg.module:factory`` and ``--zoo``: the leak detector's CLI.

``--model`` imports the user's factory (from the caller's working directory), builds the model and a
random ``(B, T, E)`` input, and runs the dependency map and the prefix sweep against the allowed
relation. It prints PASS or the leaking pairs (largest first), so it can gate a CI job. ``--zoo``
runs every entry of :mod:`attention.zoo` (:mod:`~attention.verify.zoo_cli`).

Exit status: 0 pass; 1 leak (or a zoo entry misjudged); 2 usage error (a factory that cannot be
imported, is not callable, or builds something that does not take ``(B, T, E)``; a bad option);
3 no verdict (NaN or inf in the outputs, the dependency map or the sweep: never a pass).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Sequence

from torch import nn

from .calling import NonFiniteError, PrecisionWarning, with_output
from .cli_setup import (
    RELATION_HELP,
    CLIError,
    build_model,
    infer_dim,
    load_factory,
    make_input,
    one_line,
    parse_allowed,
    takes_dim,
)
from .report import LeakReport, leak_report
from .zoo_cli import run_zoo

__all__ = ["EXIT_CODES", "build_parser", "format_report", "main", "run_model"]

EXIT_CODES = {"pass": 0, "leak": 1, "usage": 2, "undecided": 3}
EXIT_HELP = ("Exit status: 0 pass; 1 leak found (or a zoo entry misjudged); 2 usage error; 3 no "
             "verdict: NaN or inf in the outputs, the dependency map or the sweep (never a pass).")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m attention.verify",
        description=(
            "Leak detector. --model pkg.module:factory builds your model (imported from the current "
            "directory; the factory returns an nn.Module or a callable x (B, T, E) -> y (B, T, ...), "
            "(y, ...), a dict or an object with last_hidden_state; it gets dim=, seq_len= and seed= if "
            "it has parameters with those names), feeds it a random (B, T, E) input and checks, from "
            "the dependency map ||dy_i/dx_j|| (float64 for modules and for callables that accept "
            "float64 input) and a perturbation sweep over every prefix, that no output depends on an "
            "input the allowed relation forbids. Cost of the exact map: B*T*min(E, F) "
            "vector-Jacobian products (F = output features), each about one backward pass of the "
            "model over the whole batch; --probes K makes it B*T*K. --zoo runs the built-in bug "
            "zoo and prints a caught/missed table."
        ),
        epilog=EXIT_HELP,
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                      help="factory to import, e.g. mypkg.models:make_model")
    mode.add_argument("--zoo", action="store_true", help="run the bug zoo (attention.zoo)")
    p.add_argument("--seq-len", type=int, default=12,
                   help="T, positions of the random input (default: 12)")
    p.add_argument("--dim", type=int, default=None,
                   help="E, features of the random input (default: 16 for a factory with a dim "
                        "parameter and for --zoo; otherwise read from the model: d_model, "
                        "hidden_size, embed_dim, ... or its first Linear/LayerNorm)")
    p.add_argument("--batch", type=int, default=2, help="B, batch size of the random input (default: 2)")
    p.add_argument("--allowed", default="causal", metavar="RELATION",
                   help=RELATION_HELP + " (default: causal; --model only)")
    p.add_argument("--input-scale", default="1", metavar="S|embedding",
                   help="standard deviation of the random input's entries, or 'embedding' for rows "
                        "of the model's token-embedding table (the scale of real inputs; a random "
                        "N(0, 1) input has ~18x the norm of MiniLM's embeddings) (default: 1)")
    p.add_argument("--output", default=None, metavar="NAME",
                   help="which output to check when the model returns several: a dict key or "
                        "attribute (e.g. logits) or a tuple index (default: the tensor itself, the "
                        "first of a tuple, last_hidden_state of a dict or ModelOutput)")
    p.add_argument("--no-sweep", action="store_true",
                   help="skip the prefix sweep (dependency map only), e.g. for a model that only "
                        "takes a fixed batch size")
    p.add_argument("--probes", type=int, default=None, metavar="K",
                   help="K random probes per position instead of the exact map: B*T*K instead of "
                        "B*T*min(E, F) backward passes, the same leaks (with probability 1), "
                        "estimated magnitudes (for long sequences or wide models)")
    p.add_argument("--top", type=int, default=10, help="leaking pairs to print (default: 10)")
    p.add_argument("--atol", type=float, default=None,
                   help="dependency threshold (default: 1e-9 x the largest dependency in float64, "
                        "1e-5 x in float32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input and the model (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def format_report(spec: str, shape: tuple[int, int, int], r: LeakReport, top: int,
                  probes: int | None = None, notes: Sequence[str] = ()) -> str:
    """The text report of one ``--model`` run."""
    B, T, E = shape
    forbidden = ~r.allowed_dense
    max_forbidden = float(r.dep_map[forbidden].max()) if bool(forbidden.any()) else 0.0
    checked = r.sweep_checked
    max_sweep = float(r.sweep[checked].max()) if bool(checked.any()) else 0.0
    kind = f"{probes} random probes per position" if probes else "exact"
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


def run_model(args) -> int:
    """Check ``--model`` against ``--allowed``; 0 pass, 1 leak."""
    T = args.seq_len
    for name, v in (("--seq-len", T), ("--dim", 1 if args.dim is None else args.dim),
                    ("--batch", args.batch), ("--top", args.top),
                    ("--probes", 1 if args.probes is None else args.probes)):
        if v < 1:
            raise CLIError(f"expected {name} >= 1 but found {v}")
    obj = load_factory(args.model)
    dim = args.dim if args.dim is not None or not takes_dim(obj) else 16
    model = build_model(obj, args.model, dim, T, args.seed)
    notes = []
    if dim is None:
        dim, where = infer_dim(model)
        notes.append(f"E = {dim} from {where}")
    allowed, note = parse_allowed(args.allowed, T, args.batch, model)
    notes += [note] if note else []
    x, how = make_input(model, args.batch, T, dim, args.input_scale, args.seed)
    notes.append(f"input: {how}, rms {float(x.square().mean().sqrt()):.3g}")
    if isinstance(model, nn.Module):
        model = model.float()                                       # the random input is float32
    if args.output is not None:
        model = with_output(model, args.output)
        notes.append(f"output checked: {args.output}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PrecisionWarning)
        try:
            report = leak_report(model, x, allowed, args.atol, seed=args.seed, probes=args.probes,
                                 sweep=not args.no_sweep)
        except NonFiniteError:
            raise
        except (ValueError, TypeError) as err:
            raise CLIError(f"{args.model}: {one_line(err)}") from None
    notes += [f"warning: {one_line(w.message)}" for w in caught if issubclass(w.category, PrecisionWarning)]
    if args.json:
        print(json.dumps({"model": args.model, "shape": [args.batch, T, dim], "notes": notes,
                          **report.to_dict(max_leaks=args.top)}, indent=2))
    else:
        print(format_report(args.model, (args.batch, T, dim), report, args.top, args.probes, notes))
    return EXIT_CODES["pass"] if report.passed else EXIT_CODES["leak"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_zoo(args) if args.zoo else run_model(args)
    except CLIError as err:
        msg, code = one_line(err), EXIT_CODES["usage"]
        if args.json:
            print(json.dumps({"passed": False, "error": msg}))
        print(f"error: {msg}", file=sys.stderr)
        return code
    except NonFiniteError as err:
        msg = one_line(err)
        if args.json:
            print(json.dumps({"passed": False, "verdict": "undecided", "error": msg,
                              "where": err.where, "positions": err.positions}))
        else:
            print(f"NO VERDICT (exit 3): {msg}")
        return EXIT_CODES["undecided"]


if __name__ == "__main__":
    sys.exit(main())
