"""Head metrics on hand-built attention patterns (the oracle: we know what each pattern scores),
and the repeated-token data they are measured on.
"""
from __future__ import annotations

import math

import pytest
import torch

from attention.head_metrics import (
    RepeatedTokens,
    attention_entropy,
    head_metrics,
    head_metrics_table,
    induction_scores,
    next_token_accuracy,
    preset_induction_input,
    previous_token_scores,
    repeated_random_tokens,
    two_copy_tokens,
)
from attention.models import TinyTransformer, TransformerConfig


def one_hot_pattern(T: int, key_of) -> torch.Tensor:
    """``(T, T)`` weights where query ``i`` puts all its weight on key ``key_of(i)``."""
    w = torch.zeros(T, T)
    for i in range(T):
        w[i, key_of(i)] = 1.0
    return w


def uniform_causal(T: int) -> torch.Tensor:
    return torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]


def test_previous_token_pattern_scores_one_and_diagonal_scores_zero():
    T = 10
    prev = one_hot_pattern(T, lambda i: max(i - 1, 0))
    diag = one_hot_pattern(T, lambda i: i)
    w = torch.stack([prev, diag])[None]                          # (1, 2, T, T): head 0 prev, head 1 self
    scores = previous_token_scores([w, w.flip(1)])               # two layers
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_uniform_causal_previous_token_score_is_the_mean_of_one_over_i_plus_one():
    T = 8
    w = uniform_causal(T)[None, None]
    expected = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)
    assert previous_token_scores(w).item() == pytest.approx(expected)


@pytest.mark.parametrize("period, start", [(4, 0), (5, 3), (16, 0)])
def test_induction_pattern_scores_one_and_previous_token_pattern_scores_zero(period, start):
    T = 32
    induction = one_hot_pattern(T, lambda i: i - period + 1 if i >= start + period else i)
    prev = one_hot_pattern(T, lambda i: max(i - 1, 0))
    w = torch.stack([induction, prev])[None]                     # (1, 2, T, T)
    scores = induction_scores(w, torch.tensor([period]), torch.tensor([start]))
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.0]]))


def test_induction_score_averages_over_the_batch_with_per_sequence_periods():
    T = 12
    a = one_hot_pattern(T, lambda i: i - 4 + 1 if i >= 4 else 0)   # induction for period 4
    b = one_hot_pattern(T, lambda i: 0)                             # attends to the first token only
    w = torch.stack([a, b])[:, None]                                # (2, 1, T, T)
    periods = torch.tensor([4, 6])
    # sequence 0: queries 4..11 (8) each score 1; sequence 1: queries 6..11 (6) want keys 1..6
    # but look at key 0, so score 0
    expected = 8 / (8 + 6)
    assert induction_scores(w, periods).item() == pytest.approx(expected)


def test_entropy_of_one_hot_is_zero_and_of_uniform_causal_is_mean_log_positions():
    T = 6
    w = torch.stack([one_hot_pattern(T, lambda i: 0), uniform_causal(T)])[None]
    ent = attention_entropy(w)
    expected = sum(math.log(i + 1) for i in range(T)) / T
    torch.testing.assert_close(ent, torch.tensor([[0.0, expected]]))


def test_table_flags_the_best_heads_and_none_below_the_threshold():
    prev = torch.tensor([[0.1, 0.9], [0.2, 0.3]])
    ind = torch.tensor([[0.0, 0.1], [0.8, 0.2]])
    ent = torch.zeros(2, 2)
    rows = head_metrics_table(prev, ind, ent)
    assert [(r.layer, r.head) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r.is_previous_token_head for r in rows] == [False, True, False, False]
    assert [r.is_induction_head for r in rows] == [False, False, True, False]
    assert rows[1].as_dict()["previous_token"] == pytest.approx(0.9)
    low = head_metrics_table(prev * 0.5, ind * 0.5, ent)
    assert not any(r.is_previous_token_head or r.is_induction_head for r in low)


def test_untrained_model_has_no_flagged_heads():
    torch.manual_seed(0)
    rows = head_metrics(TinyTransformer(TransformerConfig()), batch=32)
    assert len(rows) == 8
    assert not any(r.is_previous_token_head or r.is_induction_head for r in rows)
    assert max(r.previous_token for r in rows) < 0.3


@pytest.mark.parametrize(
    "weights, periods, match",
    [
        (torch.ones(2, 1, 4, 5), [1, 1], r"weights of shape \(B, H, T, T\) but found \(2, 1, 4, 5\)"),
        ([torch.ones(1, 1, 4, 4), torch.ones(1, 2, 4, 4)], [1], r"same shape"),
        (torch.ones(2, 1, 4, 4), [1], r"periods and starts of shape \(B,\) = \(2,\)"),
        (torch.ones(1, 1, 4, 4), [4], r"start \+ period < T=4"),
    ],
)
def test_bad_weights_or_periods_are_rejected(weights, periods, match):
    with pytest.raises(ValueError, match=match):
        induction_scores(weights, torch.tensor(periods))


# ------------------------------------------------------------------------------------------------
# Data

@pytest.mark.parametrize("random_start", [False, True])
def test_repeated_tokens_repeat_with_their_period_after_distinct_tokens(random_start, gen):
    data = repeated_random_tokens(200, 32, 64, 6, 16, gen, random_start=random_start)
    assert data.tokens.shape == (200, 32) and data.tokens.dtype == torch.long
    assert int(data.tokens.min()) >= 0 and int(data.tokens.max()) < 64
    assert set(data.periods.tolist()) <= set(range(6, 17))
    assert len(set(data.periods.tolist())) > 5                     # periods really vary
    for tok, p, s in zip(data.tokens, data.periods.tolist(), data.starts.tolist()):
        assert 0 <= s <= max(0, 32 - 2 * p)
        assert len(set(tok[:s + p].tolist())) == s + p              # distinct before the repeat
        assert torch.equal(tok[s + p:], tok[s:32 - p])              # x[i] = x[i - p]
    if random_start:
        assert int(data.starts.max()) > 10
    else:
        assert int(data.starts.max()) == 0


def test_repeated_tokens_are_reproducible_from_the_generator_seed():
    a = repeated_random_tokens(8, 32, 64, 6, 16, torch.Generator().manual_seed(5), random_start=True)
    b = repeated_random_tokens(8, 32, 64, 6, 16, torch.Generator().manual_seed(5), random_start=True)
    c = repeated_random_tokens(8, 32, 64, 6, 16, torch.Generator().manual_seed(6), random_start=True)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.starts, b.starts)
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"min_period": 0}, ValueError, r"min_period to be an int >= 1 but found 0"),
        ({"min_period": 10, "max_period": 8}, ValueError, r"min_period <= max_period < seq_len=32"),
        ({"max_period": 32}, ValueError, r"max_period < seq_len=32 .* max_period=32"),
        ({"vocab_size": 10}, ValueError, r"at most vocab_size=10 distinct tokens"),
        ({"generator": 0}, TypeError, r"generator to be a torch.Generator but found int"),
    ],
)
def test_bad_data_arguments_are_rejected(kwargs, error, match):
    args = {"batch": 2, "seq_len": 32, "vocab_size": 64, "min_period": 6, "max_period": 16,
            "generator": torch.Generator().manual_seed(0), **kwargs}
    with pytest.raises(error, match=match):
        repeated_random_tokens(**args)


def test_two_copy_tokens_are_one_block_twice(gen):
    data = two_copy_tokens(4, 64, 32, gen)
    assert torch.equal(data.tokens[:, 16:], data.tokens[:, :16])
    assert data.periods.tolist() == [16] * 4


def test_preset_input_is_seeded_and_sized_for_the_model():
    a, b, c = preset_induction_input(seed=0), preset_induction_input(seed=0), preset_induction_input(seed=1)
    assert a.shape == (1, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a[0, :16].tolist())) == 16
    small = preset_induction_input(vocab_size=10, seq_len=8, seed=3)
    assert small.shape == (1, 8) and int(small.max()) < 10
    with pytest.raises(ValueError, match=r"seq_len >= 2"):
        preset_induction_input(seq_len=1)
    with pytest.raises(TypeError, match=r"seed to be an int but found str"):
        preset_induction_input(seed="0")


def test_accuracy_splits_first_part_and_repeated_part():
    # Two sequences, period 3, start 0: tokens 0 1 2 0 1 2. A "model" predicting the true next
    # token everywhere except in the first part scores (0, 1).
    tokens = torch.tensor([[0, 1, 2, 0, 1, 2], [3, 4, 5, 3, 4, 5]])
    data = RepeatedTokens(tokens=tokens, periods=torch.tensor([3, 3]), starts=torch.tensor([0, 0]))
    V = 7                                                           # token 6 never occurs
    target = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)     # next token (last one unused)
    logits = torch.nn.functional.one_hot(target, V).float()       # (2, 6, V): always right
    logits[:, :2] = torch.nn.functional.one_hot(torch.full((2, 2), 6), V).float()  # wrong in part 1
    logits[0, 1] = torch.nn.functional.one_hot(torch.tensor(2), V).float()         # one right there
    acc_first, acc_rep = next_token_accuracy(logits, data)
    assert acc_first == pytest.approx(0.25)                        # queries 0, 1 of 2 sequences
    assert acc_rep == pytest.approx(1.0)                           # queries 3, 4


# ------------------------------------------------------------------------------------------------
# Roles of heads in real models (any sequence)
# ------------------------------------------------------------------------------------------------
from attention.head_metrics import (  # noqa: E402
    ROLES,
    head_roles_table,
    next_token_scores,
    role_scores,
    self_scores,
    sink_scores,
    token_induction_scores,
)


def test_each_one_hot_pattern_scores_one_on_its_own_role_only():
    T = 9
    patterns = {                                                  # query i -> key
        "previous-token": lambda i: max(i - 1, 0),
        "next-token": lambda i: min(i + 1, T - 1),
        "first-token": lambda i: 0,
        "last-token": lambda i: T - 1,
        "self": lambda i: i,
    }
    w = torch.stack([one_hot_pattern(T, f) for f in patterns.values()])[None]   # (1, 5, T, T)
    scores = role_scores(w)
    for h, role in enumerate(patterns):
        assert scores[role][0, h].item() == pytest.approx(1.0), role
        others = [r for r in patterns if r != role and scores[r][0, h].item() > 0.3]
        assert others == [], f"{role} head also scores on {others}"
    rows = head_roles_table(scores)
    assert [r.role for r in rows] == list(patterns)
    assert torch.isnan(scores["induction"]).all()                  # no tokens given


def test_next_self_and_sink_scores_of_uniform_attention():
    T = 5
    w = torch.full((1, 1, T, T), 1 / T)
    for scores in (next_token_scores(w), self_scores(w), sink_scores(w, 0), sink_scores(w, -1)):
        assert scores.item() == pytest.approx(1 / T)
    with pytest.raises(ValueError, match=r"key to be an int position in -5\.\.4 but found 5"):
        sink_scores(w, 5)


@pytest.mark.parametrize("period", [3, 6])
def test_token_induction_equals_period_induction_on_a_repeated_block(period):
    T = 2 * period
    tokens = list(range(100, 100 + period)) * 2
    induction = one_hot_pattern(T, lambda i: i - period + 1 if i >= period else i)
    w = torch.stack([induction, one_hot_pattern(T, lambda i: max(i - 1, 0))])[None]
    by_tokens = token_induction_scores(w, tokens)
    torch.testing.assert_close(by_tokens, induction_scores(w, torch.tensor([period])))
    torch.testing.assert_close(induction_scores(w, tokens=tokens), by_tokens)
    assert by_tokens[0, 0].item() == pytest.approx(1.0) and by_tokens[0, 1].item() == pytest.approx(0.0)


def test_induction_on_a_plain_sentence_is_nan_not_an_error():
    tokens = ["[CLS]", "the", "cat", "sat", "[SEP]"]                # no token repeats
    w = torch.eye(5)[None, None]
    assert torch.isnan(induction_scores(w, tokens=tokens)).all()
    scores = role_scores(w, tokens)
    row = head_roles_table(scores)[0]
    assert row.role == "self" and math.isnan(row.induction)


def test_induction_scores_needs_periods_or_tokens_not_both():
    w = torch.eye(4)[None, None]
    with pytest.raises(TypeError, match=r"periods .* or tokens= .* neither"):
        induction_scores(w)
    with pytest.raises(ValueError, match=r"either periods \(and starts\) or tokens but found both"):
        induction_scores(w, torch.tensor([2]), tokens=[1, 2, 1, 2])
    with pytest.raises(ValueError, match=r"expected 4 tokens \(one per position\) but found 3"):
        token_induction_scores(w, [1, 2, 1])


def test_head_roles_table_flags_nothing_below_min_score_and_checks_its_input():
    T = 6
    scores = role_scores(torch.full((1, 2, T, T), 1 / T))
    assert [r.role for r in head_roles_table(scores)] == [None, None]
    assert all(r.role_score == pytest.approx(1 / T) for r in head_roles_table(scores))
    with pytest.raises(ValueError, match=r"found no \['self'\]"):
        head_roles_table({k: v for k, v in scores.items() if k != "self"})
    assert set(ROLES) | {"entropy"} == set(scores)
