"""``python -m attention.verify --zoo``: run every bug-zoo entry and print what was caught.

Exit status: 0 when every bug is caught and every correct model passes, 1 otherwise.
"""
from __future__ import annotations

import json

import torch

from ..zoo import ZOO
from .calling import NonFiniteError
from .cli_report import choose_mode
from .cli_setup import CLIError, one_line
from .report import leak_report

__all__ = ["run_zoo"]


def run_zoo(args) -> int:
    """Check every zoo entry; 0 when every bug is caught and every correct model passes, else 1."""
    if args.allowed != "causal":
        raise CLIError("--allowed applies to --model only: every zoo entry carries its own relation")
    if args.batch is None:
        args.batch = 2
    for flag, value in (("--attn", args.attn != "eager"), ("--padding", args.padding is not None)):
        if value:
            raise CLIError(f"{flag} applies to --hf only")
    T = args.seq_len
    dim = 16 if args.dim is None else args.dim
    for flag, v in (("--batch", args.batch), ("--dim", dim),
                    ("--probes", 1 if args.probes is None else args.probes)):
        if v < 1:
            raise CLIError(f"expected {flag} >= 1 but found {v}")
    fast, why = choose_mode(args.batch, T, dim, args.exact, args.probes)
    rows = []
    for name, entry in ZOO.items():
        if T < entry.min_seq_len:
            raise CLIError(f"--seq-len {T} is too short for zoo entry {name} (needs >= {entry.min_seq_len})")
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.batch, T, dim, generator=gen)
        try:
            r = leak_report(entry.build(dim, args.seed), x, entry.allowed(T), args.atol,
                            seed=args.seed, probes=(args.probes or 1) if fast else None, fast=fast,
                            sweep=not args.no_sweep)
        except NonFiniteError:
            raise
        except (ValueError, TypeError) as err:
            raise CLIError(f"zoo entry {name} at --dim {dim}: {one_line(err)}") from None
        ok = (not r.passed) if entry.buggy else r.passed
        first = r.first_leak
        rows.append({
            "name": name, "buggy": entry.buggy, "description": entry.description,
            "allowed": r.allowed_name, "passed": r.passed, "ok": ok, "n_leaks": len(r.leaks),
            "first_leak": None if first is None else first._asdict(),
            "sweep_failures": len(r.sweep_failures), "precision": r.precision, "mode": r.mode,
        })
    bugs = [r for r in rows if r["buggy"]]
    good = [r for r in rows if not r["buggy"]]
    caught = sum(r["ok"] for r in bugs)
    clean = sum(r["ok"] for r in good)
    all_ok = caught == len(bugs) and clean == len(good)
    summary = (f"{caught}/{len(bugs)} bugs caught, {clean}/{len(good)} correct models pass"
               + ("" if all_ok else ": DETECTOR MISJUDGED SOME ENTRIES"))
    if args.json:
        print(json.dumps({"passed": all_ok, "summary": summary, "shape": [args.batch, T, dim], "mode": why,
                          "entries": rows}, indent=2))
    else:
        precisions = sorted({r["precision"] for r in rows})
        print(f"attention.verify bug zoo: input (B, T, E) = ({args.batch}, {T}, {dim}); dependency maps "
              f"in {', '.join(precisions)}\n  mode: {'fast verdict' if fast else 'exact'} ({why})\n")
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
