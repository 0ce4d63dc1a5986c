"""Server-side latency and bytes of the "Model heads" tab on all-MiniLM-L6-v2 (6 layers x 12 heads).

Renders the tab's view into a Bokeh Document treated as a live session
(``tests/dashboard/harness.py``: ``rendered``), then times each change until it returns: by then the
model has run, every affected Bokeh model is updated and the held events have been dispatched as
the PATCH-DOC a browser would receive (its serialized size is the "sent" column).

Rows: the first pick of MiniLM in a process (transformers import + weights + head roles: once per
process), a text change at T ~ 128 (alternating two texts: each a new forward pass), a head click
(no forward pass), the layer mean on/off, and a text seen before (forward pass from the cache).

Usage: ``PYTHONPATH=. python benchmarks/bench_model_heads.py [--repeat 3]``. One torch thread, as
served. Target (issue 11): a text change at T=128 sends <= 6 MB.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from dashboard.heads import ModelHeads, ModelHeadsView

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dashboard"))
from harness import rendered  # noqa: E402


def texts(n_words: int) -> tuple[str, str]:
    words = "the cat sat on the mat because it was tired and the dog ran after a red ball".split()
    a = " ".join(words[i % len(words)] for i in range(n_words))
    b = " ".join(words[(i * 7 + 3) % len(words)] for i in range(n_words))
    return a, b


def timed(page, change) -> tuple[float, int]:
    page.clear()
    t0 = time.perf_counter()
    change()
    return time.perf_counter() - t0, page.patch_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    th = ModelHeads()
    view = ModelHeadsView(th)
    a, b = texts(126)
    rows = []
    with rendered(view.layout) as page:
        s, n = timed(page, lambda: th.param.update(model="minilm", text=a))
        rows.append(("first pick of MiniLM (load once per process)", s, n))
        T = th.result.seq_len
        runs = []
        for t in [b, a, b, a, b, a][:2 * args.repeat]:
            th._cache.clear()                        # every change runs the model (no cached pass)
            runs.append(timed(page, lambda t=t: setattr(th, "text", t)))
        rows.append((f"text change, T={T} (new forward pass)", statistics.median(r[0] for r in runs),
                     max(r[1] for r in runs)))
        heads = [timed(page, lambda h=h: th.param.update(layer=h % 6, head=h)) for h in range(1, 1 + 2 * args.repeat)]
        rows.append(("head click", statistics.median(r[0] for r in heads), max(r[1] for r in heads)))
        agg = [timed(page, lambda v=v: setattr(th, "aggregate", v)) for v in [True, False] * args.repeat]
        rows.append(("layer mean on/off", statistics.median(r[0] for r in agg), max(r[1] for r in agg)))
        th.text = b
        rows.append(("text seen before (cached forward pass)", *timed(page, lambda: setattr(th, "text", a))))
    print(f"{'change':48s} {'server s':>9s} {'sent MB':>8s}")
    for name, s, n in rows:
        print(f"{name:48s} {s:9.3f} {n / 1e6:8.2f}")


if __name__ == "__main__":
    main()
