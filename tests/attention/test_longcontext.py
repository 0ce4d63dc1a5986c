"""attention.longcontext: tiled, device-side pooled maps, zoom windows, rows and cells against the full map.

The oracle is the full ``(..., H, T, S)`` map of ``scaled_dot_product_attention`` (itself tested
against PyTorch's SDPA), pooled in numpy the way ``dashboard/plots.py`` pools it today.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from attention import (
    MultiHeadAttention,
    attention_row,
    attention_window,
    exact_weight,
    make_causal_mask,
    max_future_weight,
    pooled_attention_maps,
    resolve_device,
    scaled_dot_product_attention,
    sliding_window,
)
from attention.longcontext import TILE_BYTES
from _reference import np_pool

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ROOT = Path(__file__).resolve().parents[2]


def _qk(gen, lead, T, S, D=8, kv_heads=None):
    *batch, H = lead
    q = torch.randn(*batch, H, T, D, generator=gen)
    k = torch.randn(*batch, kv_heads or H, S, D, generator=gen)
    return q, k


def _keep(mask, T, S):
    """The dense keep-mask ``(T, S)`` (or the tensor itself) that the oracle gets for ``mask``."""
    if mask == "causal":
        return make_causal_mask(T, S, dtype=torch.bool)
    if callable(mask) and not isinstance(mask, torch.Tensor):
        return mask(0, 0, torch.arange(T)[:, None], torch.arange(S)[None, :])
    return mask


def _full(q, k, mask=None, scale=None):
    """The full map ``(..., H, T, S)`` from the library's own explicit attention (keys repeated for GQA)."""
    H, K = q.shape[-3], k.shape[-3]
    k = k.repeat_interleave(H // K, dim=-3)
    _, w = scaled_dot_product_attention(q, k, k, mask=_keep(mask, q.shape[-2], k.shape[-2]), scale=scale)
    return w



def _masks(T, S, gen):
    padding = torch.arange(S) < max(1, S - 2)                   # (S,): the last two keys are padding
    return {"none": None, "causal": "causal", "padding": padding, "window": sliding_window(3)}


# ---------------------------------------------------------------------------------------------
# pooled maps


@pytest.mark.parametrize("lead", [(1,), (3,), (2, 3)])
@pytest.mark.parametrize("T,S", [(1, 1), (37, 37), (20, 9), (9, 20)])
@pytest.mark.parametrize("pixels", [1, 4, 10, 64])
@pytest.mark.parametrize("mask_name", ["none", "causal", "padding", "window"])
def test_pooled_maps_equal_numpy_max_pooling_of_the_full_map(gen, lead, T, S, pixels, mask_name):
    q, k = _qk(gen, lead, T, S)
    mask = _masks(T, S, gen)[mask_name]
    pm = pooled_attention_maps(q, k, mask=mask, pixels=pixels, tile=5)
    f = math.ceil(max(T, S) / pixels)
    assert pm.factor == f and pm.exact == (f == 1)
    assert pm.maps.dtype == torch.float32 and pm.maps.device.type == "cpu"
    assert pm.maps.shape == (*lead, math.ceil(T / f), math.ceil(S / f))
    np.testing.assert_allclose(pm.maps.numpy(), np_pool(_full(q, k, mask).numpy(), f), atol=1e-6)


@pytest.mark.parametrize("tile", [None, 1, 3, 8, 1000])
@pytest.mark.parametrize("mask", [None, "causal"])
def test_tile_size_does_not_change_the_maps(gen, tile, mask):
    q, k = _qk(gen, (4,), 50, 50)
    ref = pooled_attention_maps(q, k, mask=mask, pixels=50, tile=50).maps
    for pixels in (50, 12):
        pm = pooled_attention_maps(q, k, mask=mask, pixels=pixels, tile=tile)
        want = torch.from_numpy(np_pool(ref.numpy(), pm.factor))
        torch.testing.assert_close(pm.maps, want)


@pytest.mark.parametrize("T,S", [(37, 37), (20, 9)])
@pytest.mark.parametrize("mask", [None, "causal"])
def test_mean_pooling_averages_only_real_positions(gen, T, S, mask):
    q, k = _qk(gen, (2,), T, S)
    pm = pooled_attention_maps(q, k, mask=mask, pixels=5, reduce="mean")
    np.testing.assert_allclose(pm.maps.numpy(), np_pool(_full(q, k, mask).numpy(), pm.factor, "mean"),
                               atol=1e-6)


@pytest.mark.parametrize("lead", [(3,), (2, 3)])
@pytest.mark.parametrize("mask", [None, "causal"])
def test_mean_heads_pools_the_mean_of_the_heads_maps(gen, lead, mask):
    T = 23
    q, k = _qk(gen, lead, T, T, kv_heads=None)
    mean = _full(q, k, mask).mean(dim=-3, keepdim=True).numpy()          # (..., 1, T, T)
    for pixels in (T, 6):
        pm = pooled_attention_maps(q, k, mask=mask, pixels=pixels, tile=4, mean_heads=True)
        assert pm.maps.shape == (*lead[:-1], 1, math.ceil(T / pm.factor), math.ceil(T / pm.factor))
        np.testing.assert_allclose(pm.maps.numpy(), np_pool(mean, pm.factor), atol=1e-6)
    win = attention_window(q, k, q_range=(5, 17), k_range=(2, 11), mask=mask, mean_heads=True)
    np.testing.assert_allclose(win.maps.numpy(), mean[..., 5:17, 2:11], atol=1e-6)
    with pytest.raises(TypeError, match="expected mean_heads to be a bool"):
        pooled_attention_maps(q, k, mean_heads=1)


def test_all_blocked_query_row_is_zero_not_nan(gen):
    T = S = 12
    q, k = _qk(gen, (2,), T, S)
    keep = torch.ones(T, S, dtype=torch.bool)
    keep[4] = False                                             # query 4 may attend to nothing
    for pixels in (12, 3):
        maps = pooled_attention_maps(q, k, mask=keep, pixels=pixels).maps
        assert not maps.isnan().any()
    exact = pooled_attention_maps(q, k, mask=keep).maps
    assert (exact[:, 4] == 0).all() and (attention_row(q, k, 4, mask=keep) == 0).all()
    torch.testing.assert_close(exact.sum(-1)[:, 5], torch.ones(2))


def test_grouped_query_keys_equal_repeated_keys(gen):
    q, k = _qk(gen, (6,), 16, 16, kv_heads=2)                   # query heads 0-2 read key head 0
    pm = pooled_attention_maps(q, k, mask="causal", pixels=16)
    torch.testing.assert_close(pm.maps, pooled_attention_maps(
        q, k.repeat_interleave(3, dim=0), mask="causal", pixels=16).maps)
    torch.testing.assert_close(pm.maps, _full(q, k, "causal"))


def test_scale_argument_is_used(gen):
    q, k = _qk(gen, (2,), 10, 10)
    torch.testing.assert_close(pooled_attention_maps(q, k, scale=0.3, pixels=10).maps,
                               _full(q, k, scale=0.3))


@pytest.mark.parametrize("T,S", [(1, 1), (30, 30), (12, 30), (30, 12)])
@pytest.mark.parametrize("mask_name", ["none", "causal", "padding", "window"])
@pytest.mark.parametrize("tile", [1, 7, None])
def test_max_future_weight_equals_the_full_maps(gen, T, S, mask_name, tile):
    q, k = _qk(gen, (2, 3), T, S)
    mask = _masks(T, S, gen)[mask_name]
    full = _full(q, k, mask)
    pm = pooled_attention_maps(q, k, mask=mask, pixels=4, tile=tile)
    assert pm.max_future_weight == pytest.approx(max_future_weight(full), abs=1e-6)
    if mask_name in ("causal", "window"):
        assert pm.max_future_weight == 0.0


def test_window_max_future_weight_covers_its_rows_and_every_key(gen):
    q, k = _qk(gen, (2,), 30, 30)
    full = _full(q, k)
    future = full * ~make_causal_mask(30, dtype=torch.bool)     # only cells j > i
    win = attention_window(q, k, q_range=(10, 20), k_range=(0, 5), pixels=30)
    assert win.max_future_weight == pytest.approx(float(future[:, 10:20].max()), abs=1e-6)


def test_bounds_say_which_positions_each_pixel_covers(gen):
    q, k = _qk(gen, (1,), 10, 7)
    pm = pooled_attention_maps(q, k, pixels=3)                  # f = ceil(10 / 3) = 4
    assert pm.factor == 4 and pm.maps.shape == (1, 3, 2)
    assert pm.q_bounds.tolist() == [[0, 4], [4, 8], [8, 10]]
    assert pm.k_bounds.tolist() == [[0, 4], [4, 7]]
    assert pm.image_bounds == (-0.5, -0.5, 7.5, 11.5)
    assert (pm.q_range, pm.k_range, pm.reduce) == ((0, 10), (0, 7), "max")


# ---------------------------------------------------------------------------------------------
# zoom windows, rows, cells


@pytest.mark.parametrize("mask", [None, "causal", "window"])
@pytest.mark.parametrize("q_range,k_range", [((0, 64), (0, 64)), ((10, 30), (5, 41)), ((63, 64), (0, 1)),
                                             ((40, 50), (45, 64))])
def test_zoom_window_equals_the_slice_of_the_full_map(gen, mask, q_range, k_range):
    T = S = 64
    mask = sliding_window(3) if mask == "window" else mask
    q, k = _qk(gen, (3,), T, S)
    full = _full(q, k, mask)                                    # (H, T, S), rows over all S keys
    (q0, q1), (k0, k1) = q_range, k_range
    win = attention_window(q, k, mask=mask, q_range=q_range, k_range=k_range, pixels=64, tile=7)
    assert win.exact and (win.q_range, win.k_range) == (q_range, k_range)
    torch.testing.assert_close(win.maps, full[:, q0:q1, k0:k1])


def test_zoom_window_too_big_for_the_pixels_is_pooled_from_its_corner(gen):
    q, k = _qk(gen, (2,), 64, 64)
    win = attention_window(q, k, mask="causal", q_range=(10, 40), k_range=(3, 23), pixels=8)
    assert win.factor == 4 and win.maps.shape == (2, 8, 5)
    assert win.q_bounds[0].tolist() == [10, 14] and win.k_bounds[-1].tolist() == [19, 23]
    want = np_pool(_full(q, k, "causal")[:, 10:40, 3:23].numpy(), 4)
    np.testing.assert_allclose(win.maps.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("mask", [None, "causal"])
@pytest.mark.parametrize("i", [0, 1, 1023, 2047])
def test_selected_query_row_is_exact_at_long_T(gen, mask, i):
    q, k = _qk(gen, (2,), 2048, 2048)                           # the full map is 2 x 2048 x 2048
    torch.testing.assert_close(attention_row(q, k, i, mask=mask), _full(q, k, mask)[:, i])


@pytest.mark.parametrize("lead", [(3,), (2, 3)])
def test_row_and_cell_keep_the_batch_and_head_dims(gen, lead):
    q, k = _qk(gen, lead, 9, 11)
    full = _full(q, k, "causal")
    row = attention_row(q, k, 6, mask="causal")
    assert row.shape == (*lead, 11)
    torch.testing.assert_close(row, full[..., 6, :])
    for i, j in [(6, 2), (6, 6), (6, 7), (0, 10)]:             # (6, 7), (0, 10): blocked -> 0
        torch.testing.assert_close(exact_weight(q, k, i, j, mask="causal"), full[..., i, j])


# ---------------------------------------------------------------------------------------------
# devices


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask", [None, "causal", "padding"])
def test_every_function_gives_the_same_result_on_each_available_device(gen, device, mask):
    T = S = 40
    q, k = _qk(gen, (2, 3), T, S)
    mask = torch.arange(S) < 30 if mask == "padding" else mask
    full = _full(q, k, mask)
    on_dev = dict(mask=mask.to(device) if isinstance(mask, torch.Tensor) else mask)
    qd, kd = q.to(device), k.to(device)
    for args, kw in (((qd, kd), on_dev), ((q, k), dict(on_dev, device=device))):  # tensors there, or moved
        pm = pooled_attention_maps(*args, pixels=10, **kw)
        assert pm.maps.device.type == "cpu"
        np.testing.assert_allclose(pm.maps.numpy(), np_pool(full.numpy(), 4), atol=1e-5)
        win = attention_window(*args, q_range=(5, 25), k_range=(0, 20), **kw)
        torch.testing.assert_close(win.maps, full[..., 5:25, 0:20], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(attention_row(*args, 17, **kw), full[..., 17, :], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(exact_weight(*args, 17, 3, **kw), full[..., 17, 3], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_library_attention_runs_on_each_available_device(gen, device):
    q, k = _qk(gen, (2,), 6, 6)
    keep = make_causal_mask(6, dtype=torch.bool)
    out, w = scaled_dot_product_attention(q.to(device), k.to(device), k.to(device), mask=keep.to(device))
    assert w.device.type == device
    torch.testing.assert_close(w.cpu(), _full(q, k, "causal"), atol=1e-5, rtol=1e-4)
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 6, 8, generator=gen)
    want = mha(x, is_causal=True)
    got = mha.to(device)(x.to(device), is_causal=True)
    assert got[1].device.type == device
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, atol=1e-5, rtol=1e-4)


def test_resolve_device_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_resolve_device_cuda_without_a_gpu_says_so():
    with pytest.raises(ValueError, match=r"expected a usable CUDA device but found device='cuda'.*"
                                         r"torch.cuda.is_available\(\) is False"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="usable CUDA device"):
        pooled_attention_maps(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), device="cuda")


@pytest.mark.parametrize("device", ["gpu", "mps", "tpu:0", 3])
def test_resolve_device_rejects_unknown_names(device):
    with pytest.raises(ValueError, match=r"expected device 'auto', 'cpu' or 'cuda' but found"):
        resolve_device(device)


# ---------------------------------------------------------------------------------------------
# bad input


def _bad_cases():
    q, k = torch.zeros(2, 8, 4), torch.zeros(2, 6, 4)
    return [
        (lambda: pooled_attention_maps(q[0], k), r"expected q of shape \(H, T, D\) or \(B, H, T, D\) but found \(8, 4\)"),
        (lambda: pooled_attention_maps(q, k[0]), r"expected k of shape \(H, S, D\) or \(B, H, S, D\) but found \(6, 4\)"),
        (lambda: pooled_attention_maps(q[None], k), r"expected k with 4 dims like q \(1, 2, 8, 4\) but found k \(2, 6, 4\)"),
        (lambda: pooled_attention_maps(q, torch.zeros(2, 6, 5)), r"expected q and k to share the head size D but found q \(2, 8, 4\) and k \(2, 6, 5\)"),
        (lambda: pooled_attention_maps(torch.zeros(3, 8, 4), k), r"expected k with H=3 heads \(or a divisor of H: grouped-query\) but found k \(2, 6, 4\)"),
        (lambda: pooled_attention_maps(q[None].expand(2, -1, -1, -1), k[None].expand(3, -1, -1, -1)),
         r"expected q and k with the same batch size B but found q \(2, 2, 8, 4\) and k \(3, 2, 6, 4\)"),
        (lambda: pooled_attention_maps(q, k, pixels=0), r"expected pixels >= 1 but found pixels=0"),
        (lambda: pooled_attention_maps(q, k, tile=0), r"expected tile >= 1 but found tile=0"),
        (lambda: pooled_attention_maps(q, k, reduce="sum"), r"expected reduce to be one of \('max', 'mean'\) but found 'sum'"),
        (lambda: pooled_attention_maps(q, k, mask="future"), r"expected mask None, 'causal', a keep-mask tensor or a mask_mod but found mask='future'"),
        (lambda: pooled_attention_maps(q, k, mask=torch.ones(8, 7)), r"expected mask broadcastable to the scores' shape \(H, T, S\) = \(2, 8, 6\) but found \(8, 7\)"),
        (lambda: pooled_attention_maps(q, k, mask=torch.full((8, 6), float("-inf"))), r"additive mask"),
        (lambda: attention_window(q, k, q_range=(0, 9), k_range=(0, 6)), r"expected q_range = \(start, stop\) with 0 <= start < stop <= T = 8 but found q_range=\(0, 9\)"),
        (lambda: attention_window(q, k, q_range=(5, 2), k_range=(0, 6)), r"expected q_range = \(start, stop\) with 0 <= start < stop <= T = 8 but found q_range=\(5, 2\) \(reversed\?\)"),
        (lambda: attention_window(q, k, q_range=(0, 8), k_range=(-1, 3)), r"expected k_range = \(start, stop\) with 0 <= start < stop <= S = 6 but found k_range=\(-1, 3\)"),
        (lambda: attention_window(q, k, q_range=(0, 8), k_range=(3, 3)), r"k_range=\(3, 3\) \(reversed\?\)"),
        (lambda: attention_window(q, k, q_range=(0, 8), k_range=4), r"expected k_range = \(start, stop\) .* but found k_range=4"),
        (lambda: attention_window(q, k, q_range=(0, 8), k_range=(0, 6), pixels=-2), r"expected pixels >= 1 but found pixels=-2"),
        (lambda: attention_row(q, k, 8), r"expected i in 0..7 but found i=8"),
        (lambda: attention_row(q, k, -1), r"expected i in 0..7 but found i=-1"),
        (lambda: exact_weight(q, k, 0, 6), r"expected j in 0..5 but found j=6"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_input_names_the_argument_and_what_was_expected(case):
    call, match = _bad_cases()[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call", [
    lambda: pooled_attention_maps(torch.zeros(2, 8, 4, dtype=torch.long), torch.zeros(2, 8, 4)),
    lambda: pooled_attention_maps([[0.0]], torch.zeros(2, 8, 4)),
    lambda: pooled_attention_maps(torch.zeros(2, 8, 4), torch.zeros(2, 8, 4), pixels=2.5),
    lambda: attention_row(torch.zeros(2, 8, 4), torch.zeros(2, 8, 4), True),
])
def test_wrong_types_raise_type_error(call):
    with pytest.raises(TypeError, match=r"expected (q|pixels|i) to be"):
        call()


# ---------------------------------------------------------------------------------------------
# memory: T = 4096, H = 16, D = 16 never holds the 1 GiB (H, T, T) map

def _bench():
    """benchmarks/bench_longcontext.py, which owns the peak-RSS measurement (``peak_rss``)."""
    spec = importlib.util.spec_from_file_location("bench_longcontext", ROOT / "benchmarks" / "bench_longcontext.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_at_T4096_is_bounded_by_the_tile_not_the_map():
    full = 16 * 4096 * 4096 * 4                                 # the (H, T, T) float32 map: 1 GiB
    peak_rss = _bench().peak_rss                                # pooled maps + one row, fresh process
    base, peak = peak_rss(16, 4096)                             # default tile: TILE_BYTES of scores
    assert peak - base <= 4 * TILE_BYTES + 32 * 2**20, f"peak RSS grew {(peak - base) / 2**20:.0f} MiB"
    assert peak - base < full / 16
    rows = 4 * TILE_BYTES // (16 * 4096 * 4)                    # a tile four times the default
    base_big, peak_big = peak_rss(16, 4096, tile=rows)
    assert peak_big - base_big > peak - base                    # the peak follows the tile size
