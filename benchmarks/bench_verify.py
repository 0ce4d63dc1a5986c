"""Benchmark the leak detector on the zoo's 2-layer GPT block stack (run by hand).

    python benchmarks/bench_verify.py [--seq-len 256 --dim 64 --batch 1 --threads N
                                       --exact-seq-len 32,128,256 --no-exact]

One run prints, with wall and CPU time (the machine is shared: CPU time is what the process used)
and the load average:

- one forward pass in float32 and float64 (the units of the ratios);
- the fast verdict's dependency pattern (``fast_dependency``: T float32 probes through one forward
  and vmapped backward passes, float64 only for rows that leak; issue 10 target <= 2 s at B=1,
  T=256, E=64);
- the CLI's default check (``leak_report(fast=True)``: the verdict + the prefix sweep);
- the previous default for comparison: float64 probes=1 through vmapped backward passes;
- the exact float64 map at each T of ``--exact-seq-len`` (T·E vector-Jacobian products), as a ratio
  to T·E float64 forward passes at that T (target <= 3 forward-equivalents per product).

Targets: the verdict <= 2 s wall (issue 10 measured 5.9 s wall for float64 probes=1 with torch's
default threads); CPU time is printed next to it because other processes share the cores (with 2
threads CPU time counts both). Checks (lower-triangular pattern, zero sweep, exact == fast pattern) so a fast-but-wrong run
cannot look good.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from attention.verify import dependency_map, leak_report
from attention.verify.report import fast_dependency
from attention.zoo import ZOO


def _timed(fn, repeats: int = 1):
    """(result, wall s, CPU s): the best of ``repeats`` calls (by wall time) after one warm-up call."""
    out = fn()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return out, best[0], best[1]


def _lengths(text: str) -> list[int]:
    """``"32,128"`` -> ``[32, 128]`` (each >= 1)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, e.g. 32,128, but found {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected sequence lengths >= 1 but found {text!r}")
    return values


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--exact-seq-len", type=_lengths, default=[32, 128],
                   help="T of the exact map, comma-separated (T·E products each: about a minute at "
                        "T=128 and several at T=256 on 2 cores; default 32,128)")
    p.add_argument("--no-exact", action="store_true", help="skip the exact map")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    T, E, B = args.seq_len, args.dim, args.batch
    entry = ZOO["gpt_block_stack"]
    model = entry.build(E, seed=0)                                  # 2 pre-norm blocks, 4 heads, eval
    x = torch.randn(B, T, E, generator=torch.Generator().manual_seed(0))
    model64, x64 = entry.build(E, seed=0).double(), x.double()
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    load0 = os.getloadavg()

    dependency_map(model, x[:, :4])                                 # one-time vmap/autograd warm-up
    with torch.no_grad():
        _, fwd32, fwd32_cpu = _timed(lambda: model(x), 20)
        _, fwd64, fwd64_cpu = _timed(lambda: model64(x64), 20)
    rows = [("forward pass, float32", fwd32, fwd32_cpu, "", None),
            ("forward pass, float64", fwd64, fwd64_cpu, "", None)]
    checks = []

    (fast, *_), t, c = _timed(lambda: fast_dependency(model, x, causal), 3)
    rows.append((f"fast verdict: pattern, {B * T} f32 probes", t, c, "<= 2 s wall", t <= 2.0))
    checks.append(("fast pattern is exactly lower-triangular", torch.equal(fast.sum(0) > 0, causal)))

    report, t, c = _timed(lambda: leak_report(model, x, fast=True), 3)
    rows.append(("CLI default: fast verdict + prefix sweep", t, c, "", None))
    checks.append(("CLI default passes (no leak, zero sweep)", report.passed))

    old, t, c = _timed(lambda: dependency_map(model, x, probes=1))
    rows.append((f"before: probes=1 f64 vmapped ({B * T} vjps)", t, c, "", None))
    checks.append(("old probe pattern == fast pattern", torch.equal(old > 0, fast.sum(0) > 0)))

    for Te in ([] if args.no_exact else args.exact_seq_len):
        xe = torch.randn(B, Te, E, generator=torch.Generator().manual_seed(0))  # T=Te beyond --seq-len too
        xe64 = xe.double()
        with torch.no_grad():
            _, fe64, fe64_cpu = _timed(lambda: model64(xe64), 20)
        exact, t, c = _timed(lambda: dependency_map(model, xe))
        n = B * Te * E
        ratio, ratio_cpu = t / (n * fe64), c / (n * fe64_cpu)
        rows.append((f"exact map T={Te} ({n} f64 vjps)", t, c, "", None))
        rows.append((f"  per vjp / one f64 forward at T={Te}", ratio, ratio_cpu, "<= 3 (CPU)", ratio_cpu <= 3))
        ce = torch.ones(Te, Te, dtype=torch.bool).tril()
        checks.append((f"exact map at T={Te} is exactly lower-triangular", torch.equal(exact > 0, ce)))

    load1 = os.getloadavg()
    print(f"leak detector benchmark: gpt_block_stack (2 layers, 4 heads), (B, T, E) = ({B}, {T}, {E}), "
          f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{load0[0]:.1f} -> {load1[0]:.1f} on {os.cpu_count()} cores\n")
    head = f"{'measurement':<44} {'wall':>9} {'CPU':>9} {'CPU/fwd64':>9}  {'target':<12} result"
    print(head)
    print("-" * len(head))
    for name, t, c, target, ok in rows:
        result = "" if ok is None else ("MET" if ok else "missed")
        if name.startswith("  per vjp"):
            print(f"{name:<44} {t:>8.2f}x {c:>8.2f}x {'':>9}  {target:<12} {result}")
        else:
            print(f"{name:<44} {t:>8.3f}s {c:>8.3f}s {c / fwd64_cpu:>9.1f}  {target:<12} {result}")
    print()
    for name, ok in checks:
        print(f"check: {name}: {'ok' if ok else 'FAILED'}")


if __name__ == "__main__":
    main()
