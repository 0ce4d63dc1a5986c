"""Long-context maps: tiled device-side pooling (attention.longcontext) vs the full map + numpy pooling.

    python benchmarks/bench_longcontext.py [--device cpu|cuda|auto] [--threads 1] [--repeat 3]
                                           [--seq-lens 1024 2048 4096] [--heads 8 16] [--pixels 512]
                                           [--no-mask] [--memory]

Causal self-attention, D=16, random q/k (the playground's projections are random too). Per case:

  full      the current dashboard path: ``scaled_dot_product_attention`` -> the whole (H, T, T)
            weights -> host numpy -> max-pool every head to ``pixels`` (as ``dashboard/plots.py``
            ``pooled`` does)
  pooled    ``pooled_attention_maps(..., pixels=pixels)``: query tiles, soft-max over full rows,
            max-pool on the device, only the pixels to the host
  ratio     full / pooled
  full MB / pooled KB   bytes of the result each path hands to the host
  zoom      ``attention_window`` of a 256 x 256 window (queries T/2.., keys T/2-256..: below the
            diagonal), exact since 256 <= pixels
  row, cell ``attention_row`` (one query, every head) and ``exact_weight`` (hover)

Figures are medians of ``--repeat`` calls after one warm-up, wall-clock with this process's CPU
time in brackets (on a shared machine the CPU time is the better guess of an idle machine's wall
time); the load average is printed with them. ``--memory`` also runs "pooled maps + one row" (and the full path)
at the largest T in a fresh process per case and prints the peak RSS growth (Linux: VmHWM after
resetting it through /proc/self/clear_refs).

``--device cuda`` runs the very same code with the tiles on the GPU (the full path then copies
the (H, T, T) weights to the host, which is what pooling on the device avoids).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without install
from attention import (  # noqa: E402
    attention_row,
    attention_window,
    exact_weight,
    make_causal_mask,
    pooled_attention_maps,
    resolve_device,
    scaled_dot_product_attention,
)

D, ZOOM = 16, 256


def np_pooled(A: np.ndarray, f: int) -> np.ndarray:
    """The dashboard's numpy pooling today: max over ``f x f`` blocks of one map, zero-padded."""
    if f == 1:
        return A
    R, C = A.shape
    n_r, n_c = math.ceil(R / f), math.ceil(C / f)
    padded = np.zeros((n_r * f, n_c * f), dtype=A.dtype)
    padded[:R, :C] = A
    return padded.reshape(n_r, f, n_c, f).max(axis=(1, 3))


def full_path(q, k, causal: bool, pixels: int) -> list[np.ndarray]:
    T = q.shape[-2]
    keep = make_causal_mask(T, dtype=torch.bool, device=q.device) if causal else None
    with torch.no_grad():
        _, w = scaled_dot_product_attention(q, k, k, mask=keep)   # (H, T, T) on the device
    w = w.cpu().numpy()                                          # the whole map to the host
    f = math.ceil(T / pixels)
    return [np_pooled(w[h], f) for h in range(w.shape[0])]


def timed(fn, repeat: int, device: torch.device) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds (this process) of ``repeat`` calls after a warm-up.

    On a shared machine the CPU time is the better guess of the wall time on an idle one.
    """
    fn()                                                         # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _ms(t: tuple[float, float]) -> str:
    return f"{t[0] * 1e3:.0f} ({t[1] * 1e3:.0f})"             # wall (cpu) in ms


def inputs(H: int, T: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    return torch.randn(H, T, D, generator=g).to(device), torch.randn(H, T, D, generator=g).to(device)


def rss_child(H: int, T: int, path: str, tile: int | None, causal: bool) -> None:
    """In a fresh process: print ``RSS before`` and ``peak RSS`` (bytes) around one pipeline run."""
    def status(key: str) -> int:                                 # kB in /proc/self/status
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

    mask = "causal" if causal else None
    q, k = inputs(H, T, torch.device("cpu"))
    pooled_attention_maps(q[:, :64], k[:, :64], mask=mask)      # warm-up: lazy one-off allocations
    full_path(q[:, :64], k[:, :64], causal, 512)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                             # reset VmHWM to the current RSS
    base = status("VmRSS:")
    if path == "pooled":
        maps = pooled_attention_maps(q, k, mask=mask, pixels=512, tile=tile)
        row = attention_row(q, k, T - 1, mask=mask)
        assert maps.maps.shape[0] == H and row.shape == (H, T)
    else:
        full_path(q, k, causal, 512)
    print(base * 1024, status("VmHWM:") * 1024)


def peak_rss(H: int, T: int, path: str = "pooled", tile: int | None = None,
             causal: bool = True) -> tuple[int, int]:
    """``(RSS before, peak RSS)`` in bytes of one run of ``path`` in a fresh process, one torch thread.

    ``path``: ``"pooled"`` (pooled maps + one row) or ``"full"`` (full map + numpy pooling).
    """
    cmd = [sys.executable, __file__, "--rss-child", path, "--heads", str(H), "--seq-lens", str(T),
           "--tile", str(tile or 0)] + ([] if causal else ["--no-mask"])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    base, peak = map(int, done.stdout.split())
    return base, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto' (default: cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, as the app)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per figure (median)")
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--heads", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--pixels", type=int, default=512, help="pixels per map side (default 512)")
    ap.add_argument("--no-mask", action="store_true", help="bidirectional instead of causal")
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS at the largest T")
    ap.add_argument("--full-max-gb", type=float, default=1.1,
                    help="skip the full path when its (H, T, T) float32 map exceeds this (default 1.1)")
    ap.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--rss-child", choices=["pooled", "full"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    causal = not args.no_mask
    mask = "causal" if causal else None
    if args.rss_child:
        rss_child(args.heads[0], args.seq_lens[0], args.rss_child, args.tile or None, causal)
        return

    device = resolve_device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} mask={mask} D={D} pixels={args.pixels} "
          f"repeat={args.repeat} torch={torch.__version__}")
    print(f"{'T':>5} {'H':>3} {'f':>2} {'full ms':>13} {'pooled ms':>11} {'ratio':>5} {'full MB':>7} "
          f"{'pooled KB':>9} {'zoom ms':>9} {'row ms':>6} {'cell ms':>7}  load avg")
    print(f"{'':>10} {'wall (cpu)':>13} {'wall (cpu)':>11} {'':>5} {'':>7} {'':>9} {'wall (cpu)':>9}")
    for T in args.seq_lens:
        for H in args.heads:
            q, k = inputs(H, T, device)
            f = math.ceil(T / args.pixels)
            pm = pooled_attention_maps(q, k, mask=mask, pixels=args.pixels)
            full_bytes = H * T * T * 4
            t_full = None
            if full_bytes <= args.full_max_gb * 2**30:
                t_full = timed(lambda: full_path(q, k, causal, args.pixels), args.repeat, device)
            t_pool = timed(lambda: pooled_attention_maps(q, k, mask=mask, pixels=args.pixels),
                           args.repeat, device)
            z, k0 = min(T, ZOOM), max(0, T // 2 - ZOOM)         # a window just below the diagonal
            window = dict(q_range=(T // 2, T // 2 + z) if T >= 2 * ZOOM else (0, z), k_range=(k0, k0 + z))
            t_zoom = timed(lambda: attention_window(q, k, mask=mask, pixels=args.pixels, **window),
                           args.repeat, device)
            t_row = timed(lambda: attention_row(q, k, T - 1, mask=mask), args.repeat, device)
            t_cell = timed(lambda: exact_weight(q, k, T - 1, T // 3, mask=mask), args.repeat, device)
            full_ms = _ms(t_full) if t_full else "skipped"
            ratio = f"{t_full[0] / t_pool[0]:5.1f}" if t_full else f"{'-':>5}"
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"{T:>5} {H:>3} {f:>2} {full_ms:>13} {_ms(t_pool):>11} {ratio} {full_bytes / 2**20:7.0f} "
                  f"{pm.maps.numel() * 4 / 2**10:9.0f} {_ms(t_zoom):>9} {t_row[0] * 1e3:6.1f} "
                  f"{t_cell[0] * 1e3:7.1f}  {load}", flush=True)
            del q, k, pm

    if args.memory:
        if not Path("/proc/self/clear_refs").exists():
            print("--memory needs Linux /proc/self/clear_refs; skipped")
            return
        T = max(args.seq_lens)
        print(f"\npeak RSS growth at T={T}, CPU, one torch thread (fresh process per line):")
        for H in args.heads:
            for path, label in (("pooled", "pooled maps + one row"), ("full", "full map + numpy pooling")):
                if path == "full" and H * T * T * 4 > args.full_max_gb * 2**30:
                    continue
                base, peak = peak_rss(H, T, path, causal=causal)
                print(f"  H={H:>2} {label:<26} +{(peak - base) / 2**20:7.0f} MiB (RSS before "
                      f"{base / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB)", flush=True)


if __name__ == "__main__":
    main()
