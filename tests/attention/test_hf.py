"""attention.hf on tiny random-init transformers models (GPT-2, Llama GQA, Mistral with a sliding
window, Qwen2, BERT) saved to temp dirs with a local tokenizer: loading, traces against
``output_attentions``, leak verdicts through ``embeddings_model``, and every error path.

Offline throughout: HF_HUB_OFFLINE=1 and any socket connection fails the test.
"""
from __future__ import annotations

import socket

import pytest
import torch

pytest.importorskip("transformers")

import _hf_tiny  # noqa: E402  (tests/attention on sys.path: pytest's rootdir-relative import)

from attention.hf import (  # noqa: E402
    AttentionTrace,
    ModelNotAvailable,
    embedding_inputs,
    embeddings_model,
    is_causal_model,
    load_pretrained,
    max_positions,
    trace_attention,
    verify_target,
)
from attention.masks import make_padding_mask, sliding_window  # noqa: E402
from attention.verify import check_output_invariance, dependency_map, find_leaks, invariance_sweep  # noqa: E402
from attention.zoo import parse_relation  # noqa: E402

CAUSAL = ["gpt2", "llama", "mistral", "qwen2"]
T = 8


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No hub, no network: HF_HUB_OFFLINE=1 (env and huggingface_hub's import-time constant) and
    socket connections raise."""
    import huggingface_hub.constants as hub

    def refuse(*args, **kwargs):
        raise RuntimeError(f"network access attempted in an offline test: {args[:2]}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub, "HF_HUB_OFFLINE", True)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        torch.set_num_threads(1)
        yield


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-hf")
    dirs = {kind: _hf_tiny.save(kind, root / kind) for kind in CAUSAL + ["bert"]}
    dirs["mistral-1layer-w3"] = _hf_tiny.save("mistral", root / "mistral1", layers=1, window=3)
    return dirs


@pytest.fixture(scope="module")
def loaded(model_dirs):
    return {kind: load_pretrained(path) for kind, path in model_dirs.items()}


def _ids(kind: str) -> torch.Tensor:
    return torch.tensor([[_hf_tiny.VOCAB[w] for w in ["<s>", "the", "cat", "sat", "on", "the", "mat", "a"]]])


# ------------------------------------------------------------------------------------------------
# load_pretrained
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CAUSAL + ["bert"])
def test_load_pretrained_gives_an_eager_eval_model_and_its_tokenizer(loaded, kind):
    model, tok = loaded[kind]
    assert not model.training
    assert model.config._attn_implementation == "eager"
    assert next(model.parameters()).dtype == torch.float32
    assert tok is not None and tok.convert_tokens_to_ids("cat") == _hf_tiny.VOCAB["cat"]
    assert is_causal_model(model) == (kind != "bert")
    assert max_positions(model) == _hf_tiny.POSITIONS


def test_load_pretrained_casts_dtype_and_accepts_sdpa(model_dirs):
    model, _ = load_pretrained(model_dirs["gpt2"], dtype=torch.float64, attn="sdpa")
    assert next(model.parameters()).dtype == torch.float64
    assert model.config._attn_implementation == "sdpa"


def test_a_directory_without_tokenizer_files_gives_tokenizer_none(model_dirs, tmp_path):
    model, _ = _hf_tiny.build("gpt2")
    model.save_pretrained(tmp_path)
    _, tok = load_pretrained(tmp_path)
    assert tok is None


def test_offline_hub_id_says_which_local_path_to_pass():
    with pytest.raises(ModelNotAvailable, match=r"'someone/tiny-gpt2'.*offline.*local directory.*"
                                                r"config\.json and model\.safetensors"):
        load_pretrained("someone/tiny-gpt2")


def test_missing_local_path_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist"):
        load_pretrained(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match=r"'\./no/such/model' does not exist"):
        load_pretrained("./no/such/model")


def test_directory_without_config_is_not_a_model(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"not a Hugging Face model directory: no config\.json"):
        load_pretrained(tmp_path)


def test_pickled_only_checkpoint_is_refused_naming_the_path(model_dirs, tmp_path):
    (tmp_path / "config.json").write_text((model_dirs["gpt2"] / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match=rf"{tmp_path}.*only pickled weights \(pytorch_model\.bin\).*"
                                         r"safetensors only"):
        load_pretrained(tmp_path)


def test_config_without_weights_is_refused(model_dirs, tmp_path):
    (tmp_path / "config.json").write_text((model_dirs["gpt2"] / "config.json").read_text())
    with pytest.raises(ValueError, match=r"no model weights: expected model\.safetensors"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"name_or_path": 3}, TypeError, r"name_or_path to be a str or os\.PathLike but found int"),
    ({"name_or_path": ""}, ValueError, r"empty string"),
    ({"name_or_path": "x", "dtype": torch.int64}, TypeError, r"floating torch\.dtype but found torch\.int64"),
    ({"name_or_path": "x", "attn": "flash"}, ValueError, r"attn to be 'eager' or 'sdpa' but found 'flash'"),
])
def test_bad_arguments_name_what_was_wanted(kwargs, exc, match):
    name = kwargs.pop("name_or_path")
    with pytest.raises(exc, match=match):
        load_pretrained(name, **kwargs)


# ------------------------------------------------------------------------------------------------
# trace_attention
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CAUSAL + ["bert"])
def test_trace_equals_output_attentions_exactly(loaded, kind):
    model, tok = loaded[kind]
    # qwen2's AutoTokenizer is forced to its own class, which does not read our toy vocabulary: ids
    source = _ids(kind) if kind == "qwen2" else "the cat sat on the mat"
    trace = trace_attention(model, tok, source)
    ids = torch.tensor([trace.token_ids])
    with torch.no_grad():
        ref = model(input_ids=ids, output_attentions=True).attentions
    assert trace.num_layers == len(ref) == 2 and trace.num_heads == _hf_tiny.HEADS
    for mine, theirs in zip(trace.weights, ref):
        assert mine.dtype == torch.float32 and mine.device.type == "cpu"
        assert torch.equal(mine, theirs[0])
    assert trace.is_causal == (kind != "bert")
    assert trace.model_name.endswith(kind)


def test_trace_tokens_are_spelled_by_the_tokenizer_with_special_tokens(loaded):
    model, tok = loaded["bert"]
    trace = trace_attention(model, tok, "the cat sat")
    assert trace.tokens == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert trace.token_ids == [_hf_tiny.VOCAB[t] for t in trace.tokens]


def test_trace_of_ids_without_tokenizer_labels_them_as_text(loaded):
    model, _ = loaded["gpt2"]
    trace = trace_attention(model, None, [7, 8, 9])
    assert trace.tokens == ["7", "8", "9"] and all(isinstance(t, str) for t in trace.tokens)


def test_sdpa_model_returns_no_weights_and_says_load_eager(model_dirs):
    model, tok = load_pretrained(model_dirs["bert"], attn="sdpa")
    with pytest.raises(ValueError, match=r"no attention weights \(attn_implementation='sdpa'\).*'eager'"):
        trace_attention(model, tok, "the cat")


@pytest.mark.parametrize("source, kwargs, exc, match", [
    ("the cat " * 20, {"max_tokens": 10}, ValueError, r"at most 10 tokens .* has 4[12]"),
    (list(range(70)), {}, ValueError, r"at most 64 tokens"),
    ([1, 2, 999], {}, ValueError, r"token ids in 0\.\.66 .* found 1\.\.999"),
    ([[1, 2], [3, 4]], {}, ValueError, r"one sequence of token ids.*\(2, 2\)"),
    (torch.tensor([0.5, 1.0]), {}, TypeError, r"integer token ids but found dtype torch\.float32"),
    ("the cat", {"max_tokens": 0}, ValueError, r"max_tokens to be an int >= 1 but found 0"),
])
def test_trace_errors_name_the_argument(loaded, source, kwargs, exc, match):
    model, tok = loaded["gpt2"]
    with pytest.raises(exc, match=match):
        trace_attention(model, tok, source, **kwargs)


def test_trace_of_text_without_tokenizer_asks_for_ids(loaded):
    with pytest.raises(ValueError, match=r"tokenizer=None: pass token ids"):
        trace_attention(loaded["gpt2"][0], None, "the cat")


def test_trace_rejects_a_model_that_is_not_transformers():
    with pytest.raises(TypeError, match=r"transformers PreTrainedModel but found Linear"):
        trace_attention(torch.nn.Linear(2, 2), None, [1, 2])


# ------------------------------------------------------------------------------------------------
# AttentionTrace.from_attentions
# ------------------------------------------------------------------------------------------------
def test_from_attentions_accepts_hf_tuples_lists_of_heads_and_stacks(gen):
    L, B, H, n = 3, 2, 4, 5
    w = torch.randn(L, B, H, n, n, generator=gen).tril().softmax(-1)     # (L, B, H, T, T), not causal
    tokens = ["[CLS]", "a", "b", "c", "[SEP]"]
    hf = AttentionTrace.from_attentions(tuple(w), tokens)                 # per layer (B, H, T, T)
    tl = AttentionTrace.from_attentions([w[l, 0] for l in range(L)], tokens)   # per layer (H, T, T)
    stacked = AttentionTrace.from_attentions(w, tokens)
    for t in (hf, tl, stacked):
        assert (t.num_layers, t.num_heads, t.tokens) == (L, H, tokens)
        assert torch.equal(t.stacked(), w[:, 0])
        assert t.is_causal is False                                      # softmax of tril leaks
    causal = torch.ones(n, n).tril() / torch.arange(1, n + 1)[:, None]
    assert AttentionTrace.from_attentions([causal[None]], tokens).is_causal is True


@pytest.mark.parametrize("attentions, tokens, match", [
    ([torch.rand(2, 5, 5)], ["a"] * 4, r"layer 0 .* T = len\(tokens\) = 4 but found \(2, 5, 5\)"),
    ([torch.rand(2, 5, 5), torch.rand(3, 5, 5)], ["a"] * 5, r"same number of heads but found \[2, 3\]"),
    ([torch.rand(5, 5)], ["a"] * 5, r"\(B, H, T, T\) or \(H, T, T\) .* found \(5, 5\)"),
    ([], ["a"], r"non-empty tuple/list .* of length 0"),
    (torch.rand(5, 5), ["a"] * 5, r"one tensor of shape \(L, H, T, T\) or \(L, B, H, T, T\) but found \(5, 5\)"),
    ([torch.ones(1, 2, 2, dtype=torch.long)], ["a", "b"], r"floating weights .* torch\.int64"),
])
def test_from_attentions_bad_shapes_name_what_was_got_and_wanted(attentions, tokens, match):
    with pytest.raises(ValueError, match=match):
        AttentionTrace.from_attentions(attentions, tokens)


def test_from_attentions_keeps_word_labels_as_text():
    trace = AttentionTrace.from_attentions([torch.eye(3)[None]], ["[CLS]", "12", 7])
    assert trace.tokens == ["[CLS]", "12", "7"]
    with pytest.raises(TypeError, match=r"tokens to be a list of str"):
        AttentionTrace.from_attentions([torch.eye(3)[None]], "abc")


# ------------------------------------------------------------------------------------------------
# embeddings_model + the leak detector: verdicts on real architectures
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CAUSAL)
def test_causal_lms_pass_causal(loaded, kind):
    model, _ = loaded[kind]
    x = embedding_inputs(model, 2, T, torch.Generator().manual_seed(0))
    f = embeddings_model(model)
    assert find_leaks(f, x) == []
    assert float(invariance_sweep(f, x).max()) <= 1e-5


def test_bert_fails_causal_and_passes_full(loaded):
    model, _ = loaded["bert"]
    f = embeddings_model(model)
    x = embedding_inputs(model, 1, T)
    leaks = find_leaks(f, x)                                         # relation None = causal
    assert len(leaks) == T * (T - 1) // 2                            # every future pair
    assert find_leaks(f, x, parse_relation("full", T)) == []


def test_one_layer_mistral_with_window_3_passes_sliding_3_and_fails_sliding_2(loaded):
    model, _ = loaded["mistral-1layer-w3"]
    assert model.config.sliding_window == 3
    f = embeddings_model(model)
    x = embedding_inputs(model, 1, T)
    assert find_leaks(f, x, sliding_window(3)) == []
    leaks = find_leaks(f, x, sliding_window(2))
    assert {(l.out_pos - l.in_pos) for l in leaks} == {2}            # exactly the third key back


def test_gpt2_given_a_4d_all_ones_mask_turns_bidirectional_and_is_caught(loaded):
    model, _ = loaded["gpt2"]
    x = embedding_inputs(model, 1, T)
    assert find_leaks(embeddings_model(model), x) == []
    leaky = embeddings_model(model, torch.ones(1, 1, T, T))
    assert len(find_leaks(leaky, x)) == T * (T - 1) // 2


def test_padding_mask_is_repeated_to_every_batch_the_checks_use(loaded):
    model, _ = loaded["llama"]
    lengths = [T, 5]
    f = embeddings_model(model, make_padding_mask(lengths, T))       # (2, T) keep-mask
    x = embedding_inputs(model, 2, T)
    dep = dependency_map(f, x, reduce="none")                        # (B, T, T), batched + vmapped
    assert float(dep[1, :5, 5:].abs().max()) == 0.0                  # real tokens never see the pads
    past = torch.ones(T, T, dtype=torch.bool).tril()
    assert float(dep[0][~past].max()) == 0.0 and float(dep[0][past].min()) > 0
    sweep = invariance_sweep(f, x)                                   # one B·(T+1)-row call
    assert sweep.shape == (T,) and float(sweep.max()) <= 1e-5
    assert check_output_invariance(f, x, 3).passed
    with pytest.raises(ValueError, match=r"B a multiple of 2"):
        f(embedding_inputs(model, 3, T))


def test_embedding_inputs_are_rows_of_the_models_own_table(loaded):
    model, _ = loaded["gpt2"]
    x = embedding_inputs(model, 2, 3, torch.Generator().manual_seed(1))
    table = model.get_input_embeddings().weight
    assert x.shape == (2, 3, _hf_tiny.E)
    assert all(bool((table == row).all(-1).any()) for row in x.reshape(-1, _hf_tiny.E))
    with pytest.raises(ValueError, match=r"seq_len to be an int >= 1 but found 0"):
        embedding_inputs(model, 1, 0)


@pytest.mark.parametrize("mask, exc, match", [
    (torch.tensor([[0.0, 0.5]]), ValueError, r"0/1 keep values .* additive -inf"),
    (torch.ones(2, 3, 4), ValueError, r"\(T,\), \(B, T\) or \(B, 1, T, T\) but found \(2, 3, 4\)"),
    ([1, 1], TypeError, r"None or a \(B, T\) tensor but found list"),
])
def test_embeddings_model_rejects_bad_masks(loaded, mask, exc, match):
    with pytest.raises(exc, match=match):
        embeddings_model(loaded["gpt2"][0], mask)


def test_embeddings_model_rejects_a_module_that_is_not_transformers():
    with pytest.raises(TypeError, match=r"transformers PreTrainedModel but found Linear"):
        embeddings_model(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------
# verify_target: what the verifier's --hf will call
# ------------------------------------------------------------------------------------------------
def test_verify_target_gives_model_dim_positions_and_causality(model_dirs):
    f, dim, positions, causal = verify_target(model_dirs["qwen2"], seq_len=T)
    assert (dim, positions, causal) == (_hf_tiny.E, _hf_tiny.POSITIONS, True)
    assert find_leaks(f, embedding_inputs(f, 1, T)) == []
    f, _, _, causal = verify_target(model_dirs["bert"], attn="sdpa", padding=[T, 4], seq_len=T)
    assert causal is False and f.model.config._attn_implementation == "sdpa"
    assert f(embedding_inputs(f, 2, T)).shape == (2, T, _hf_tiny.E)


@pytest.mark.parametrize("kwargs, match", [
    ({"seq_len": 65}, r"seq_len <= 64 \(the model's max positions\) but found 65"),
    ({"padding": [3, 4]}, r"seq_len with padding"),
    ({"seq_len": 0}, r"seq_len to be an int >= 1 but found 0"),
])
def test_verify_target_errors_are_one_line(model_dirs, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        verify_target(model_dirs["gpt2"], **kwargs)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------
# head_roles on a real architecture
# ------------------------------------------------------------------------------------------------
def test_induction_probe_is_a_repeated_block_of_ordinary_tokens_in_special_tokens(loaded):
    from attention.hf import induction_probe_ids

    model, tok = loaded["bert"]
    ids = induction_probe_ids(model, tok, block=10, seed=3)
    assert ids[0] == _hf_tiny.VOCAB["[CLS]"] and ids[-1] == _hf_tiny.VOCAB["[SEP]"]
    body = ids[1:-1]
    assert len(body) == 20 and body[:10] == body[10:] and len(set(body[:10])) == 10
    assert not set(body) & set(tok.all_special_ids)
    ordinary = len(_hf_tiny.VOCAB) - len(set(tok.all_special_ids))
    with pytest.raises(ValueError, match=rf"block <= {ordinary} \(non-special tokens in the vocabulary\) "
                                         rf"but found {ordinary + 1}"):
        induction_probe_ids(model, tok, block=ordinary + 1)


def test_head_roles_scores_every_head_of_a_causal_lm(loaded):
    from attention.hf import head_roles

    model, tok = loaded["gpt2"]
    rows = head_roles(model, tok, ["the cat sat on the mat", "a big red dog ran"], block=8)
    assert [(r.layer, r.head) for r in rows] == [(l, h) for l in range(2) for h in range(_hf_tiny.HEADS)]
    assert all(r.next_token == 0.0 for r in rows)                   # causal: never the next token
    assert all(0.0 <= r.induction <= 1.0 for r in rows)             # the probe repeats: measurable
    with pytest.raises(ValueError, match=r"texts to be a str or a non-empty list of str"):
        head_roles(model, tok, [])


def test_unreachable_hub_fails_fast_as_offline_without_touching_the_network(monkeypatch):
    import huggingface_hub.constants as hub

    from attention.hf import loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout=3.0: False)   # sockets refuse anyway
    with pytest.raises(ModelNotAvailable, match=r"offline \(the hub cannot be reached\).*local directory"):
        load_pretrained("someone/tiny-gpt2")


def test_hub_probe_says_unreachable_when_connections_fail(monkeypatch):
    from attention.hf import loading

    def no_route(*args, **kwargs):
        raise OSError("no route to host")

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", no_route)
    assert loading._hub_reachable(timeout=0.1) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert loading._hub_reachable(timeout=0.1) is True
