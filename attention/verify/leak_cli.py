"""``python -m attention.verify --model pkg.module:factory`` and ``--zoo``: the leak detector's CLI.

``--model`` imports the user's factory, builds the model and a random ``(B, T, E)`` input, and runs
the exact dependency map and the prefix sweep against the allowed relation. It prints PASS or the
leaking pairs (largest first) and exits 1 on a leak, so it can gate a CI job. ``--zoo`` runs every
entry of :mod:`attention.zoo` and prints which bugs were caught and which correct models passed.

Exit status: 0 pass, 1 leak (or a zoo entry misjudged), 2 bad usage (a factory that cannot be
imported, is not callable, or builds something that does not take ``(B, T, E)``).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from typing import Any, Sequence

import torch
from torch import nn

from ..zoo import ZOO, parse_relation
from .report import LeakReport, leak_report

__all__ = ["CLIError", "build_parser", "load_factory", "main", "parse_allowed"]


class CLIError(Exception):
    """A usage problem: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m attention.verify",
        description=(
            "Leak detector. --model pkg.module:factory builds your model (the factory returns an "
            "nn.Module or a callable x (B, T, E) -> y (B, T, ...) or (y, ...); it gets dim=, seq_len= "
            "and seed= if it has parameters with those names), feeds it a random (B, T, E) input and "
            "checks, from the exact float64 dependency map ||dy_i/dx_j|| and a perturbation sweep "
            "over every prefix, that no output depends on an input the allowed relation forbids. "
            "--zoo runs the built-in bug zoo and prints a caught/missed table."
        ),
        epilog="Exit status: 0 pass, 1 leak found (or a zoo entry misjudged), 2 usage error.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                      help="factory to import, e.g. mypkg.models:make_model")
    mode.add_argument("--zoo", action="store_true", help="run the bug zoo (attention.zoo)")
    p.add_argument("--seq-len", type=int, default=12,
                   help="T, positions of the random input (default: 12)")
    p.add_argument("--dim", type=int, default=16, help="E, features of the random input (default: 16)")
    p.add_argument("--batch", type=int, default=2, help="B, batch size of the random input (default: 2)")
    p.add_argument("--allowed", default="causal", metavar="RELATION",
                   help="what output i may depend on: causal | sliding:W | prefix:P | document:IDS "
                        "with IDS one document id per position, e.g. document:0,0,0,1,1,2 "
                        "(default: causal; --model only)")
    p.add_argument("--probes", type=int, default=None, metavar="K",
                   help="K random probes per position instead of the exact map: T*K instead of T*F "
                        "backward passes, the same leaks, estimated magnitudes (for long sequences)")
    p.add_argument("--top", type=int, default=10, help="leaking pairs to print (default: 10)")
    p.add_argument("--atol", type=float, default=None,
                   help="dependency threshold (default: 1e-9 x the largest dependency)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input and the model (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def parse_allowed(spec: str, T: int):
    """``causal`` | ``sliding:W`` | ``prefix:P`` | ``document:0,0,1,...`` -> mask_mod."""
    if spec in ("causal", "full") or spec.partition(":")[0] in ("sliding", "prefix", "document"):
        try:
            return parse_relation(spec, T)
        except ValueError as err:
            raise CLIError(f"--allowed: {err}") from None
    raise CLIError(f"expected --allowed to be causal, sliding:W, prefix:P or document:IDS but found {spec!r}")


def load_factory(spec: str):
    """Import ``pkg.module:factory`` and return the object it names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"expected --model as pkg.module:factory but found {spec!r}")
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


def build_model(obj: Any, spec: str, dim: int, seq_len: int, seed: int):
    """An ``nn.Module`` instance is used as is; anything else callable is called as the factory."""
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CLIError(f"--model {spec} names an object of type {type(obj).__name__}, not a factory "
                       f"(callable) or nn.Module")
    offered = {"dim": dim, "seq_len": seq_len, "seed": seed}
    try:
        params = inspect.signature(obj).parameters
        kwargs = {k: v for k, v in offered.items() if k in params}
    except (TypeError, ValueError):
        kwargs = {}
    torch.manual_seed(seed)
    try:
        model = obj(**kwargs)
    except Exception as err:                                        # noqa: BLE001 - one-line report
        raise CLIError(f"factory {spec} raised {type(err).__name__}: {err}") from None
    if not callable(model):
        raise CLIError(f"factory {spec} returned an object of type {type(model).__name__}, not an "
                       f"nn.Module or a "
                       f"callable x (B, T, E) -> y (B, T, ...)")
    return model


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------------------------
# --model
# ------------------------------------------------------------------------------------------------
def format_report(spec: str, shape: tuple[int, int, int], r: LeakReport, top: int,
                  probes: int | None = None) -> str:
    B, T, E = shape
    forbidden = ~r.allowed_dense
    max_forbidden = float(r.dep_map[forbidden].max()) if bool(forbidden.any()) else 0.0
    checked = r.sweep_checked
    max_sweep = float(r.sweep[checked].max()) if bool(checked.any()) else 0.0
    kind = f"{probes} random probes per position" if probes else "exact"
    lines = [
        f"attention.verify leak check: {spec}",
        f"  input (B, T, E) = ({B}, {T}, {E}); allowed relation: {r.allowed_name}",
        f"  dependency map ({str(r.dep_map.dtype).replace('torch.', '')}, {kind}): max "
        f"{float(r.dep_map.max()):.3e}, max forbidden {max_forbidden:.3e} (threshold {r.atol:.1e}); "
        f"{int(forbidden.sum())} forbidden pairs checked",
        f"  prefix sweep: {int(checked.sum())}/{T} prefixes checked, max |dy| {max_sweep:.3e} "
        f"(atol {r.sweep_atol:.0e}){'; batch-mixing model, copies run one by one' if r.batch_mixing else ''}",
    ]
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
    fails = r.sweep_failures
    if fails:
        worst = max(fails, key=lambda L: float(r.sweep[L]))
        listed = ", ".join(map(str, fails[:8])) + (", ..." if len(fails) > 8 else "")
        lines.append(f"  prefix sweep: outputs 0..L moved when inputs after L changed, for L = {listed} "
                     f"(max |dy| {float(r.sweep[worst]):.3e} at L={worst})")
    lines.append("FAIL")
    return "\n".join(lines)


def run_model(args) -> int:
    T = args.seq_len
    for name, v in (("--seq-len", T), ("--dim", args.dim), ("--batch", args.batch), ("--top", args.top),
                    ("--probes", 1 if args.probes is None else args.probes)):
        if v < 1:
            raise CLIError(f"expected {name} >= 1 but found {v}")
    allowed = parse_allowed(args.allowed, T)
    obj = load_factory(args.model)
    model = build_model(obj, args.model, args.dim, T, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, T, args.dim, generator=gen)
    if isinstance(model, nn.Module):
        model = model.float()                                       # the random input is float32
    try:
        report = leak_report(model, x, allowed, args.atol, seed=args.seed, probes=args.probes)
    except (ValueError, TypeError) as err:
        raise CLIError(f"{args.model}: {_one_line(err)}") from None
    if args.json:
        print(json.dumps({"model": args.model, "shape": [args.batch, T, args.dim],
                          **report.to_dict(max_leaks=args.top)}, indent=2))
    else:
        print(format_report(args.model, (args.batch, T, args.dim), report, args.top, args.probes))
    return 0 if report.passed else 1


# ------------------------------------------------------------------------------------------------
# --zoo
# ------------------------------------------------------------------------------------------------
def run_zoo(args) -> int:
    if args.allowed != "causal":
        raise CLIError("--allowed applies to --model only: every zoo entry carries its own relation")
    T = args.seq_len
    for flag, v in (("--batch", args.batch), ("--dim", args.dim),
                    ("--probes", 1 if args.probes is None else args.probes)):
        if v < 1:
            raise CLIError(f"expected {flag} >= 1 but found {v}")
    rows = []
    for name, entry in ZOO.items():
        if T < entry.min_seq_len:
            raise CLIError(f"--seq-len {T} is too short for zoo entry {name} (needs >= {entry.min_seq_len})")
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.batch, T, args.dim, generator=gen)
        try:
            r = leak_report(entry.build(args.dim, args.seed), x, entry.allowed(T), args.atol,
                            seed=args.seed, probes=args.probes)
        except (ValueError, TypeError) as err:
            raise CLIError(f"zoo entry {name} at --dim {args.dim}: {_one_line(err)}") from None
        ok = (not r.passed) if entry.buggy else r.passed
        first = r.first_leak
        rows.append({
            "name": name, "buggy": entry.buggy, "description": entry.description,
            "allowed": r.allowed_name, "passed": r.passed, "ok": ok, "n_leaks": len(r.leaks),
            "first_leak": None if first is None else first._asdict(),
            "sweep_failures": len(r.sweep_failures),
        })
    bugs = [r for r in rows if r["buggy"]]
    good = [r for r in rows if not r["buggy"]]
    caught = sum(r["ok"] for r in bugs)
    clean = sum(r["ok"] for r in good)
    all_ok = caught == len(bugs) and clean == len(good)
    summary = (f"{caught}/{len(bugs)} bugs caught, {clean}/{len(good)} correct models pass"
               + ("" if all_ok else ": DETECTOR MISJUDGED SOME ENTRIES"))
    if args.json:
        print(json.dumps({"passed": all_ok, "summary": summary, "shape": [args.batch, T, args.dim],
                          "entries": rows}, indent=2))
    else:
        print(f"attention.verify bug zoo: input (B, T, E) = ({args.batch}, {T}, {args.dim})\n")
        head = (f"{'model':<32} {'kind':<7} {'allowed':<26} {'leaks':>5} {'first leak':>10} "
                f"{'sweep':>6}  verdict")
        print(head)
        print("-" * len(head))
        for r in rows:
            first = "-" if r["first_leak"] is None else f"{r['first_leak']['out_pos']}<-{r['first_leak']['in_pos']}"
            sweep = f"{r['sweep_failures']} L" if r["sweep_failures"] else "ok"
            if r["buggy"]:
                verdict = "caught" if r["ok"] else "MISSED"
            else:
                verdict = "pass" if r["ok"] else "FALSE POSITIVE"
            print(f"{r['name']:<32} {'bug' if r['buggy'] else 'correct':<7} {r['allowed'][:26]:<26} "
                  f"{r['n_leaks']:>5} {first:>10} {sweep:>6}  {verdict}")
        print()
        print("first leak i<-j: output i depends on input j; sweep: prefixes L whose outputs 0..L moved")
        print(summary)
    return 0 if all_ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_zoo(args) if args.zoo else run_model(args)
    except CLIError as err:
        msg = _one_line(err)
        if args.json:
            print(json.dumps({"passed": False, "error": msg}))
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
