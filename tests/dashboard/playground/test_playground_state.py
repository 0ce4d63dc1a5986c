"""AttentionPlayground: parameters, dependent bounds, caching, and agreement with the library and
with PyTorch's own nn.MultiheadAttention (the oracle)."""
from __future__ import annotations

import param
import pytest
import torch

from attention import check_output_invariance, make_causal_mask
from dashboard.playground import (MAX_SEQ_LEN, AttentionPlayground, build_model, embed_tokens,
                                  single_token_steps, tokenize)

USER_PARAMS = ["seq_len", "num_heads", "head_dim", "causal", "prefix", "query", "view_head", "seed",
               "text", "position_scale"]


# -- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", USER_PARAMS)
def test_every_parameter_has_a_label_and_a_doc(name):
    p = AttentionPlayground.param[name]
    assert p.label and p.label != name
    assert p.doc and len(p.doc.split()) >= 5


@pytest.mark.parametrize("name, lo, hi", [("seq_len", 1, 4096), ("num_heads", 1, 16),
                                          ("head_dim", 1, 128)])
def test_size_parameters_have_the_issue_bounds(name, lo, hi):
    assert AttentionPlayground.param[name].bounds == (lo, hi)


@pytest.mark.parametrize("name, bad", [("seq_len", 0), ("seq_len", 4097), ("num_heads", 17),
                                       ("head_dim", 0), ("seed", -1)])
def test_out_of_range_values_are_rejected(name, bad):
    pg = AttentionPlayground(seq_len=4)
    with pytest.raises(ValueError, match=name):
        setattr(pg, name, bad)


def test_shrinking_the_sequence_clamps_prefix_and_query():
    pg = AttentionPlayground(seq_len=16, prefix=12, query=14)
    pg.seq_len = 5
    assert (pg.prefix, pg.query) == (4, 4)
    assert pg.param.prefix.bounds == (0, 4) and pg.param.query.bounds == (0, 4)
    assert pg.result.invariance.prefix == 4
    with pytest.raises(ValueError, match="prefix"):
        pg.prefix = 5


def test_growing_the_sequence_widens_the_bounds_but_keeps_values():
    pg = AttentionPlayground(seq_len=4, prefix=2, query=3)
    pg.seq_len = 10
    assert (pg.prefix, pg.query) == (2, 3)
    assert pg.param.query.bounds == (0, 9)
    pg.query = 9


def test_fewer_heads_clamp_the_viewed_head():
    pg = AttentionPlayground(num_heads=6, view_head=5)
    pg.num_heads = 2
    assert pg.view_head == 1 and pg.param.view_head.bounds == (0, 1)


def test_constructor_values_out_of_the_new_range_are_clamped():
    pg = AttentionPlayground(seq_len=3, prefix=7, query=9)
    assert (pg.prefix, pg.query) == (2, 2)


# -- agreement with the library and with PyTorch ---------------------------------------------------
@pytest.mark.parametrize("T, H, D, causal", [(1, 1, 1, True), (8, 4, 16, True), (7, 3, 5, False),
                                             (12, 2, 8, True)])
def test_result_matches_the_library_called_directly(T, H, D, causal):
    pg = AttentionPlayground(seq_len=T, num_heads=H, head_dim=D, causal=causal, seed=3)
    x = embed_tokens(tokenize("", T), H * D, pg.position_scale)
    model = build_model(H, D, seed=3)
    mask = make_causal_mask(T, dtype=torch.bool) if causal else None
    with torch.no_grad():
        out, w = model(x, mask=mask)
    torch.testing.assert_close(pg.result.weights, w, rtol=0, atol=0)
    torch.testing.assert_close(pg.result.output, out, rtol=0, atol=0)
    torch.testing.assert_close(pg.result.x, x, rtol=0, atol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_weights_match_torch_multihead_attention(causal):
    pg = AttentionPlayground(seq_len=9, num_heads=3, head_dim=4, causal=causal, seed=11)
    ours = pg.model
    ref = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    blocked = ~make_causal_mask(9, dtype=torch.bool) if causal else None  # torch: True = blocked
    with torch.no_grad():
        out, w = ref(pg.result.x[None], pg.result.x[None], pg.result.x[None], attn_mask=blocked,
                     need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(pg.result.weights, w[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pg.result.output, out[0], rtol=1e-5, atol=1e-5)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (AttentionPlayground(seq_len=6, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.result.weights, b.result.weights)
    assert not torch.allclose(a.result.weights, c.result.weights)


def test_the_global_random_state_is_never_touched():
    before = torch.get_rng_state()
    pg = AttentionPlayground(seq_len=6)
    pg.seed = 9
    pg.causal = False
    assert torch.equal(torch.get_rng_state(), before)


def test_invariance_is_the_library_check_on_the_same_input():
    pg = AttentionPlayground(seq_len=10, prefix=4, seed=2)
    direct = check_output_invariance(pg.model, pg.result.x[None], 4,
                                     mask=make_causal_mask(10, dtype=torch.bool),
                                     generator=torch.Generator().manual_seed(3))
    assert pg.result.invariance.max_diff == direct.max_diff
    torch.testing.assert_close(pg.result.invariance.position_diff, direct.position_diff)


# -- the verdict ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("T, H, prefix", [(2, 1, 0), (8, 4, 3), (16, 2, 15), (33, 3, 20)])
def test_causal_passes_and_full_attention_fails(T, H, prefix):
    pg = AttentionPlayground(seq_len=T, num_heads=H, prefix=prefix)
    assert pg.result.passed and pg.result.max_future_weight == 0.0
    assert pg.result.invariance.max_diff == 0.0
    pg.causal = False
    assert not pg.result.passed
    assert pg.result.max_future_weight > 0.0


def test_positions_after_the_prefix_change_and_those_up_to_it_do_not():
    pg = AttentionPlayground(seq_len=12, prefix=5)
    d = pg.result.invariance.position_diff
    assert torch.all(d[:6] == 0) and torch.all(d[6:] > 1e-3)


def test_full_attention_fails_the_invariance_itself_when_the_future_is_perturbed():
    pg = AttentionPlayground(seq_len=12, prefix=5, causal=False)
    assert not pg.result.invariance.passed and pg.result.invariance.max_diff > 1e-3


def test_a_single_token_is_trivially_causal():
    pg = AttentionPlayground(seq_len=1, causal=False)
    assert pg.result.passed


# -- caching -------------------------------------------------------------------------------------------
def test_query_and_view_head_changes_recompute_nothing():
    pg = AttentionPlayground(seq_len=8)
    result, n, m = pg.result, pg.n_computes, pg.n_invariance_checks
    for q in range(8):
        pg.query = q
    pg.view_head = 2
    assert pg.result is result and (pg.n_computes, pg.n_invariance_checks) == (n, m)


def test_a_prefix_change_reruns_only_the_invariance_check():
    pg = AttentionPlayground(seq_len=8, prefix=2)
    weights, n, m = pg.result.weights, pg.n_computes, pg.n_invariance_checks
    pg.prefix = 5
    assert pg.result.weights is weights and pg.n_computes == n
    assert pg.n_invariance_checks == m + 1 and pg.result.invariance.prefix == 5


@pytest.mark.parametrize("name, value", [("seq_len", 9), ("num_heads", 2), ("head_dim", 3),
                                         ("causal", False), ("seed", 4), ("position_scale", 1.0),
                                         ("text", "a b c")])
def test_each_model_parameter_recomputes_exactly_once(name, value):
    pg = AttentionPlayground(seq_len=8)
    n = pg.n_computes
    setattr(pg, name, value)
    assert pg.n_computes == n + 1


def test_a_batch_of_changes_recomputes_once():
    pg = AttentionPlayground(seq_len=8)
    n = pg.n_computes
    pg.param.update(seq_len=12, num_heads=3, causal=False, prefix=6, query=7)
    assert pg.n_computes == n + 1 and pg.result.weights.shape == (3, 12, 12)
    assert pg.result.invariance.prefix == 6


@pytest.mark.parametrize("order", ["seq_len first", "prefix first"])
def test_one_update_can_grow_the_sequence_and_move_prefix_and_query_past_the_old_end(order):
    pg = AttentionPlayground(seq_len=8)
    change = dict(seq_len=12, prefix=10, query=11)
    if order == "prefix first":
        change = dict(prefix=10, query=11, seq_len=12)
    pg.param.update(**change)
    assert (pg.seq_len, pg.prefix, pg.query) == (12, 10, 11)
    assert pg.param.prefix.bounds == (0, 11) and pg.result.invariance.prefix == 10
    assert pg.result.invariance.position_diff.shape == (12,)


def test_text_and_a_prefix_past_the_old_end_in_one_update():
    pg = AttentionPlayground(seq_len=3)
    pg.param.update(prefix=4, text="one two three four five six")
    assert (pg.seq_len, pg.prefix) == (6, 4) and pg.result.invariance.prefix == 4


def test_a_prefix_past_the_new_end_of_a_batch_clamps_like_a_shrink():
    pg = AttentionPlayground(seq_len=8)
    pg.param.update(seq_len=12, prefix=20)
    assert pg.prefix == 11 and pg.result.invariance.prefix == 11


def test_a_prefix_set_alone_past_the_end_is_refused_and_left_unchanged():
    pg = AttentionPlayground(seq_len=8, prefix=3)
    n = pg.n_invariance_checks
    with pytest.raises(ValueError, match=r"expected prefix in 0..T-1 = 0..7 but found prefix=10"):
        pg.param.update(prefix=10, query=2)
    assert (pg.prefix, pg.query) == (3, 7) and pg.result.invariance.prefix == 3
    with pytest.raises(ValueError, match="view_head"):
        pg.view_head = 4
    assert pg.view_head == 0
    with pytest.raises(ValueError, match="prefix"):
        pg.prefix = MAX_SEQ_LEN
    assert pg.n_invariance_checks == n


def test_busy_is_true_only_while_computing():
    pg = AttentionPlayground(seq_len=4)
    seen = []
    pg.param.watch(lambda e: seen.append(e.new), "busy")
    pg.seed = 1
    assert seen == [True, False] and pg.busy is False


# -- text and tokens -----------------------------------------------------------------------------------
def test_text_sets_the_sequence_and_its_labels():
    pg = AttentionPlayground(seq_len=16, prefix=10, query=12)
    pg.text = "the  cat sat\non the mat"
    assert pg.seq_len == 6 and pg.result.tokens == ("the", "cat", "sat", "on", "the", "mat")
    assert (pg.prefix, pg.query) == (5, 5)
    assert pg.param.seq_len.constant
    with pytest.raises(TypeError, match="seq_len"):
        pg.seq_len = 3
    pg.text = ""
    assert not pg.param.seq_len.constant and pg.result.tokens == tuple(f"tok_{i}" for i in range(6))


def test_a_longer_text_keeps_the_first_max_seq_len_words():
    pg = AttentionPlayground()
    pg.text = " ".join(f"w{i % 50}" for i in range(MAX_SEQ_LEN + 7))
    assert pg.seq_len == MAX_SEQ_LEN and len(pg.result.tokens) == MAX_SEQ_LEN


def test_the_same_token_always_gets_the_same_embedding():
    a = embed_tokens(("dog", "cat", "dog"), 24, position_scale=0.0)
    b = embed_tokens(("cat", "dog"), 24, position_scale=0.0)
    assert torch.equal(a[0], a[2]) and torch.equal(a[0], b[1]) and not torch.equal(a[0], a[1])
    with_pos = embed_tokens(("dog", "cat", "dog"), 24, position_scale=0.5)
    assert not torch.equal(with_pos[0], with_pos[2])


def test_repeated_words_attend_alike_without_the_position_signal():
    pg = AttentionPlayground(text="x y x y", position_scale=0.0, causal=False)
    w = pg.result.weights
    torch.testing.assert_close(w[:, 0], w[:, 2])
    torch.testing.assert_close(w[:, 1], w[:, 3])
    pg.position_scale = 1.0
    assert not torch.allclose(pg.result.weights[:, 0], pg.result.weights[:, 2])


# -- the step-by-step view ------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
def test_single_token_steps_equal_a_row_of_the_full_attention(causal):
    pg = AttentionPlayground(seq_len=10, num_heads=3, head_dim=8, causal=causal)
    r = pg.result
    for h, q in [(0, 0), (1, 4), (2, 9)]:
        s = pg.single_token(head=h, query=q)
        torch.testing.assert_close(s.weights, r.weights[h, q])
        torch.testing.assert_close(s.output, r.weights[h, q] @ r.v[h])
        torch.testing.assert_close(s.scaled, (r.k[h] @ r.q[h, q]) / 8 ** 0.5)
        assert s.keep.tolist() == [causal is False or j <= q for j in range(10)]
        assert float(s.weights[~s.keep].abs().sum()) == 0.0


@pytest.mark.parametrize("head, query, match", [(3, 0, "head"), (0, 10, "query"), (-1, 0, "head")])
def test_single_token_steps_reject_out_of_range_indices(head, query, match):
    pg = AttentionPlayground(seq_len=10, num_heads=3)
    with pytest.raises(ValueError, match=match):
        single_token_steps(pg.result, head, query)


def test_the_result_is_read_only():
    pg = AttentionPlayground(seq_len=4)
    with pytest.raises(TypeError, match="result"):
        pg.result = None
    assert isinstance(AttentionPlayground.param.result, param.ClassSelector)


@pytest.mark.parametrize("text, want", [
    ("a\u200bb", ("a", "b")),                 # a zero-width space separates words
    ("\u200b", None),                         # nothing visible: no words, the placeholder tokens
    ("x \ufeff y", ("x", "y")),
])
def test_zero_width_characters_never_become_invisible_tokens(text, want):
    from dashboard.playground.state import tokenize
    got = tokenize(text, 3)
    assert got == (want if want is not None else ("tok_0", "tok_1", "tok_2"))


# -- the heads maps hold the pixels the screen shows ------------------------------------------------
def test_maps_are_max_pooled_to_the_pixels_a_map_is_drawn_on():
    """At T=256 a map is drawn 160 px a side: at pixel ratio 1 the mosaic holds 128 x 128 pixels,
    each the max of 2 x 2 weights (the full weights stay, for the exact hover and zoom); at
    pixel ratio 2 (a HiDPI screen) every weight is a pixel."""
    from dashboard.playground.state import head_arrangement, mosaic_factor

    assert head_arrangement(8)[2] == 160
    assert mosaic_factor(160, 8) == 1 and mosaic_factor(161, 8) == 2 and mosaic_factor(256, 8, 2.0) == 1
    pg = AttentionPlayground(seq_len=256, num_heads=8)
    r = pg.result
    assert r.maps.factor == 2 and tuple(r.maps.maps.shape) == (8, 128, 128)
    want = r.weights.reshape(8, 128, 2, 128, 2).amax(dim=(2, 4))
    assert torch.equal(r.maps.maps, want)
    assert r.weights is not None and r.weight(3, 200, 17) == float(r.weights[3, 200, 17])
    pg.pixel_ratio = 2.0
    assert pg.result.maps.factor == 1 and torch.equal(pg.result.maps.maps, pg.result.weights)
    n = pg.n_computes
    pg.pixel_ratio = 2.5               # 400 px: still every weight a pixel, nothing recomputed
    assert pg.n_computes == n and pg.result.maps.factor == 1
