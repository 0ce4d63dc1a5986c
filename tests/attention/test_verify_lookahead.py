"""verify_no_lookahead, max_future_weight and check_output_invariance."""
from __future__ import annotations

import pytest
import torch

from attention import (
    InvarianceResult,
    MultiHeadAttention,
    check_output_invariance,
    make_causal_mask,
    max_future_weight,
    verify_no_lookahead,
)
from attention.verify import default_atol

E, H = 16, 4


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiHeadAttention(E, H, num_kv_heads=2).eval()


def _x(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(dtype)


# ---------------------------------------------------------------------------------------------
# Weight checks


@pytest.mark.parametrize("T", [1, 2, 7])
def test_causal_weights_pass_and_unmasked_weights_fail(gen, mha, T):
    x = _x(gen, 2, T, E)
    _, causal_w = mha(x, is_causal=True)
    _, open_w = mha(x)
    assert verify_no_lookahead(causal_w)
    assert max_future_weight(causal_w) == 0.0
    if T > 1:
        assert not verify_no_lookahead(open_w)
        expected = open_w[..., ~make_causal_mask(T, dtype=torch.bool)].max().item()
        assert max_future_weight(open_w) == expected > 0
    else:
        assert verify_no_lookahead(open_w), "T=1 has no future key"


def test_max_future_weight_finds_a_single_planted_weight():
    w = torch.zeros(2, 3, 5, 5)
    w[1, 2, 1, 4] = 0.25                                        # query 1 looks at key 4
    w[0, 0, 3, 2] = 0.9                                         # the past does not count
    assert max_future_weight(w) == 0.25
    w[1, 2, 1, 4] = -0.5                                        # magnitude, not sign
    assert max_future_weight(w) == 0.5


def test_max_future_weight_of_a_single_position_is_zero():
    assert max_future_weight(torch.ones(3, 1, 1)) == 0.0


def test_max_future_weight_with_bottom_right_alignment():
    w = torch.zeros(2, 5)
    w[0, 4] = 0.375                                             # bottom-right: query 0 may see keys 0..3
    assert max_future_weight(w, align="bottom_right") == 0.375
    w[0, 4] = 0.0
    w[0, 3] = 0.625
    assert max_future_weight(w, align="bottom_right") == 0.0
    assert max_future_weight(w) == 0.625                        # top-left: key 3 is future for query 0


@pytest.mark.parametrize("leak,atol,expected", [(1e-7, 1e-6, True), (1e-5, 1e-6, False),
                                                (1e-5, 1e-4, True), (0.0, 0.0, True)])
def test_verify_no_lookahead_honours_atol(leak, atol, expected):
    w = make_causal_mask(4).expand(2, 4, 4).clone()
    w[1, 0, 3] = leak
    assert verify_no_lookahead(w, atol=atol) is expected


def test_verify_no_lookahead_default_atol_is_1e_6():
    w = make_causal_mask(3).clone()
    w[0, 1] = 5e-7
    assert verify_no_lookahead(w)
    w[0, 1] = 5e-6
    assert not verify_no_lookahead(w)


# ---------------------------------------------------------------------------------------------
# check_output_invariance


@pytest.mark.parametrize("T,prefix", [(1, 0), (6, 0), (6, 2), (6, 5)])
def test_causal_module_passes_with_a_zero_difference_up_to_the_prefix(gen, mha, T, prefix):
    x = _x(gen, 3, T, E)
    result = check_output_invariance(mha, x, prefix, mask=make_causal_mask(T))
    assert isinstance(result, InvarianceResult)
    assert result.passed and bool(result)
    assert result.prefix == prefix and result.perturbed_from == prefix + 1
    assert result.position_diff.shape == (T,)
    assert torch.all(result.position_diff[: prefix + 1] <= result.atol)
    assert result.max_diff == result.position_diff[: prefix + 1].max().item()
    if prefix < T - 1:
        assert torch.all(result.position_diff[prefix + 1:] > 1e-3), "the future positions did change"


@pytest.mark.parametrize("prefix", [0, 3])
def test_unmasked_module_fails(gen, mha, prefix):
    result = check_output_invariance(mha, _x(gen, 2, 6, E), prefix)
    assert not result.passed and not bool(result)
    assert result.max_diff > 1e-2 and result.max_diff > result.atol


def test_any_callable_works_including_ones_returning_tuples(gen):
    x = _x(gen, 2, 7, 3)
    prefix_sum = check_output_invariance(lambda t: t.cumsum(dim=1), x, 2)
    assert prefix_sum.passed
    suffix_sum = check_output_invariance(lambda t: (t.flip(1).cumsum(1).flip(1), "extra"), x, 2)
    assert not suffix_sum.passed
    shift_left = check_output_invariance(lambda t: [torch.roll(t, -1, dims=1)], x, 2)
    assert not shift_left.passed and shift_left.position_diff[2] > 0
    assert shift_left.position_diff[:2].max() == 0


def test_callable_wrapping_a_causal_module_passes(gen, mha):
    result = check_output_invariance(lambda t: mha(t, is_causal=True, need_weights=False), _x(gen, 2, 6, E), 1)
    assert result.passed and result.max_diff <= 1e-5


def test_causal_model_without_a_mask_argument_is_called_plainly(gen):
    calls = []

    def model(t):
        calls.append(t.shape)
        return t.cumsum(1)

    check_output_invariance(model, _x(gen, 1, 4, 2), 0)
    assert calls == [(1, 4, 2), (1, 4, 2)]


def test_mask_is_passed_to_callables(gen):
    seen = []

    def model(t, mask):
        seen.append(mask)
        return t

    keep = make_causal_mask(4)
    check_output_invariance(model, _x(gen, 1, 4, 2), 1, mask=keep)
    assert len(seen) == 2 and all(m is keep for m in seen)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_default_atol_depends_on_dtype(gen, dtype):
    result = check_output_invariance(lambda t: t.cumsum(1), _x(gen, 2, 5, 3, dtype=dtype), 1)
    assert result.atol == default_atol(dtype)
    assert result.passed


def test_default_tolerances_grow_as_precision_drops():
    tols = [default_atol(d) for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16)]
    assert tols == sorted(tols) and len(set(tols)) == 4


def test_explicit_atol_overrides_the_default(gen):
    x = _x(gen, 1, 5, 3)
    leaky = lambda t: t + 1e-4 * t[:, -1:].sum()                # noqa: E731  a tiny leak from the last position
    assert not check_output_invariance(leaky, x, 1).passed      # float32 default: 1e-5
    loose = check_output_invariance(leaky, x, 1, atol=1.0)
    assert loose.passed and loose.atol == 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_causal_module_passes_with_its_own_tolerance(gen, dtype):
    torch.manual_seed(0)
    m = MultiHeadAttention(E, H).to(dtype).eval()
    result = check_output_invariance(lambda t: m(t, is_causal=True), _x(gen, 2, 6, E, dtype=dtype), 2)
    assert result.passed and result.atol == default_atol(dtype)


def test_two_dimensional_input_is_a_batch_of_one(gen):
    result = check_output_invariance(lambda t: t.cumsum(1), _x(gen, 6, 3), 2)
    assert result.passed and result.position_diff.shape == (6,)


def test_the_input_is_not_modified_and_generators_make_it_reproducible(gen, mha):
    x = _x(gen, 2, 6, E)
    before = x.clone()
    a = check_output_invariance(mha, x, 1, generator=torch.Generator().manual_seed(5))
    b = check_output_invariance(mha, x, 1, generator=torch.Generator().manual_seed(5))
    c = check_output_invariance(mha, x, 1, generator=torch.Generator().manual_seed(6))
    assert torch.equal(x, before)
    assert torch.equal(a.position_diff, b.position_diff)
    assert not torch.equal(a.position_diff, c.position_diff)


@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
@pytest.mark.parametrize("T, S", [(300, 300), (130, 260), (260, 130), (129, 1)])
def test_max_future_weight_is_the_largest_future_magnitude_across_row_blocks(T, S, align):
    from attention import make_causal_mask
    gen = torch.Generator().manual_seed(T * S)
    w = torch.randn(2, T, S, generator=gen)
    future = ~make_causal_mask(T, S, dtype=torch.bool, align=align)
    want = w.abs()[..., future].max().item() if future.any() else 0.0
    assert max_future_weight(w, align=align) == want
    rows, cols = future.nonzero(as_tuple=True)
    if len(rows):                                               # a planted future weight wins
        i, j = rows[len(rows) // 2].item(), cols[len(cols) // 2].item()
        w[1, i, j] = -50.0
        assert max_future_weight(w, align=align) == 50.0
    w[0][~future] = 100.0                                       # past and present never count
    assert max_future_weight(w, align=align) == (50.0 if len(rows) else 0.0)
