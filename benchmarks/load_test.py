"""Load test: N concurrent browser sessions against one served app, each changing controls at a
human pace, with latency, consistency, server errors and server memory reported (issue 9).

One headless chromium (Debian's), N contexts (separate visitors), one page each, against one
``panel serve dashboard/app.py --num-threads 2`` on localhost. Each session opens the app, then
until ``--duration`` is over: picks a control (seed, causal, heads +-1, query +-1), changes it,
waits for the page's answer (``tests/browser/_probe.py``: the state-id contract when the page has
it, else 400 ms without document changes), checks that the page is consistent, and pauses
1-2 s. Inputs are timed on the page's own clock.

Reported: how long the sessions took to open, p50/p95/max input -> painted, answers that never came,
mismatches (state mode: figures / state id / controls disagree; quiet mode: head-map count, query
plot title or verdict not what the controls say), page errors, server exceptions (from its log)
and the server's RSS over time (psutil, every 5 s).

Usage: ``python benchmarks/load_test.py [--sessions 20] [--duration 60] [--seed 0]``.
Bounded: at most 50 sessions and 600 s of changes each (counted from when its page rendered);
only http://localhost is visited.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

import psutil  # noqa: E402

import _probe  # noqa: E402
from _harness import CHROMIUM, CHROMIUM_ARGS, AppServer  # noqa: E402

MAX_SESSIONS, MAX_DURATION = 50, 600
VIEWPORT = {"width": 1400, "height": 1000}
CONTROLS = ["seed", "causal", "heads", "query"]


def pct(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class Stats:
    def __init__(self):
        self.latency: list[float] = []
        self.no_answer: list[str] = []
        self.mismatches: list[str] = []
        self.page_errors: list[str] = []
        self.failed_requests: list[str] = []       # url (failure): what a page error was about
        self.open_s: list[float] = []
        self.open_failed: list[str] = []
        self.changes = 0


async def act(page, control: str, rng: random.Random, seed_box: list[int]) -> str | None:
    """Make one change; return the name of the quiet-mode 'done' predicate for it."""
    if control == "seed":
        box = page.locator(".ap-seed input").first
        seed_box[0] = rng.randrange(0, 1000)
        await box.focus()
        await box.press("Control+a")
        await box.type(str(seed_box[0]))
        await page.evaluate("() => window.__ap.arm()")
        await box.press("Enter")
        return "data"
    if control == "causal":
        await page.evaluate("() => window.__ap.arm()")
        await page.locator(".ap-causal input[type=checkbox]").click()
        return "causal"
    css = ".ap-num-heads" if control == "heads" else ".ap-query"
    c = await page.evaluate("() => window.__ap.controls()")
    value, lo, hi = (c["H"], 1, 16) if control == "heads" else (c["q"], 0, c["T"] - 1)
    key = "ArrowRight" if (value <= lo or (value < hi and rng.random() < 0.5)) else "ArrowLeft"
    handle = page.locator(f"{css} .noUi-handle").first
    await handle.focus()
    await page.evaluate("() => window.__ap.arm()")
    await handle.press(key)
    return "heads" if control == "heads" else "query"


async def user_view_problems(page) -> list[str]:
    ok = await page.evaluate("() => [window.__ap.done.heads(), window.__ap.done.query(), "
                             "window.__ap.done.causal()]")
    names = ["head-map count != heads control", "query plot title != query control",
             "verdict != causal control"]
    return [n for n, good in zip(names, ok) if not good]


async def session(i: int, browser, url: str, duration: float, mode: str, stats: Stats) -> None:
    rng = random.Random(i)
    ctx = await browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(120_000)
    await ctx.add_init_script(_probe.WS_INIT_JS)
    page = await ctx.new_page()
    page.on("pageerror", lambda e: stats.page_errors.append(f"s{i}: {e}"))
    page.on("console", lambda m: stats.page_errors.append(
        f"s{i}: {m.text} (at {m.location.get('url', '?')})") if m.type == "error" else None)
    page.on("requestfailed", lambda r: stats.failed_requests.append(f"s{i}: {r.url} ({r.failure})"))
    try:
        t0 = time.monotonic()
        await page.goto(url, timeout=180_000)
        await page.locator(".ap-heads-map").first.wait_for(state="visible", timeout=180_000)
        stats.open_s.append(time.monotonic() - t0)
        await page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
        await page.evaluate(_probe.PROBE_JS)
        if mode == "auto":
            mode = "state" if await page.evaluate("() => window.__ap.stateIds().length > 0") else "quiet"
        seed_box = [0]
        await asyncio.sleep(rng.uniform(0, 2))                     # stagger the sessions
        until = time.monotonic() + duration                        # counted from this page's open
        while time.monotonic() < until:
            control = rng.choice(CONTROLS)
            done = await act(page, control, rng, seed_box)
            stats.changes += 1
            res = await page.evaluate("([m, q, t, d]) => window.__ap.waitAnswer(m, q, t, d)",
                                      [mode, 400, 30_000, done])
            if "error" in res:
                stats.no_answer.append(f"s{i} {control}: {res['error']} {res.get('problems', '')}")
            else:
                stats.latency.append(res["tPainted"] - res["tInput"])
                if mode == "state":
                    chk = await page.evaluate("() => window.__ap.check()")
                    bad = chk["problems"]
                else:
                    bad = await user_view_problems(page)
                if bad:
                    stats.mismatches.append(f"s{i} after {control}: {'; '.join(bad[:3])}")
            await asyncio.sleep(rng.uniform(1.0, 2.0))
        if await page.evaluate("(q) => window.__ap.quietFor(q, 30000)", 500):
            bad = ((await page.evaluate("() => window.__ap.check()"))["problems"] if mode == "state"
                   else await user_view_problems(page))
            if bad:
                stats.mismatches.append(f"s{i} at the end: {'; '.join(bad[:3])}")
    except Exception as exc:                                          # noqa: BLE001
        stats.open_failed.append(f"s{i}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        await ctx.close()


async def sample_rss(pid: int, out: list, t0: float, stop: asyncio.Event) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            out.append((time.monotonic() - t0, proc.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            return
        try:
            await asyncio.wait_for(stop.wait(), 5.0)
        except asyncio.TimeoutError:
            pass


async def run(args, server: AppServer) -> Stats:
    from playwright.async_api import async_playwright

    stats = Stats()
    rss: list[tuple[float, float]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        t0 = time.monotonic()
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(server.proc.pid, rss, t0, stop))
        await asyncio.gather(*[session(i + args.seed * 1000, browser, server.url, args.duration,
                                       args.mode, stats)
                               for i in range(args.sessions)])
        await asyncio.sleep(3)                                      # sessions closing
        stop.set()
        await sampler
        await browser.close()
    stats.rss = rss
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of changes per session")
    ap.add_argument("--mode", choices=["auto", "state", "quiet"], default="auto")
    ap.add_argument("--seed", type=int, default=0, help="seeds each session's choice of controls")
    ap.add_argument("--serve-args", default="", help="more `panel serve` options, one string")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # stop the server on kill, too
    if not 1 <= args.sessions <= MAX_SESSIONS or not 0 < args.duration <= MAX_DURATION:
        ap.error(f"--sessions in 1..{MAX_SESSIONS}, --duration in (0, {MAX_DURATION}]")

    print(f"load_test: {args.sessions} sessions x {args.duration:.0f} s; {load()} ({os.cpu_count()} CPUs)",
          flush=True)
    server = AppServer(extra_args=args.serve_args.split())  # the test harness's server: http://localhost:<free port>
    server.start()
    t_start = time.monotonic()
    try:
        print(f"server: {' '.join(server.command)} (pid {server.proc.pid}); "
              f"RSS before any session {psutil.Process(server.proc.pid).memory_info().rss / 2**20:.0f} MB",
              flush=True)
        stats = asyncio.run(run(args, server))
    finally:
        server.stop()
        log = server.log()
        server.remove_log()
    exc = _probe.server_exceptions(log)
    lat = stats.latency
    print(f"\nsessions opened: {len(stats.open_s)}/{args.sessions}; open time median "
          f"{statistics.median(stats.open_s) if stats.open_s else float('nan'):.1f} s, max "
          f"{max(stats.open_s) if stats.open_s else float('nan'):.1f} s")
    for line in stats.open_failed[:5]:
        print(f"  session failed: {line}")
    print(f"changes: {stats.changes}; answered {len(lat)}; input -> painted p50 {pct(lat, 50):.0f} ms, "
          f"p95 {pct(lat, 95):.0f} ms, max {max(lat) if lat else float('nan'):.0f} ms")
    print(f"no answer within 30 s: {len(stats.no_answer)}")
    for line in stats.no_answer[:5]:
        print(f"  {line}")
    print(f"mismatches: {len(stats.mismatches)}")
    for line in stats.mismatches[:8]:
        print(f"  {line}")
    print(f"page errors: {len(stats.page_errors)}")
    for line in stats.page_errors[:5]:
        print(f"  {line[:200]}")
    print(f"failed requests: {len(stats.failed_requests)}")
    for line in list(dict.fromkeys(r.split(": ", 1)[1] for r in stats.failed_requests))[:8]:
        print(f"  {line[:200]} (x{sum(r.endswith(line) for r in stats.failed_requests)})")
    print(f"server exceptions: {len(exc)}")
    for line in list(dict.fromkeys(exc))[:5]:
        print(f"  {line[:200]} (x{exc.count(line)})")
    if stats.rss:
        step = max(1, len(stats.rss) // 12)
        series = ", ".join(f"{t:.0f}s {m:.0f}" for t, m in stats.rss[::step])
        print(f"server RSS MB over time: {series}; peak {max(m for _, m in stats.rss):.0f}, "
              f"last {stats.rss[-1][1]:.0f}")
    print(f"total {time.monotonic() - t_start:.0f} s; {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
