"""Benchmark the leak detector on the zoo's 2-layer GPT block stack (run by hand).

    python benchmarks/bench_verify.py [--seq-len 256 --dim 64 --batch 1 --threads N --no-exact]

Times, in one run and against one forward pass of the same model and input: the exact float64
dependency map (``dependency_map``: T·E vmapped vector-Jacobian products), the random-probe map
(``probes=1``: T products; exact support, estimated norms), and the prefix sweep over every L
(``invariance_sweep``: one batched forward of T+1 copies) next to T separate
``check_output_invariance`` calls. Prints a table with ratios and the issue's targets, and checks
the results (lower-triangular map, zero sweep) so a fast-but-wrong run cannot look good.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from attention import check_output_invariance
from attention.verify import dependency_map, invariance_sweep
from attention.zoo import ZOO


def _time(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _once(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=5, help="repeats of the short timings (median)")
    p.add_argument("--no-exact", action="store_true", help="skip the exact map (minutes at T=256)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    T, E, B = args.seq_len, args.dim, args.batch
    model = ZOO["gpt_block_stack"].build(E, seed=0)                # 2 pre-norm blocks, 4 heads, eval
    x = torch.randn(B, T, E, generator=torch.Generator().manual_seed(0))
    model64, x64 = ZOO["gpt_block_stack"].build(E, seed=0).double(), x.double()

    # One-time process warm-up of vmap/autograd (~0.5 s on the first call), not part of any timing.
    dependency_map(model, x[:, :4])
    with torch.no_grad():
        fwd32 = _time(lambda: model(x), args.repeats * 4)
        fwd64 = _time(lambda: model64(x64), args.repeats * 4)

    rows = [("forward pass, float32", fwd32, "", None),
            ("forward pass, float64", fwd64, "", None)]
    checks = []

    probe_map, t_probe = _once(lambda: dependency_map(model, x, probes=1))
    rows.append((f"dependency map, probes=1 ({B * T} vjps, f64)", t_probe, "", None))
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    checks.append(("probe map support is exactly lower-triangular", torch.equal(probe_map > 0, causal)))

    if not args.no_exact:
        exact, t_exact = _once(lambda: dependency_map(model, x))
        rows.append((f"dependency map, exact ({B * T * E} vjps, f64)", t_exact,
                     "<= 2 s and <= 50x fwd", t_exact <= 2.0 and t_exact <= 50 * fwd32))
        checks.append(("exact map support is exactly lower-triangular", torch.equal(exact > 0, causal)))
        checks.append(("probe support equals exact support", torch.equal(exact > 0, probe_map > 0)))

    sweep, t_sweep = _once(lambda: invariance_sweep(model, x))
    t_sweep = min(t_sweep, _time(lambda: invariance_sweep(model, x), max(1, args.repeats // 2)))
    rows.append((f"sweep, all {T} prefixes (1 batched call)", t_sweep, "<= 10x fwd", t_sweep <= 10 * fwd32))
    checks.append(("sweep: outputs 0..L unchanged for every L", float(sweep.max()) <= 1e-5))

    def separate():
        gen = torch.Generator().manual_seed(0)
        return [check_output_invariance(model, x, L, generator=gen) for L in range(T)]

    results, t_sep = _once(separate)
    rows.append((f"reference: {T} check_output_invariance calls", t_sep, "", None))
    checks.append(("reference checks all pass", all(r.passed for r in results)))

    print(f"leak detector benchmark: gpt_block_stack (2 layers, 4 heads), (B, T, E) = ({B}, {T}, {E}), "
          f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    head = f"{'measurement':<46} {'time':>10} {'x fwd f32':>10} {'x fwd f64':>10}  {'target':<22} result"
    print(head)
    print("-" * len(head))
    for name, t, target, ok in rows:
        result = "" if ok is None else ("MET" if ok else "missed")
        print(f"{name:<46} {t:>9.3f}s {t / fwd32:>10.1f} {t / fwd64:>10.1f}  {target:<22} {result}")
    print()
    for name, ok in checks:
        print(f"check: {name}: {'ok' if ok else 'FAILED'}")


if __name__ == "__main__":
    main()
