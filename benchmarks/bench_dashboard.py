"""Server-side latency of the dashboard: parameter change -> updated Bokeh models, and bytes sent.

Renders the playground once into a Bokeh Document treated as a live session
(``tests/dashboard/harness.py``: ``rendered``), then times ``pg.param.update(...)`` until it returns: by then
attention is recomputed and every affected Bokeh model is updated, and the held events have been
dispatched as the PATCH-DOC a browser would receive (its serialized size is the "sent" column).
Medians over ``--repeat`` changes that alternate between two values; "new heads" is the one-off
first growth of H by two (two figures drawn by HoloViews; later growth reuses them).

Usage: ``python benchmarks/bench_dashboard.py [--repeat 5] [--quick]``. Runs with one torch
thread, as the served app does (``dashboard/app.py``).

"attn runs" counts attention computations over all changes of a row (repeat + 1 warm-up): 0 for
the query / head / prefix rows proves they reuse the cached weights.

"zoom 256" / "zoom T/2" (pooled mosaics only): a box/wheel zoom into head 0 (a ``RangesUpdate``
event) showing its top-left 256 x 256 corner (exact weights) / its top-left quarter (pooled to the
zoom's pixel budget), until the refined window is in the figure: ``attention_window`` on the
visible rows, no attention map recomputed.

Targets: issue 3: T=16/H=4 <= 50 ms; T=256/H=8 <= 300 ms. Issue 12 (long contexts, CPU):
T=1024/H=16 <= 250 ms and <= 3 MB; T=4096/H=8 <= 2 s and <= 6 MB; a zoom refine <= 300 ms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import panel as pn
import torch
from bokeh.events import RangesUpdate

from dashboard.playground import AttentionPlayground, PlaygroundView, plots

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dashboard"))
from harness import rendered  # noqa: E402  (tests/dashboard/harness.py: a view rendered as if served)

CASES = [(16, 4, 0.050, None), (256, 8, 0.300, None), (1024, 16, 0.250, 3e6), (4096, 8, 2.0, 6e6)]
ZOOM_TARGET = 0.300
CHANGES = {           # name -> (param, two values to alternate)
    "causal": ("causal", (False, True)),
    "seed": ("seed", (1, 2)),
    "prefix L": ("prefix", (3, 9)),
    "query": ("query", (5, 10)),
    "view head": ("view_head", (1, 2)),
    "heads H": ("num_heads", None),       # H-2 <-> H: two figures hidden / shown again
}


def bench_case(T: int, H: int, repeat: int) -> list[tuple[str, float, int, int]]:
    pg = AttentionPlayground(seq_len=T, num_heads=H - 2)
    view = PlaygroundView(pg)
    rows = []
    with rendered(view.layout) as page:
        page.clear()                                      # once: H-2 -> H draws two new figures
        t0 = time.perf_counter()
        pg.num_heads = H
        rows.append(("new heads", time.perf_counter() - t0, page.patch_bytes(), 1))
        for label, (name, values) in CHANGES.items():
            values = values or (H - 2, H)
            times, sizes = [], []
            n0 = pg.n_computes
            for i in range(repeat + 1):                   # the first change warms up
                page.clear()
                t0 = time.perf_counter()
                pg.param.update(**{name: values[i % 2]})
                dt = time.perf_counter() - t0
                if i:
                    times.append(dt)
                    sizes.append(page.patch_bytes())
            rows.append((label, statistics.median(times), int(statistics.median(sizes)),
                         pg.n_computes - n0))
        if plots.HeadGrid.of_result(pg.result).f > 1:
            fig = view.heads_plot.figure
            for label, side in (("zoom 256", 256), ("zoom T/2", T // 2)):
                times, sizes, n0 = [], [], pg.n_computes
                for i in range(repeat + 1):               # two windows 8 rows apart, alternating
                    d = 8 * (i % 2)
                    page.clear()
                    t0 = time.perf_counter()
                    fig._trigger_event(RangesUpdate(fig, x0=-0.5, x1=side - 0.5, y0=side + d - 0.5,
                                                    y1=d - 0.5))
                    dt = time.perf_counter() - t0
                    assert view.refined.heads == (0,), view.refined
                    if i:
                        times.append(dt)
                        sizes.append(page.patch_bytes())
                rows.append((label, statistics.median(times), int(statistics.median(sizes)),
                             pg.n_computes - n0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed changes per row (median)")
    ap.add_argument("--quick", action="store_true", help="skip T=1024/H=16 and T=4096/H=8")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'T':>5} {'H':>3}  {'change':<10} {'median ms':>10} {'sent KB':>9} {'attn runs':>10}"
          f"  target")
    for T, H, target, max_bytes in CASES:
        if args.quick and T > 256:
            continue
        for label, seconds, size, n in bench_case(T, H, args.repeat):
            heavy = label in ("causal", "seed", "heads H")
            goal = ok = ""
            if heavy:
                goal = f"<= {target * 1000:.0f} ms" + (f" & {max_bytes / 1e6:.0f} MB" if max_bytes else "")
                ok = "  ok" if seconds <= target and size <= (max_bytes or 20e6) else "  MISSED"
            elif label.startswith("zoom"):
                goal = f"<= {ZOOM_TARGET * 1000:.0f} ms"
                ok = "  ok" if seconds <= ZOOM_TARGET else "  MISSED"
            if label == "new heads":
                goal = "(one-off: 2 figures drawn)"
            print(f"{T:>5} {H:>3}  {label:<10} {seconds * 1000:>10.1f} {size / 1e3:>9.1f} {n:>10}"
                  f"  {goal}{ok}")


if __name__ == "__main__":
    main()
