"""``python -m attention.verify``: prove no look-ahead over a grid of configurations.

For every configuration a causal ``MultiHeadAttention`` must show zero weight on future keys and
unchanged outputs at positions ``0..L`` after every position after ``L`` is replaced, for every
``L``. The same models without the causal mask are negative controls: both checks must flag them,
or the checks prove nothing. Exit code 0 only when every causal case passes and every control fails.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..masks import make_padding_mask
from ..multihead import MultiHeadAttention
from .leak_cli import main as leak_main
from .lookahead import check_output_invariance, default_atol, max_future_weight

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16}
_HEADS = ((1, 1), (2, 2), (4, 4), (8, 8), (8, 2), (4, 1))   # (H, KV): MHA, GQA, MQA
_SEQ_LENS = (1, 2, 8, 33)


@dataclass
class CaseResult:
    kind: str                # "causal" or "control"
    name: str
    T: int
    batch: int
    heads: int
    kv_heads: int
    padding: bool
    max_future_weight: float
    max_output_diff: float   # worst over every prefix L
    worst_prefix: int
    weight_ok: bool          # causal: no future weight; control: future weight found
    invariance_ok: bool      # causal: outputs unchanged; control: a change was found
    expected: bool           # the case behaved as it must (PASS for causal, FAIL for controls)


def _variant(H: int, K: int) -> str:
    return "MHA" if H == K else ("MQA" if K == 1 else "GQA")


def run_case(T: int, batch: int, H: int, K: int, padding: bool, causal: bool,
             dtype: torch.dtype, seed: int) -> CaseResult:
    """Build one model, run both checks over every prefix, and return the result."""
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)                                   # module init only; restored below
    model = MultiHeadAttention(8 * H, H, num_kv_heads=K).to(dtype).eval()
    torch.random.set_rng_state(torch_state)
    x = torch.randn(batch, T, 8 * H, generator=gen).to(dtype)
    pad = None
    if padding:
        lengths = torch.randint(1, T + 1, (batch,), generator=gen)
        pad = make_padding_mask(lengths, T)

    def fn(inp):
        return model(inp, padding_mask=pad, is_causal=causal, need_weights=False)[0]

    with torch.no_grad():
        _, w = model(x, padding_mask=pad, is_causal=causal)   # (B, H, T, T)
    atol = default_atol(dtype)
    fut = max_future_weight(w)
    worst, worst_L = 0.0, 0
    for L in range(T):
        r = check_output_invariance(fn, x, L, generator=gen, atol=atol)
        if r.max_diff > worst or L == 0:
            worst, worst_L = r.max_diff, L
    weight_clean, inv_clean = fut <= 1e-6, worst <= atol
    name = f"{_variant(H, K)} T={T} B={batch} H={H}/{K}{' pad' if padding else ''}"
    if causal:
        ok_w, ok_i = weight_clean, inv_clean
    else:
        ok_w, ok_i = not weight_clean, not inv_clean
    return CaseResult("causal" if causal else "control", name, T, batch, H, K, padding, fut,
                      worst, worst_L, ok_w, ok_i, ok_w and ok_i)


def run_grid(dtype: torch.dtype = torch.float32, seed: int = 0) -> list[CaseResult]:
    """The causal cases (T incl. 1; 1..8 heads; MHA/GQA/MQA; batch 1 and 3; padding) + controls."""
    results = []
    for T in _SEQ_LENS:
        for i, (H, K) in enumerate(_HEADS):
            batch = 1 if H <= 2 else 3
            padding = (H, K) in ((4, 4), (8, 2))
            results.append(run_case(T, batch, H, K, padding, True, dtype, seed + i))
    for T in _SEQ_LENS[1:]:
        for H, K in ((4, 4), (8, 2)):
            results.append(run_case(T, 2, H, K, False, False, dtype, seed + 100 + T))
    return results


def format_table(results: Sequence[CaseResult]) -> str:
    head = f"{'kind':<8} {'configuration':<28} {'max future w':>12} {'max |Δout| ≤L':>14} {'worst L':>7}  result"
    lines = [head, "-" * len(head)]
    for r in results:
        if r.kind == "causal":
            verdict = "PASS" if r.expected else "FAIL"
        else:
            verdict = "FAIL (expected)" if r.expected else "PASS (check has no teeth!)"
        lines.append(f"{r.kind:<8} {r.name:<28} {r.max_future_weight:>12.2e} {r.max_output_diff:>14.2e} "
                     f"{r.worst_prefix:>7}  {verdict}")
    return "\n".join(lines)


def summarize(results: Sequence[CaseResult]) -> tuple[bool, str]:
    causal = [r for r in results if r.kind == "causal"]
    controls = [r for r in results if r.kind == "control"]
    n_pass = sum(r.expected for r in causal)
    n_caught = sum(r.expected for r in controls)
    ok = n_pass == len(causal) and n_caught == len(controls)
    verdict = "no look-ahead proven" if ok else "VERIFICATION FAILED"
    return ok, (f"{n_pass}/{len(causal)} causal cases PASS; {n_caught}/{len(controls)} unmasked "
                f"controls FAIL as they must: {verdict}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m attention.verify",
        description=(
            "Prove that causal MultiHeadAttention never looks ahead. For a grid of configurations "
            "(T in 1, 2, 8, 33; 1-8 heads; MHA, GQA, MQA; batch 1 and 3; with and without padding) "
            "it checks (1) the largest attention weight on a future key and (2) that outputs at "
            "positions 0..L do not change when every position after L is replaced, for every L. "
            "Unmasked models run as negative controls and must FAIL both checks."
        ),
        epilog="Exit status: 0 if every causal case passes and every control fails, 1 otherwise. "
               "Leak detector for your own model: --model pkg.module:factory [--seq-len --dim "
               "--batch --allowed causal|full|sliding:W|prefix:P|document:IDS|padding:LENS|auto "
               "--input-scale --output --no-sweep --probes], or --zoo for the bug zoo (see --model "
               "--help). The leak detector exits 0 pass, 1 leak, 2 usage error, 3 no verdict (NaN or "
               "inf: never a pass).",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32",
                   help="dtype of the models and inputs (default: float32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("--model", "--zoo", "--hf") or a.startswith(("--model=", "--hf=")) for a in argv):
        return leak_main(argv)                                      # the leak detector's CLI
    args = build_parser().parse_args(argv)
    dtype = _DTYPES[args.dtype]
    results = run_grid(dtype, args.seed)
    ok, summary = summarize(results)
    if args.json:
        print(json.dumps({"passed": ok, "summary": summary, "dtype": args.dtype,
                          "atol": default_atol(dtype),
                          "cases": [asdict(r) for r in results]}, indent=2))
    else:
        print(f"attention.verify: dtype={args.dtype}, atol={default_atol(dtype):.0e}\n")
        print(format_table(results))
        print()
        print(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
