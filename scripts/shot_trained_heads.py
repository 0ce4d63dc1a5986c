"""Screenshot of the "Trained heads" tab for the README: ``docs/trained-heads.png``.

    python scripts/shot_trained_heads.py                    # writes docs/trained-heads.png
    python scripts/shot_trained_heads.py --out /tmp/shots   # somewhere else

Serves ``dashboard/app.py`` like the browser tests (``tests/browser/_harness.py``), opens the tab,
selects the flagged induction head (the default) and crops to the tab. Nothing is written when the
page logs a console error or the server log shows an exception.

To fold it into ``scripts/make_screenshots.py``, one entry does the same::

    Shot("trained-heads.png", ".ap-trained-heads", trained_heads_ready, tab="Trained heads",
         viewport=VIEWPORT)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from _harness import AppServer, launch_chromium, open_app, wait_for  # noqa: E402

NAME = "trained-heads.png"
SELECTOR = ".ap-trained-heads"
TAB = "Trained heads"
VIEWPORT = (1400, 1700)
MAX_BYTES = 400_000


def open_tab(page, title: str = TAB) -> None:
    """Click the app tab named ``title``."""
    page.locator(".ap-tabs .bk-tab", has_text=title).first.click()


def trained_heads_ready(page) -> None:
    """Wait until the tab shows its 8 overview maps, the main map and the metrics table, with the
    induction head selected (the default)."""
    page.locator(".ap-th-main").first.wait_for(state="visible", timeout=60_000)
    wait_for(page, lambda: page.locator(".ap-th-cell").count() == 8, what="8 overview maps")
    badge = page.locator(".ap-th-metrics .ap-th-best[data-role=induction]")
    badge.first.wait_for(state="attached", timeout=30_000)
    if page.locator(".ap-th-cell.ap-th-selected").count() != 1:
        raise RuntimeError("expected exactly one selected overview map")


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
                           f"(limit {max_bytes})")


def take(browser, server: AppServer, out: Path) -> Path:
    """Open a fresh session, bring up the tab and write the PNG; return its path."""
    w, h = VIEWPORT
    ctx = browser.new_context(viewport={"width": w, "height": h}, device_scale_factor=1)
    try:
        page = ctx.new_page()
        watch = open_app(page, server.url)
        open_tab(page)
        trained_heads_ready(page)
        target = page.locator(SELECTOR).first
        page.wait_for_timeout(700)                  # let the canvases finish painting
        if watch.errors():
            raise RuntimeError(f"{NAME}: console errors: {watch.errors()}")
        server.check_log()
        out.mkdir(parents=True, exist_ok=True)
        path = out / NAME
        target.screenshot(path=str(path), animations="disabled")
        shrink_png(path)
        return path
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder (default: docs/)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with AppServer() as server, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            path = take(browser, server, args.out)
        finally:
            browser.close()
    print(f"wrote {path} ({path.stat().st_size // 1000} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
