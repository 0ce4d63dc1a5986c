"""Long contexts in the Playground (issue 12): T up to 4096 on the CPU without holding any full
(H, T, T) map, pooled maps that equal numpy pooling of the full map, zoom windows that equal its
slices, exact query rows and hover weights, the memory bound, and the pooled export."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import panel as pn
import pytest
import torch
from bokeh.events import MouseMove, RangesUpdate

from attention import make_causal_mask
from dashboard.common.frames import pooled
from dashboard.playground import AttentionPlayground, PlaygroundView, export, plots, state
from harness import rendered

ROOT = Path(__file__).resolve().parents[3]


def full_weights(pg) -> np.ndarray:
    """The reference: every full map, from the model's explicit path (float32, (H, T, T))."""
    r = pg.result
    mask = make_causal_mask(r.seq_len, dtype=torch.bool) if r.causal else None
    with torch.no_grad():
        return pg.model(r.x, mask=mask)[1].numpy()


@pytest.fixture
def small_long(monkeypatch):
    """The long-context path at a small T: no full weights held and a mosaic pooled by 4 (T=50)."""
    monkeypatch.setattr(state, "FULL_WEIGHTS_CELLS", 0)
    monkeypatch.setattr(state, "POOLED_MAP_PIXELS", 3 * 16 * 16)      # 16 px a side for 3 heads
    return monkeypatch


def heads_images(fig) -> list[np.ndarray]:
    return [np.asarray(a) for a in fig.renderers[0].data_source.data["image"]]


def refined_source(fig):
    return fig.renderers[1].data_source.data


def zoom(fig, x0, x1, y0, y1):
    fig._trigger_event(RangesUpdate(fig, x0=x0, x1=x1, y0=y0, y1=y1))


# -- pooled maps ---------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
def test_the_view_shows_the_full_maps_max_pooled_as_numpy_pools_them(small_long, causal):
    pg = AttentionPlayground(seq_len=50, num_heads=3, causal=causal)
    assert pg.result.weights is None and pg.result.mask is None     # the long path at T=50
    g = plots.HeadGrid.of(50, 3)
    assert g.f == 4
    W = full_weights(pg)
    with rendered(pn.panel(pg)) as page:
        fig = only_heads(page)
        assert "max of 4×4" in fig.title.text
        for h, img in enumerate(heads_images(fig)):
            assert img.shape == (13, 13)
            np.testing.assert_allclose(img, pooled(W[h], 4), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pg.result.max_future_weight, np.triu(W, 1).max(), atol=1e-7)


def only_heads(page):
    from harness import only_model_with_class
    return only_model_with_class(page.doc, "ap-heads-map")


def test_above_the_limit_no_full_map_is_held_and_every_view_still_works():
    pg = AttentionPlayground(seq_len=4096, num_heads=8, query=4000, prefix=2000)
    r = pg.result
    assert r.weights is None and r.mask is None and r.long
    assert r.maps.maps.shape == (8, 158, 158) and r.maps.factor == 26      # 160 px a map
    view = PlaygroundView(pg)
    with rendered(view.layout) as page:
        assert "max of 26×26" in only_heads(page).title.text
        assert 'data-verdict="PASS"' in view.verdict.object and r.invariance.max_diff == 0.0
        mask = view.mask_plot.frame.layers[0].array
        assert mask.shape[0] < 4096 and mask[0, -1] == 0 and mask[-1, 0] == 1   # pooled, causal
        np.testing.assert_array_equal(np.asarray(view.query_plot.figure.renderers[0]
                                                 .data_source.data["image"][0]), r.row(4000).numpy())
        pg.param.update(view_head=5, query=4095)                # the step-by-step view: one row
        steps = pg.single_token()
        torch.testing.assert_close(steps.weights, r.row(4095)[5], rtol=1e-5, atol=1e-7)
        pg.prefix = 4000
        inv = view.invariance_plot.frame
        assert inv.layers[1].values.shape == (512,) and "each bar the max of 8" in inv.title
        d = pg.result.invariance.position_diff.numpy().astype(np.float32)
        changed = np.where(np.arange(4096) > 4000, d, 0).reshape(-1, 8).max(1)   # bars of 8 positions
        np.testing.assert_array_equal(inv.layers[2].values, changed)
        orange = view.invariance_plot.leaves[2].handles["source"].data       # as drawn: 8 wide
        assert len(orange["top"]) == 512 and orange["right"][0] - orange["left"][0] == 8
        pg.causal = False
        assert 'data-verdict="FAIL"' in view.verdict.object
        assert view.mask_plot.figure.title.text.startswith("No mask")


def test_the_selected_query_row_is_exact_at_any_length_and_costs_no_recompute():
    pg = AttentionPlayground(seq_len=3000, num_heads=2, head_dim=8, query=10)
    maps, n = pg.result.maps, pg.n_computes
    with rendered(pn.panel(pg)):
        pg.query = 2999
        assert pg.n_computes == n and pg.result.maps is maps          # a row, not the maps again
    r = pg.result
    q, k = r.q.double(), r.k.double()
    for i in (0, 1234, 2999):
        scores = torch.einsum("hd,htd->ht", q[:, i], k) / math.sqrt(8)          # (H, T), float64
        scores[:, i + 1:] = float("-inf")
        torch.testing.assert_close(r.row(i).double(), torch.softmax(scores, -1), rtol=1e-5, atol=1e-7)


# -- zoom ----------------------------------------------------------------------------------------
def test_a_zoom_shows_the_exact_slice_of_the_full_map_and_reset_goes_back(small_long):
    pg = AttentionPlayground(seq_len=50, num_heads=3)
    W = full_weights(pg)
    view = PlaygroundView(pg)
    with rendered(view.layout) as page:
        fig = view.heads_plot.figure
        g = plots.HeadGrid.of(50, 3)
        ox, oy = g.origin(1)
        overview = heads_images(fig)
        page.clear()
        zoom(fig, ox + 4.5, ox + 25.5, oy + 30.5, oy + 9.5)        # keys 5..25, queries 10..30
        assert view.refined.heads == (1,) and view.refined.factors == (1,)
        data = refined_source(fig)
        np.testing.assert_allclose(np.asarray(data["image"][0]), W[1, 10:31, 5:26], rtol=1e-5, atol=1e-7)
        assert (data["x"][0], data["y"][0]) == (ox + 4.5, oy + 9.5)
        assert "zoom: exact weights" in fig.title.text
        assert all(a is b for a, b in zip(heads_images(fig), overview))   # the overview is not resent
        (x0, x1), (y0, y1) = g.limits()
        zoom(fig, x0, x1, y1, y0)                                  # reset: back to the initial ranges
        assert len(refined_source(fig)["image"]) == 0 and "zoom" not in fig.title.text


def test_a_zoom_too_wide_for_the_budget_is_pooled_from_exact_rows(small_long):
    pg = AttentionPlayground(seq_len=50, num_heads=3)
    W = full_weights(pg)
    ref = plots.refine_zoom(pg.result, (-0.5, 39.5, 39.5, -0.5), pixels=400)   # head 0, 40 x 40
    assert ref.heads == (0,) and ref.factors == (2,)                            # 20 px a side
    np.testing.assert_allclose(ref.layer.arrays[0], pooled(W[0, :40, :40], 2), rtol=1e-5, atol=1e-7)
    same = plots.refine_zoom(pg.result, (-0.5, 39.5, 39.5, -0.5), pixels=100)  # 10 px: 4x4 again
    assert same.heads == () and same.finest is None
    wide = plots.refine_zoom(pg.result, (-0.5, 200.5, 60.5, -0.5), pixels=100)  # 3 maps, 5 px each
    assert wide.heads == () and wide.layer.arrays == ()         # no finer than the overview: kept
    with pytest.raises(ValueError, match="pixels"):
        plots.refine_zoom(pg.result, None, pixels=0)


def test_a_zoom_spanning_two_maps_refines_both_and_survives_a_query_change(small_long):
    pg = AttentionPlayground(seq_len=50, num_heads=3)
    W = full_weights(pg)
    view = PlaygroundView(pg)
    with rendered(view.layout):
        fig = view.heads_plot.figure
        g = plots.HeadGrid.of(50, 3)
        x1 = g.origin(1)[0] + 9.5                                   # head 0's keys 40.. and head 1's ..9
        zoom(fig, 39.5, x1, 19.5, -0.5)
        assert view.refined.heads == (0, 1)
        imgs = refined_source(fig)["image"]
        np.testing.assert_allclose(np.asarray(imgs[0]), W[0, :20, 40:50], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(imgs[1]), W[1, :20, :10], rtol=1e-5, atol=1e-7)
        fig.x_range.update(start=39.5, end=x1)                     # as the browser syncs a zoom
        pg.query = 3
        assert (fig.x_range.start, fig.x_range.end) == (39.5, x1)  # a query change keeps the zoom
        assert len(refined_source(fig)["image"]) == 2
        pg.seed = 4                                                # new maps: the zoom is recomputed
        np.testing.assert_allclose(np.asarray(refined_source(fig)["image"][1]),
                                   full_weights(pg)[1, :20, :10], rtol=1e-5, atol=1e-7)


def test_hover_names_the_exact_weight_of_the_cell_not_the_pooled_pixel(small_long):
    pg = AttentionPlayground(seq_len=50, num_heads=3)
    W = full_weights(pg)
    view = PlaygroundView(pg)
    with rendered(view.layout):
        fig = view.heads_plot.figure
        g = plots.HeadGrid.of(50, 3)
        ox, oy = g.origin(2)
        fig._trigger_event(MouseMove(fig, x=ox + 17.2, y=oy + 41.8))     # head 2, query 42, key 17
        data = view.exact_source.data
        assert (data["x"], data["y"]) == ([ox + 17], [oy + 42])
        assert float(data["text"][0]) == pytest.approx(W[2, 42, 17], abs=1e-6)
        assert float(data["text"][0]) != pytest.approx(heads_images(fig)[2][10, 4], abs=1e-6)
        tips = dict(next(t for t in fig.tools if type(t).__name__ == "HoverTool").tooltips)
        assert tips["weight (exact)"] == "$sx{exact}" and "max of 4×4" in tips
        assert pg.result.weight(2, 42, 17) == pytest.approx(W[2, 42, 17], abs=1e-6)
        with pytest.raises(ValueError, match="key"):
            pg.result.weight(0, 1, 50)


def test_the_mosaic_window_of_each_map_is_clipped_to_it():
    g = plots.HeadGrid(T=100, H=6, f=2)
    ox, _ = g.origin(1)
    assert g.visible(-0.5, 9.5, 19.5, 10.5) == [(0, (11, 20), (0, 10))]
    both = g.visible(90.5, ox + 4.5, -0.5, 4.5)
    assert [h for h, _, _ in both] == [0, 1] and both[1][2] == (0, 5) and both[0][2] == (91, 100)
    assert g.visible(-0.5, g.width - 0.5, g.height - 0.5, -0.5)[5] == (5, (0, 100), (0, 100))
    with pytest.raises(ValueError, match="finite"):
        g.visible(0, float("nan"), 0, 1)


# -- limits, device ------------------------------------------------------------------------------
def test_the_length_limit_follows_the_device():
    pg = AttentionPlayground(seq_len=8, device="cpu")
    assert pg.seq_len_limit == state.MAX_SEQ_LEN == 4096 and pg.param.seq_len.bounds == (1, 4096)
    with pytest.raises(ValueError, match="seq_len in 1..4096"):
        pg.seq_len = 4097
    assert pg.seq_len == 8
    with pytest.raises(ValueError, match="seq_len"):
        AttentionPlayground(seq_len=5000, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            pg.device = "cuda"
        assert pg.device == "cpu" and pg.result.device == "cpu"
        with pytest.raises(ValueError, match="CUDA"):
            AttentionPlayground(device="cuda")
    assert state.max_seq_len("cpu") == 4096


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_maps_are_computed_there_and_match_the_cpu():
    a = AttentionPlayground(seq_len=8192, num_heads=4, device="cuda")
    assert a.result.device.startswith("cuda") and a.seq_len_limit == 16384
    b = AttentionPlayground(seq_len=2048, num_heads=4, device="cpu")
    c = AttentionPlayground(seq_len=2048, num_heads=4, device="cuda")
    torch.testing.assert_close(b.result.maps.maps, c.result.maps.maps, rtol=1e-4, atol=1e-6)


# -- memory --------------------------------------------------------------------------------------
MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import torch
    sys.path.insert(0, "tests/dashboard")
    from harness import rendered
    from dashboard.playground import AttentionPlayground, PlaygroundView
    torch.set_num_threads(1)
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096
    with rendered(PlaygroundView(AttentionPlayground(seq_len=64, num_heads=4)).layout):
        pass                                   # imports, first drawing: what every session shares
    base = rss()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    pg = AttentionPlayground(seq_len=4096, num_heads=16)
    view = PlaygroundView(pg)
    with rendered(view.layout):
        pg.seed = 1
        pg.query = 4000
        held = rss()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(held=held - base, peak=peak - max(base, peak0))))
""")


def test_a_session_at_4096_tokens_and_16_heads_stays_under_400_mb():
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ,
                                                       "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    assert mem["held"] <= 400 * 2**20, mem        # one full map set alone would be 1 GiB
    assert mem["peak"] <= 400 * 2**20, mem


# -- export --------------------------------------------------------------------------------------
def test_above_the_limit_the_export_is_pooled_and_says_so(tmp_path, capsys):
    params = dict(seq_len=1100, num_heads=4, query=1000)
    assert not export.fits_full_export(params)
    with pytest.raises(ValueError, match="pooled"):
        export.build_document(params)
    out = tmp_path / "pooled.html"
    assert export.main([str(out), "--seq-len", "1100", "--num-heads", "4", "--pooled"]) == 0
    assert "pooled" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert "Pooled export" in page and "data-pooled-factor" in page and "ap-pooled-map" in page
    assert len(page.encode("utf-8")) < 6_000_000
    pg = AttentionPlayground(**params)
    view = PlaygroundView(pg)
    assert "Pooled export" in view._download_html().getvalue().decode("utf-8")
    small = PlaygroundView(AttentionPlayground(seq_len=8, num_heads=2))
    assert "Pooled export" not in small._download_html().getvalue().decode("utf-8")


def test_the_text_box_takes_a_text_of_the_longest_length():
    """Panel's TextInput keeps 5000 characters by default: the browser would cut a 4096-word text at
    about 1000 words, silently."""
    text = " ".join(f"word{i}" for i in range(state.MAX_SEQ_LEN))
    view = PlaygroundView(AttentionPlayground())
    (box,) = [w for w in view.layout.select(pn.widgets.TextInput) if "ap-text" in w.css_classes]
    assert box.max_length >= len(text)
