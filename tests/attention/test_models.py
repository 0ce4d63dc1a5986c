"""The tiny transformer and its shipped weights: shapes, input errors, learned heads, causality,
and loading bad weight files.

The acceptance figures (repeated-part accuracy, previous-token and induction heads) are measured on
fresh seeded data here, not read from the file's metadata.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from attention import check_output_invariance, verify_no_lookahead
from attention.head_metrics import (
    head_metrics,
    induction_scores,
    next_token_accuracy,
    preset_induction_input,
    repeated_random_tokens,
)
from attention.models import (
    INDUCTION_WEIGHTS,
    Block,
    EmbeddingsToLogits,
    TinyTransformer,
    TransformerConfig,
    induction_embeddings_to_logits,
    load_induction_model,
    load_model,
    read_metadata,
    save_model,
)
from attention.verify import dependency_map, find_leaks
from attention.zoo.layers import BlockStack


@pytest.fixture(scope="module")
def model() -> TinyTransformer:
    return load_induction_model()


def non_causal_copy(model: TinyTransformer) -> TinyTransformer:
    """The same weights with the causal mask removed: the negative control of every causal check."""
    leaky = TinyTransformer(dataclasses.replace(model.config, causal=False))
    leaky.load_state_dict(model.state_dict())
    return leaky.eval()


# ------------------------------------------------------------------------------------------------
# The shipped file and the model's interface

def test_shipped_weights_are_small_safetensors_loaded_in_eval_mode(model):
    assert INDUCTION_WEIGHTS.suffix == ".safetensors"
    assert INDUCTION_WEIGHTS.stat().st_size <= 2 * 1024 * 1024
    assert not model.training
    assert (model.vocab_size, model.max_len) == (64, 32)
    assert model.config == TransformerConfig()
    meta = read_metadata()
    assert meta["config"] == dataclasses.asdict(model.config)
    assert meta["train"]["seed"] == 0


@pytest.mark.parametrize("B, T", [(1, 1), (3, 7), (2, 32)])
def test_forward_returns_logits_and_one_weight_tensor_per_layer(model, B, T, gen):
    idx = torch.randint(0, model.vocab_size, (B, T), generator=gen)
    with torch.no_grad():
        logits, weights = model(idx)
    assert logits.shape == (B, T, model.vocab_size)
    assert len(weights) == model.num_layers == 2
    for w in weights:
        assert w.shape == (B, model.num_heads, T, T)
        torch.testing.assert_close(w.sum(-1), torch.ones(B, model.num_heads, T))
        assert verify_no_lookahead(w, atol=0.0)


def test_unbatched_ids_are_a_batch_of_one(model, gen):
    idx = torch.randint(0, model.vocab_size, (10,), generator=gen)
    with torch.no_grad():
        logits, weights = model(idx)
        logits_b, weights_b = model(idx[None])
    assert logits.shape == (1, 10, model.vocab_size)
    torch.testing.assert_close(logits, logits_b)
    torch.testing.assert_close(weights[1], weights_b[1])


def test_fused_path_without_weights_gives_the_same_logits(model, gen):
    idx = torch.randint(0, model.vocab_size, (4, 32), generator=gen)
    with torch.no_grad():
        explicit, weights = model(idx, need_weights=True)
        fused, none = model(idx, need_weights=False)
    assert none == [None, None]
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "idx, error, match",
    [
        (torch.zeros(1, 4), TypeError, r"integer tensor of token ids but found dtype torch.float32"),
        (torch.zeros(1, 4, dtype=torch.bool), TypeError, r"integer tensor .* torch.bool"),
        ([[1, 2, 3]], TypeError, r"expected idx to be a torch.Tensor .* found list"),
        (torch.tensor([[1, 64]]), ValueError, r"token ids in 0\.\.63 \(vocab_size=64\) but found values in 1\.\.64"),
        (torch.tensor([[-1, 3]]), ValueError, r"token ids in 0\.\.63 .* found values in -1\.\.3"),
        (torch.zeros(1, 33, dtype=torch.long), ValueError, r"1 <= T <= max_len=32 .* \(1, 33\)"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, r"1 <= T <= max_len=32 .* \(1, 0\)"),
        (torch.zeros(2, 3, 4, dtype=torch.long), ValueError, r"shape \(B, T\) or \(T,\) but found \(2, 3, 4\)"),
    ],
)
def test_bad_token_ids_are_rejected_with_a_clear_error(model, idx, error, match):
    with pytest.raises(error, match=match):
        model(idx)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"d_model": 63}, ValueError, r"d_model divisible by num_heads .* d_model=63, num_heads=4"),
        ({"num_layers": 0}, ValueError, r"num_layers >= 1 but found num_layers=0"),
        ({"d_ff": -1}, ValueError, r"d_ff >= 0"),
        ({"vocab_size": 64.0}, TypeError, r"vocab_size to be an int but found float"),
        ({"causal": 1}, TypeError, r"causal to be a bool"),
    ],
)
def test_bad_config_is_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        TransformerConfig(**kwargs)


# ------------------------------------------------------------------------------------------------
# What the shipped model learned (fresh data, seeds unlike the training run's)

def test_shipped_model_predicts_the_repeated_part_and_not_the_first(model):
    data = repeated_random_tokens(1024, model.max_len, model.vocab_size, 6, 16,
                                  torch.Generator().manual_seed(2024), random_start=True)
    with torch.no_grad():
        logits, _ = model(data.tokens, need_weights=False)
    acc_first, acc_repeated = next_token_accuracy(logits, data)
    assert acc_repeated >= 0.90
    # New tokens cannot be predicted: chance is 1/V (1.6%); 3/V allows for the model avoiding
    # tokens it has seen (at most 1/(V - 26) = 2.6%) but not for any real skill.
    assert acc_first <= 3 / model.vocab_size


def test_shipped_model_has_a_previous_token_head_in_layer_0_and_an_induction_head_in_layer_1(model):
    rows = head_metrics(model, seed=99)
    layer0 = [r for r in rows if r.layer == 0]
    layer1 = [r for r in rows if r.layer == 1]
    assert max(r.previous_token for r in layer0) >= 0.7
    assert max(r.induction for r in layer1) >= 0.6
    (prev_head,) = [r for r in rows if r.is_previous_token_head]
    (ind_head,) = [r for r in rows if r.is_induction_head]
    assert (prev_head.layer, ind_head.layer) == (0, 1)
    assert prev_head.previous_token == max(r.previous_token for r in rows)
    assert ind_head.induction == max(r.induction for r in rows)
    # a sharp induction head concentrates on one key; a previous-token head is far from uniform
    assert ind_head.entropy < 0.5


def test_head_metrics_stored_with_the_weights_match_the_shipped_model(model):
    stored = read_metadata()["metrics"]["heads"]
    fresh = [r.as_dict() for r in head_metrics(model)]
    assert [(r["layer"], r["head"]) for r in stored] == [(r["layer"], r["head"]) for r in fresh]
    for s, f in zip(stored, fresh):
        for key in ("previous_token", "induction", "entropy"):
            assert s[key] == pytest.approx(f[key], abs=1e-4)
        assert s["is_induction_head"] == f["is_induction_head"]
        assert s["is_previous_token_head"] == f["is_previous_token_head"]


def test_preset_input_shows_the_induction_stripe(model):
    idx = preset_induction_input(model.vocab_size, model.max_len, seed=0)
    assert idx.shape == (1, 32) and idx.dtype == torch.long
    torch.testing.assert_close(idx[:, 16:], idx[:, :16])
    with torch.no_grad():
        _, weights = model(idx)
    best = max(range(model.num_heads),
               key=lambda h: induction_scores(weights[1][:, h:h + 1], torch.tensor([16])).item())
    stripe = torch.diagonal(weights[1][0, best], offset=-15)[1:]   # queries 16..31 -> keys 1..16
    assert stripe.mean() >= 0.6


# ------------------------------------------------------------------------------------------------
# Causality of the whole model (the embeddings -> logits path, where a leak would be)

@pytest.mark.parametrize("prefix", [0, 5, 16, 30])
def test_whole_model_outputs_ignore_changes_after_the_prefix(model, prefix, gen):
    x = model.embed(torch.randint(0, model.vocab_size, (3, 32), generator=gen)).detach()
    result = check_output_invariance(EmbeddingsToLogits(model), x, prefix)
    assert result.passed, result


@pytest.mark.parametrize("prefix", [0, 5, 16, 30])
def test_negative_control_without_causal_mask_fails_invariance(model, prefix, gen):
    x = model.embed(torch.randint(0, model.vocab_size, (3, 32), generator=gen)).detach()
    result = check_output_invariance(EmbeddingsToLogits(non_causal_copy(model)), x, prefix)
    assert not result.passed
    assert result.max_diff > 1e-3


@pytest.mark.parametrize("causal", [True, False])
def test_changing_future_token_ids_changes_past_logits_only_without_the_mask(model, causal, gen):
    m = model if causal else non_causal_copy(model)
    idx = torch.randint(0, model.vocab_size, (4, 32), generator=gen)
    L = 11
    idx2 = idx.clone()
    idx2[:, L + 1:] = (idx[:, L + 1:] + 1 + torch.randint(0, 62, idx[:, L + 1:].shape, generator=gen)) % 64
    assert bool((idx2[:, L + 1:] != idx[:, L + 1:]).all())
    with torch.no_grad():
        past, past2 = m(idx)[0][:, :L + 1], m(idx2)[0][:, :L + 1]
    if causal:
        assert torch.equal(past, past2)
    else:
        assert (past - past2).abs().max() > 1e-3


def test_dependency_map_of_the_whole_model_is_causal(model, gen):
    x = model.embed(torch.randint(0, model.vocab_size, (1, 12), generator=gen)).detach()
    dep = dependency_map(EmbeddingsToLogits(model), x)          # (T, T), float64
    assert dep.shape == (12, 12)
    assert torch.equal(dep.triu(1), torch.zeros_like(dep))
    assert bool((dep.diagonal() > 0).all())
    assert find_leaks(EmbeddingsToLogits(model), x) == []


def test_dependency_map_finds_the_leaks_of_the_non_causal_control(model, gen):
    x = model.embed(torch.randint(0, model.vocab_size, (1, 12), generator=gen)).detach()
    leaks = find_leaks(EmbeddingsToLogits(non_causal_copy(model)), x)
    assert len(leaks) == 12 * 11 // 2                          # every (i, j > i) pair
    assert all(l.in_pos > l.out_pos for l in leaks)


def test_verify_cli_factory_returns_the_shipped_models_logit_path():
    wrapped = induction_embeddings_to_logits()
    assert isinstance(wrapped, EmbeddingsToLogits)
    x = torch.randn(2, 8, 64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(wrapped(x), load_induction_model().forward_embeddings(x)[0])


# ------------------------------------------------------------------------------------------------
# Saving and loading

@pytest.fixture
def small_model() -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer(TransformerConfig(vocab_size=11, max_len=9, d_model=16, num_heads=2,
                                             d_ff=8)).eval()


def test_save_and_load_round_trip_keeps_logits_and_metadata(small_model, tmp_path, gen):
    path = save_model(small_model, tmp_path / "m.safetensors", metadata={"note": {"a": 1}})
    loaded = load_model(path)
    idx = torch.randint(0, 11, (2, 9), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], small_model(idx)[0], atol=0, rtol=0)
    assert loaded.config == small_model.config
    assert read_metadata(path)["note"] == {"a": 1}


def _rewrite(src, dst, change_tensors=None, change_meta=None):
    """Copy a safetensors file, editing its tensors and/or metadata."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src))
    if change_tensors:
        change_tensors(tensors)
    if change_meta:
        change_meta(meta)
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize(
    "edit_tensors, edit_meta, match",
    [
        (lambda t: t.__setitem__("head.weight", torch.zeros(11, 15)), None,
         r"tensor 'head.weight' has shape \(11, 15\) but the config needs \(11, 16\)"),
        (lambda t: t.pop("head.bias"), None, r"missing \['head.bias'\], unexpected \[\]"),
        (lambda t: t.__setitem__("extra", torch.zeros(1)), None, r"missing \[\], unexpected \['extra'\]"),
        (lambda t: t.__setitem__("head.bias", torch.zeros(11, dtype=torch.float64)), None,
         r"'head.bias' has dtype torch.float64, expected torch.float32"),
        (lambda t: t["ln_f.weight"].__setitem__(0, float("nan")), None, r"'ln_f.weight' holds NaN"),
        (None, lambda m: m.__setitem__("config", json.dumps({"vocab_size": 11, "d_model": 15})),
         r"bad config in metadata: expected d_model divisible by num_heads"),
        (None, lambda m: m.__setitem__("config", json.dumps({"layers": 2})),
         r"bad config in metadata: unknown TransformerConfig keys \['layers'\]"),
        (None, lambda m: m.__setitem__("config", "{not json"), r"metadata entry 'config' is not valid JSON"),
        (None, lambda m: m.pop("format"), r"expected metadata format .* but found None"),
    ],
)
def test_wrong_weights_file_fails_with_a_clear_error_naming_the_file(
        small_model, tmp_path, edit_tensors, edit_meta, match):
    good = save_model(small_model, tmp_path / "good.safetensors")
    bad = _rewrite(good, tmp_path / "bad.safetensors", edit_tensors, edit_meta)
    with pytest.raises(ValueError, match=match) as info:
        load_model(bad)
    assert "bad.safetensors" in str(info.value)


def test_shipped_weights_loaded_into_a_wrong_config_fail_clearly(tmp_path):
    def shrink(meta):
        cfg = json.loads(meta["config"])
        meta["config"] = json.dumps({**cfg, "num_layers": 1})

    bad = _rewrite(INDUCTION_WEIGHTS, tmp_path / "one_layer.safetensors", change_meta=shrink)
    with pytest.raises(ValueError, match=r"one_layer.safetensors: tensors do not match .* unexpected "
                                         r"\['blocks.1.attn.k_proj.bias'"):
        load_model(bad)


@pytest.mark.parametrize("keep", [0, 7, 100, -10])
def test_truncated_weights_file_fails_with_a_clear_error(tmp_path, keep):
    data = INDUCTION_WEIGHTS.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(ValueError, match=r"weights file .*truncated.safetensors (is not a readable "
                                         r"safetensors file|: could not read tensors)"):
        load_model(bad)


def test_garbage_and_pickle_files_are_not_loaded(tmp_path, small_model):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=r"garbage.safetensors is not a readable safetensors file"):
        load_model(garbage)
    pickled = tmp_path / "pickled.safetensors"
    torch.save(small_model.state_dict(), pickled)                 # a zip of pickles: never opened as one
    with pytest.raises(ValueError, match=r"pickled.safetensors is not a readable safetensors file"):
        load_model(pickled)


def test_missing_weights_file_fails_with_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"weights file .*nope.safetensors does not exist"):
        load_model(tmp_path / "nope.safetensors")


def test_save_model_rejects_reserved_metadata_keys(small_model, tmp_path):
    with pytest.raises(ValueError, match=r"metadata key 'config' is reserved"):
        save_model(small_model, tmp_path / "m.safetensors", metadata={"config": 1})


def test_loading_leaves_the_global_rng_alone_and_gives_the_same_weights_every_time():
    torch.manual_seed(1)
    state = torch.random.get_rng_state()
    a = load_induction_model().state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(2)
    b = load_induction_model().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_zoo_block_stack_is_built_from_the_one_pre_norm_block():
    stack = BlockStack(16, num_heads=4, n_layers=2)
    assert all(type(b) is Block for b in stack.blocks)
    assert all(b.causal and b.mlp is not None for b in stack.blocks)
    assert stack.blocks[0].mlp[0].out_features == 4 * 16
