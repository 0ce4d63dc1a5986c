"""Benchmark: our MultiHeadAttention against torch.nn.MultiheadAttention (run by hand, not a test).

    python benchmarks/bench_attention.py [--threads N [N ...]] [--masks none|causal ...]
                                         [--repeats N] [--quick] [--device cpu|cuda|all]

B=4, E=512, H=8, self-attention, T in {64, 256, 1024}, no mask and causal, on 1 and 2 CPU threads
(``torch.set_num_threads``; one table per thread count, each with the load average beside it),
both modules with the same weights (``MultiHeadAttention.from_torch``), eval mode under
``torch.inference_mode()``. Two comparisons:

  (a) with weights:    ours ``need_weights=True``  vs torch ``need_weights=True,
                       average_attn_weights=False`` (both return per-head weights)   target <= 1.0
  (b) without weights: ours ``need_weights=False`` vs torch ``need_weights=False``   target <= 1.1

Causal rows give ours ``is_causal=True`` and torch its boolean ``attn_mask`` (True = blocked, built
once outside the timed calls) with ``is_causal=True``. The 2-thread figures are only as good as the
machine is quiet: on a shared machine every parallel region waits for the second core, so compare
the load averages printed beside the tables.

Each figure is the median of ``--repeats`` timed calls after warm-up; ours and torch alternate
call by call in the same run (which one goes first alternates too), so drifting machine load hits
both. The script also reports which path torch took: in eval mode under inference_mode,
``nn.MultiheadAttention`` takes its fused native fast path (``torch._native_multi_head_attention``)
when it can (for self-attention, with or without weights), so both comparisons put our three
projections + explicit attention or ``F.scaled_dot_product_attention`` + out-projection against
that fused kernel. A last line times one training step (forward + backward,
train mode, grad enabled) at a middle T.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without install
from attention import MultiHeadAttention, make_causal_mask  # noqa: E402

B, E, H = 4, 512, 8
SEQ_LENS = (64, 256, 1024)
THREADS = (1, 2)
MASKS = ("none", "causal")
TARGETS = {"with weights": 1.0, "without weights": 1.1}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_pair(fa: Callable[[], object], fb: Callable[[], object], repeats: int, warmup: int,
               device: torch.device) -> tuple[float, float]:
    """Median milliseconds of ``fa`` and ``fb``, interleaved call by call."""
    for _ in range(warmup):
        fa(), fb()
    _sync(device)
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(repeats):
        order = ((0, fa), (1, fb)) if i % 2 == 0 else ((1, fb), (0, fa))
        for which, f in order:
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            times[which].append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def _make_pair(device: torch.device, dtype: torch.dtype) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(E, H, batch_first=True, device=device, dtype=dtype)
    with torch.no_grad():                                      # torch starts with zero biases
        ref.in_proj_bias.normal_(0, 0.1)
        ref.out_proj.bias.normal_(0, 0.1)
    ref.eval()
    return MultiHeadAttention.from_torch(ref).eval(), ref


def _torch_path(ref: nn.MultiheadAttention, x: torch.Tensor, need_weights: bool) -> str:
    """Which implementation torch runs (spy on the entry of its fused native kernel)."""
    native = torch._native_multi_head_attention
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return native(*args, **kwargs)

    torch._native_multi_head_attention = spy
    try:
        ref(x, x, x, need_weights=need_weights, average_attn_weights=False)
    finally:
        torch._native_multi_head_attention = native
    if calls:
        return "its fused native fast path (torch._native_multi_head_attention)"
    return "its Python path (F.multi_head_attention_forward)"


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_device(device: torch.device, seq_lens: tuple[int, ...], repeats: int, warmup: int,
                 dtype: torch.dtype, threads: tuple[int | None, ...] = (None,),
                 masks: tuple[str, ...] = MASKS) -> bool:
    """One table per thread count (``None``: torch's own); returns whether every ratio is on target."""
    ours, ref = _make_pair(device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name} ({device}), {dtype}, torch {torch.__version__}, B={B} E={E} H={H}, eval mode "
          f"under torch.inference_mode(), median of {repeats} interleaved calls (fewer at T=1024 on "
          f"CPU) after {warmup} warm-up calls")
    all_ok = True
    for n_threads in threads:
        if n_threads is not None:
            torch.set_num_threads(n_threads)
        rows, path_note = _time_rows(ours, ref, device, dtype, seq_lens, masks, repeats, warmup)
        shown = torch.get_num_threads() if device.type == "cpu" else "-"
        print(f"\nthreads={shown}, {_load()} (after the table)")
        print(path_note)
        head = (f"{'T':>5}  {'mask':<6} {'comparison':<16} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} "
                f"{'target':>7}  verdict")
        print(head)
        print("-" * len(head))
        for T, mask, what, ours_ms, torch_ms in rows:
            ratio = ours_ms / torch_ms
            ok = ratio <= TARGETS[what]
            all_ok &= ok
            print(f"{T:>5}  {mask:<6} {what:<16} {ours_ms:>9.3f} {torch_ms:>9.3f} {ratio:>6.2f} "
                  f"{'<=' + str(TARGETS[what]):>7}  {'OK' if ok else 'over'}")
    _train_line(device, dtype, seq_lens[len(seq_lens) // 2], max(3, repeats // 2), warmup)
    return all_ok


def _time_rows(ours: MultiHeadAttention, ref: nn.MultiheadAttention, device: torch.device,
               dtype: torch.dtype, seq_lens: tuple[int, ...], masks: tuple[str, ...], repeats: int,
               warmup: int) -> tuple[list[tuple], str]:
    """``(T, mask, comparison, ours ms, torch ms)`` rows at the current thread count."""
    rows = []
    path_note = ""
    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    for T in seq_lens:
        x = torch.randn(B, T, E, device=device, dtype=dtype)
        n = max(5, repeats // 3) if T >= 1024 and device.type == "cpu" else repeats
        for mask in masks:
            causal = mask == "causal"
            blocked = ~make_causal_mask(T, device=device, dtype=torch.bool) if causal else None   # (T, T)

            def run_ours(need_weights):
                return ours(x, is_causal=causal, need_weights=need_weights)

            def run_torch(need_weights):
                return ref(x, x, x, attn_mask=blocked, is_causal=causal, need_weights=need_weights,
                           average_attn_weights=False)

            with torch.inference_mode():
                # Same computation before timing it: outputs and per-head weights agree.
                (o1, w1), (o2, w2) = run_ours(True), run_torch(True)
                torch.testing.assert_close(o1, o2, **tol)
                torch.testing.assert_close(w1, w2, **tol)
                torch.testing.assert_close(run_ours(False)[0], run_torch(False)[0], **tol)
                if not path_note:
                    path_note = (f"torch ran (a) {_torch_path(ref, x, True)}; "
                                 f"(b) {_torch_path(ref, x, False)}")
                for what, need_weights in (("with weights", True), ("without weights", False)):
                    rows.append((T, mask, what, *_time_pair(lambda: run_ours(need_weights),
                                                            lambda: run_torch(need_weights),
                                                            n, warmup, device)))
    return rows, path_note


def _train_line(device: torch.device, dtype: torch.dtype, T: int, repeats: int, warmup: int) -> None:
    """One training step (forward + backward, grad enabled, train mode, dropout 0) at one T."""
    ours, ref = _make_pair(device, dtype)
    ours.train(), ref.train()
    x = torch.randn(B, T, E, device=device, dtype=dtype, requires_grad=True)

    def step_ours(need_weights):
        out, _ = ours(x, need_weights=need_weights)
        out.sum().backward()

    def step_ref(need_weights):
        out, _ = ref(x, x, x, need_weights=need_weights, average_attn_weights=False)
        out.sum().backward()

    parts = []
    for need_weights in (True, False):
        o, t = _time_pair(lambda: step_ours(need_weights), lambda: step_ref(need_weights),
                          repeats, warmup, device)
        parts.append(f"need_weights={need_weights}: ours {o:.3f} ms, torch {t:.3f} ms (ratio {o / t:.2f})")
    print(f"training step (train mode, grad, forward+backward) at T={T}: " + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=list(THREADS), metavar="N",
                   help="CPU thread counts, one table each (default: 1 2)")
    p.add_argument("--masks", choices=MASKS, nargs="+", default=list(MASKS),
                   help="masks to time (default: none causal)")
    p.add_argument("--repeats", type=int, default=21, help="timed calls per figure (default: 21)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    p.add_argument("--quick", action="store_true", help="T in {64, 256} and 7 repeats")
    p.add_argument("--seq-lens", type=int, nargs="+", default=None, metavar="T",
                   help=f"sequence lengths to time (default: {' '.join(map(str, SEQ_LENS))})")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="where to run (default: CPU, and CUDA when available)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype (default: float32)")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.threads):
        p.error(f"expected --threads >= 1 but found {args.threads}")
    seq_lens = tuple(args.seq_lens or (SEQ_LENS[:2] if args.quick else SEQ_LENS))
    repeats = 7 if args.quick else args.repeats
    dtype = getattr(torch, args.dtype)
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        p.error("CUDA is not available")
    ok = True
    for device in devices:
        threads = tuple(args.threads) if device.type == "cpu" else (None,)
        ok &= bench_device(device, seq_lens, repeats, args.warmup, dtype, threads, tuple(args.masks))
    print("\nall ratios within target" if ok else "\nsome ratios over target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
