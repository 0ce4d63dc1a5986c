"""Long texts in the "Model heads" tab (issue 12): the token limit follows the model, and above
``FULL_WEIGHTS_CELLS`` a result holds each layer's captured q, k and the pooled overview instead of
the (L, H, T, T) weights; pooled maps equal numpy max-pooling of the model's own
``output_attentions=True``, the selected query's row is exact at any T, and one T=4096 trace stays
within a memory bound. Models: tiny random-init Hugging Face models saved to a temp directory
(tests/attention/_hf_tiny.py; no network)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import dashboard.heads.state as heads_state
from bokeh.events import MouseMove, RangesUpdate

from attention.hf import trace_attention
from dashboard.heads import ModelHeads, ModelHeadsView, plots
from dashboard.heads.plots import Mosaic
from dashboard.heads.state import HeadsResult, cell_px
from harness import image_of, rendered
from harness import only_model_with_class as only

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "attention"))
import _hf_tiny  # noqa: E402  (tests/attention/_hf_tiny.py: tiny random-init models, saved locally)
from _reference import np_pool  # noqa: E402  (tests/attention/_reference.py)


def words(n: int, step: int = 7) -> str:
    """``n`` words of the tiny vocabulary (``n`` tokens, plus the tokenizer's specials)."""
    return " ".join(_hf_tiny.WORDS[(step * i) % 60] for i in range(n))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Tiny models with long position limits: a 2-layer Llama (GQA, RoPE) allowing 4096 positions,
    one allowing 8192, a BERT allowing 512, and a soft-capped Gemma2 (not capturable)."""
    root = tmp_path_factory.mktemp("long")
    return dict(llama=str(_hf_tiny.save("llama", root / "llama-4k", positions=4096)),
                llama8k=str(_hf_tiny.save("llama", root / "llama-8k", positions=8192)),
                bert=str(_hf_tiny.save("bert", root / "bert-512", positions=512)),
                gemma2=str(_hf_tiny.save("gemma2", root / "gemma2-4k", positions=4096)))


def full_maps(path: str, ids) -> np.ndarray:
    """The reference: the model's own ``output_attentions=True`` weights, ``(L, H, T, T)``."""
    model, tok = heads_state.hf_model(path)
    return trace_attention(model, tok, list(ids), max_tokens=len(ids)).stacked().numpy()



@pytest.fixture
def long_at_small_t(monkeypatch):
    """The long path at a small T: no full weights held, the main map pooled to 16 pixels a side."""
    monkeypatch.setattr(heads_state, "FULL_WEIGHTS_CELLS", 0)
    monkeypatch.setattr(heads_state, "MAIN_PIXELS", 16)
    return monkeypatch


# -- the limit -----------------------------------------------------------------------------------
def test_the_token_limit_follows_the_model_and_a_longer_text_is_cut_with_the_reason(served):
    th = ModelHeads(served=list(served.values()), model=f"hf:{served['bert']}", text=words(700))
    r = th.result
    assert (r.seq_len, r.token_limit, r.labels[0], r.labels[-1]) == (512, 512, "[CLS]", "[SEP]")
    assert th.input_error == "" and th.input_note == (
        "Your text is 702 tokens: the first 512 are shown (512 is the model's position limit: its config "
        "allows 512 positions).")
    th.model = f"hf:{served['llama8k']}"                 # 8192 positions: the CPU's 4096 applies
    th.text = words(5000)
    r = th.result
    assert (r.seq_len, r.token_limit) == (4096, 4096) and r.long
    assert th.input_note == ("Your text is 5001 tokens: the first 4096 are shown (4096 is the most shown on "
                             "the CPU (16384 on a GPU)).")
    view = ModelHeadsView(th)
    assert "data-note='cut'" in view.message.object and "Texts up to 4096 tokens are shown" in view.summary.object
    assert view.widgets["text"].max_length >= 100_000      # the browser's box takes a 16k-token text
    th.text = words(20)
    assert th.input_note == "" and th.result.seq_len == 21 and not th.result.long


def test_a_model_whose_attention_cannot_be_captured_keeps_the_256_token_cap_and_says_why(served):
    th = ModelHeads(served=[served["gemma2"]], model=f"hf:{served['gemma2']}", text=words(300))
    r = th.result
    assert th.model_error == "" and r.seq_len == 256 and r.token_limit == 256 and not r.long
    assert "the most shown for a model whose attention cannot be captured" in th.input_note
    assert "passes softcap to its attention" in th.input_note


# -- exactness -----------------------------------------------------------------------------------
def test_the_pooled_overview_and_main_map_equal_numpy_max_pooling_of_the_full_maps(served, long_at_small_t):
    th = ModelHeads(served=[served["llama"]], model=f"hf:{served['llama']}", text=words(99))
    r = th.result
    assert r.long and r.weights is None and r.seq_len == 100
    full = full_maps(served["llama"], r.tokens)                                  # (2, 4, 100, 100)
    m = Mosaic.of(r.num_layers, r.num_heads, r.seq_len, cell_px(r.num_heads))  # 128 px: f = 1 here
    np.testing.assert_allclose(r.pooled, np_pool(full, m.f), atol=2e-6)
    view = ModelHeadsView(th)
    with rendered(view.layout) as page:
        th.param.update(layer=1, head=3, query=60)
        main = only(page.doc, "ap-th-main")
        np.testing.assert_allclose(image_of(main), np_pool(full[1, 3], 7), atol=2e-6)   # 16 px: f = 7
        assert main.title.text.endswith("· max-pooled 7×7")
        th.aggregate = True
        np.testing.assert_allclose(image_of(main), np_pool(full[1].mean(axis=0), 7), atol=2e-6)
        assert "max-pooled 7×7" in main.title.text and "mean of its 4 heads" in main.title.text
        key = int(np.argmax(full[1, :, 60].mean(axis=0)))
        assert f"data-top-key='{key}'" in view.reading.object


def test_the_overview_at_a_pooled_factor_is_the_pooled_full_maps(served, monkeypatch):
    monkeypatch.setattr(heads_state, "FULL_WEIGHTS_CELLS", 0)
    th = ModelHeads(served=[served["bert"]], model=f"hf:{served['bert']}", text=words(298))
    r = th.result
    m = Mosaic.of(r.num_layers, r.num_heads, r.seq_len, cell_px(r.num_heads))
    assert r.long and r.seq_len == 300 and m.f == r.pool_factor == 3
    full = full_maps(served["bert"], r.tokens)
    np.testing.assert_allclose(r.pooled, np_pool(full, 3), atol=2e-6)
    view = ModelHeadsView(th)
    with rendered(view.layout) as page:
        overview = only(page.doc, "ap-th-overview")
        assert overview.title.text == "2 layers × 4 heads = 8 maps · max-pooled 3×3"
        for l, h in [(0, 0), (1, 3)]:
            np.testing.assert_allclose(m.cell(image_of(overview), l, h), np_pool(full[l, h], 3), atol=2e-6)


def test_the_selected_query_row_is_exact_at_4096_tokens(served):
    """A causal model's row i is the last row of the same model run on the first i + 1 tokens: the
    reference comes from ``output_attentions=True`` without holding a 4096 x 4096 map."""
    th = ModelHeads(served=[served["llama"]], model=f"hf:{served['llama']}", text=words(5000, step=11))
    r = th.result
    assert r.long and r.seq_len == 4096
    i = 1500
    ref = full_maps(served["llama"], r.tokens[:i + 1])[:, :, i]                    # (L, H, i + 1)
    for layer in range(2):
        row = r.row(layer, i)                                                      # (H, 4096)
        np.testing.assert_allclose(row[:, :i + 1], ref[layer], atol=2e-6)
        assert float(np.abs(row[:, i + 1:]).max()) == 0.0                          # causal: nothing later
    th.param.update(layer=1, head=2, query=i)
    np.testing.assert_allclose(th.selected_row()[:i + 1], ref[1, 2], atol=2e-6)
    assert r.weight(1, 2, i, 7) == pytest.approx(float(ref[1, 2, 7]), abs=2e-6)


# -- zoom and hover ------------------------------------------------------------------------------
def refined_source(fig):
    return fig.renderers[1].data_source.data


def test_a_zoom_shows_the_exact_slice_of_the_full_map_and_reset_goes_back(served, long_at_small_t):
    th = ModelHeads(served=[served["llama"]], model=f"hf:{served['llama']}", text=words(99))
    full = full_maps(served["llama"], th.result.tokens)
    view = ModelHeadsView(th)
    with rendered(view.layout) as page:
        th.param.update(layer=1, head=3, query=40)
        fig = view.main_plot.figure
        pooled = image_of(fig)
        n = th.n_forward
        page.clear()
        fig._trigger_event(RangesUpdate(fig, x0=4.5, x1=16.5, y0=31.5, y1=19.5))   # keys 5..16, queries 20..31
        data = refined_source(fig)
        np.testing.assert_allclose(np.asarray(data["image"][0]), full[1, 3, 20:32, 5:17], atol=2e-6)
        assert (data["x"][0], data["y"][0]) == (4.5, 19.5)
        assert fig.title.text.endswith("· max-pooled 7×7 · zoom: exact weights") and th.n_forward == n
        assert image_of(fig) is pooled                               # the pooled map is not resent
        fig._trigger_event(RangesUpdate(fig, x0=-0.5, x1=60.5, y0=60.5, y1=-0.5))  # 61 x 61: 4 x 4
        assert np.asarray(refined_source(fig)["image"][0]).shape == (16, 16)
        assert fig.title.text.endswith("zoom: max of 4×4")
        np.testing.assert_allclose(np.asarray(refined_source(fig)["image"][0]),
                                   np_pool(full[1, 3, :61, :61], 4), atol=2e-6)
        th.aggregate = True                                          # the layer's mean, same window
        np.testing.assert_allclose(np.asarray(refined_source(fig)["image"][0]),
                                   np_pool(full[1, :, :61, :61].mean(axis=0), 4), atol=2e-6)
        fig._trigger_event(RangesUpdate(fig, x0=-0.5, x1=99.5, y0=99.5, y1=-0.5))  # reset
        assert len(refined_source(fig)["image"]) == 0 and "zoom" not in fig.title.text


def test_hover_on_a_pooled_main_map_names_the_exact_weight_of_the_cell(served, long_at_small_t):
    th = ModelHeads(served=[served["llama"]], model=f"hf:{served['llama']}", text=words(99))
    full = full_maps(served["llama"], th.result.tokens)
    view = ModelHeadsView(th)
    with rendered(view.layout):
        th.param.update(layer=0, head=1)
        fig = view.main_plot.figure
        fig._trigger_event(MouseMove(fig, x=17.2, y=41.8))                         # query 42, key 17
        data = view.exact_source.data
        assert (data["x"], data["y"]) == ([17], [42])
        assert float(data["text"][0]) == pytest.approx(float(full[0, 1, 42, 17]), abs=1e-6)
        assert float(data["text"][0]) != pytest.approx(float(image_of(fig)[6, 2]), abs=1e-6)
        tips = dict(next(t for t in fig.tools if type(t).__name__ == "HoverTool").tooltips)
        assert tips["weight (exact)"] == "$sx{exact}" and "max of 7×7" in tips
        th.aggregate = True
        fig._trigger_event(MouseMove(fig, x=30, y=50))
        assert float(view.exact_source.data["text"][0]) == pytest.approx(float(full[0, :, 50, 30].mean()), abs=1e-6)


# -- the view at a long T ------------------------------------------------------------------------
def test_at_2048_tokens_the_view_shows_pooled_maps_and_a_head_change_runs_no_forward(served):
    th = ModelHeads(served=[served["llama"]], model=f"hf:{served['llama']}", text=words(2047))
    view = ModelHeadsView(th)
    with rendered(view.layout) as page:
        r = th.result
        assert r.long and r.seq_len == 2048 and r.pool_factor == 16
        overview, main = only(page.doc, "ap-th-overview"), only(page.doc, "ap-th-main")
        assert overview.title.text == "2 layers × 4 heads = 8 maps · max-pooled 16×16"
        assert image_of(overview).shape == (2 * 129 - 1, 4 * 129 - 1)
        assert main.title.text.endswith("· max-pooled 4×4") and image_of(main).shape == (512, 512)
        n = th.n_forward
        page.clear()
        t0 = time.perf_counter()
        th.param.update(layer=0, head=1, query=2000)
        seconds = time.perf_counter() - t0
        sent = page.patch_bytes()
        assert th.n_forward == n
        key = int(np.argmax(r.row(0, 2000)[1]))
        assert f"data-query='2000'" in view.reading.object and f"data-top-key='{key}'" in view.reading.object
        assert f"tokens=2048:" in view.shown_id
    print(f"T=2048 head + query change: {seconds * 1e3:.0f} ms, {sent / 1e6:.2f} MB sent")
    assert sent <= 3e6


def test_a_session_keeps_at_most_two_long_results_and_going_back_to_one_reruns_nothing(served, long_at_small_t):
    th = ModelHeads(served=[served["llama"]], model=f"hf:{served['llama']}", text=words(30))
    first = th.result
    for n in (31, 32, 33):
        th.text = words(n)
    long = [r for r in th._cache.values() if r.long]
    assert len(long) == 2 and first not in long
    n = th.n_forward
    th.text = words(32)
    assert th.n_forward == n and th.result.seq_len == 33


def test_bad_input_names_the_argument(served, long_at_small_t):
    th = ModelHeads(served=[served["llama"]], model=f"hf:{served['llama']}", text=words(30))
    r = th.result
    with pytest.raises(ValueError, match="expected layer in 0..1 but found layer=2"):
        r.row(2, 0)
    with pytest.raises(ValueError, match=r"expected query in 0..30 but found query=31"):
        r.row(0, 31)
    with pytest.raises(ValueError, match=r"expected head in 0..3 or None but found head=4"):
        r.head_map(0, 4)
    with pytest.raises(ValueError, match="use selected_map\\(\\) and selected_row\\(\\)"):
        th.selected_weights()
    with pytest.raises(ValueError, match=r"expected a \(4, 4\) map for 31 tokens pooled by factor=8"):
        plots.main_frame(np.zeros((5, 5)), r.labels, 0, 0, factor=8)
    with pytest.raises(ValueError, match="expected either weights"):
        HeadsResult(model="x", random_seed=None, tokens=(1,), weights=None, predictions=None, period=None)


# -- memory --------------------------------------------------------------------------------------
MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import torch
    sys.path.insert(0, "tests/attention")
    import _hf_tiny
    from dashboard.heads import ModelHeads
    torch.set_num_threads(1)
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096
    def hwm():                                 # peak RSS since the last reset (VmHWM, bytes)
        line = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        return int(line.split()[1]) * 1024
    path = sys.argv[1]
    th = ModelHeads(served=[path], model="hf:" + path, text="the cat sat")   # load, probe, imports
    text = " ".join(_hf_tiny.WORDS[(7 * i) % 60] for i in range(5000))
    if len(sys.argv) > 2:                      # the full path, for comparison (not in the test)
        import dashboard.heads.state as st; st.FULL_WEIGHTS_CELLS = 2**40
    base = rss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                           # resets VmHWM to the current RSS
    t0 = time.perf_counter()
    th.text = text
    seconds = time.perf_counter() - t0
    th.param.update(layer=1, head=2, query=4000)
    th.aggregate = True
    held = rss()
    peak = hwm()
    print(json.dumps(dict(T=th.result.seq_len, long=th.result.long, seconds=seconds, held=held - base,
                          peak=peak - base)))
""")


def test_one_4096_token_trace_stays_under_150_mb(served):
    """Held and peak RSS of a T=4096 trace of the 2-layer, 4-head model (its full weights alone would
    be 2 x 4 x 64 MiB = 512 MiB, and the eager kernel holds several such buffers)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, served["llama"]], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"T=4096 trace: {mem['seconds']:.2f} s, held +{mem['held'] / 2**20:.0f} MiB, "
          f"peak +{mem['peak'] / 2**20:.0f} MiB")
    assert mem["T"] == 4096 and mem["long"]
    assert mem["held"] <= 150 * 2**20, mem
    assert mem["peak"] <= 150 * 2**20, mem
