"""Long texts in the served "Model heads" tab (issue 12): a tiny Hugging Face Llama allowing 4096
positions, given to the server with ``--hf``, reads a 2048-token text; its main map is max-pooled, a
wheel zoom into its top-left corner brings a finer image of that window (exact weights once it fits
512 px), and hover names the exact weight of the cell under the cursor, computed by the server."""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

from _harness import (AppServer, figure_frame_point, figure_images, figure_ranges, figure_title, open_app, serving,
                      shown_tooltip, wait_for)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attention"))
import _hf_tiny  # noqa: E402  (tests/attention/_hf_tiny.py: tiny random-init models, saved locally)

pytestmark = pytest.mark.browser

WORDS = 2047                                  # + "<s>": T = 2048
TEXT = " ".join(_hf_tiny.WORDS[(7 * i) % 60] for i in range(WORDS))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return _hf_tiny.save("llama", tmp_path_factory.mktemp("browser-long") / "tiny-llama-4k", positions=4096)


@pytest.fixture(scope="module")
def app_server(llama):
    yield from serving(AppServer(extra_args=["--args", "--hf", str(llama)]))


def images(page):
    """``[pooled map, refined window]``: per image of the main map's image glyphs, its size in
    pixels and in positions."""
    return figure_images(page, ".ap-th-main")


def test_a_wheel_zoom_sharpens_the_pooled_main_map_and_hover_names_the_exact_weight(context, app_server, llama):
    page = context.new_page()
    watch = open_app(page, app_server.url, timeout=240_000)
    page.locator(".ap-tabs .bk-tab", has_text="Model heads").first.click()
    page.locator(".ap-th-main").first.wait_for(state="visible", timeout=60_000)
    page.locator(".ap-th-model .bk-btn", has_text="tiny-llama-4k").first.click()
    wait_for(page, lambda: figure_title(page, ".ap-th-overview").startswith("2 layers × 4 heads = 8 maps"),
             timeout=240, what="the tiny Llama's overview")
    box = page.locator(".ap-th-text input").first
    box.fill(TEXT)
    box.press("Enter")
    wait_for(page, lambda: "max-pooled 4×4" in figure_title(page, ".ap-th-main"), timeout=120,
             what="the main map pooled at T=2048")
    assert figure_title(page, ".ap-th-overview") == "2 layers × 4 heads = 8 maps · max-pooled 16×16"
    pooled, refined = images(page)
    assert (pooled[0]["cols"], pooled[0]["dw"]) == (512, 2048) and refined == [], (pooled, refined)

    # wheel-zoom with the pointer near the top-left corner until the window is exact
    px, py = figure_frame_point(page, ".ap-th-main", 40, 300)
    page.mouse.move(px, py)
    for _ in range(60):
        if "zoom: exact weights" in figure_title(page, ".ap-th-main"):
            break
        page.mouse.wheel(0, -200)
        page.wait_for_timeout(150)
    wait_for(page, lambda: "zoom: exact weights" in figure_title(page, ".ap-th-main"), timeout=30,
             what="the zoomed window at full resolution")
    wait_for(page, lambda: images(page)[1], timeout=30, what="the refined image")
    _, refined = images(page)
    assert len(refined) == 1
    assert refined[0]["dw"] == refined[0]["cols"] and refined[0]["dh"] == refined[0]["rows"]  # 1 px = 1 weight
    assert refined[0]["cols"] <= 512
    x0, x1, y0, y1 = figure_ranges(page, ".ap-th-main")
    ya, yb = sorted((y0, y1))
    assert -0.5 <= x0 < x1 < 1024 and yb < 1024, (x0, x1, y0, y1)

    # hover: the server computes the weight of the cell under the cursor (lower-left of the window:
    # keys before their query); the reference is the same model's own output_attentions on the
    # first query + 1 tokens (causal: the same row)
    tx, ty = x0 + 0.15 * (x1 - x0), yb - 0.15 * (yb - ya)
    seen: list[str] = []

    def exact_in_tooltip():
        x, y = figure_frame_point(page, ".ap-th-main", tx, ty)
        page.mouse.move(x + 0.3, y)
        page.wait_for_timeout(150)
        page.mouse.move(x, y + 0.3)
        seen.append(shown_tooltip(page))
        m = re.search(r"query:?\s*(\d+).*key:?\s*(\d+).*weight \(exact\):?\s*([0-9.eE+-]+)", seen[-1])
        return m and (int(m.group(1)), int(m.group(2)), float(m.group(3)))

    try:
        query, key, shown = wait_for(page, exact_in_tooltip, timeout=30, what="the exact weight in the tooltip")
    except AssertionError as e:
        raise AssertionError(f"{e}; tooltips seen: {seen[-3:]}") from None
    from attention.hf import load_pretrained, trace_attention

    layer_head = re.search(r"Layer (\d+) · head (\d+)", figure_title(page, ".ap-th-main"))
    assert layer_head, figure_title(page, ".ap-th-main")
    layer, head = map(int, layer_head.groups())
    model, tok = load_pretrained(str(llama))
    ids = tok(TEXT)["input_ids"][:query + 1]
    want = float(trace_attention(model, tok, ids, max_tokens=4096).weights[layer][head, query, key])
    assert shown == pytest.approx(want, abs=2e-6), seen[-1]
    assert math.floor(x0) <= key <= math.ceil(x1) and math.floor(ya) <= query <= math.ceil(yb)
    assert watch.errors() == [], watch.errors()
    app_server.check_log()
