"""The Leak detector above T = 32: the fast verdict (issue 10: "the leak tab goes to T = 128 with the
fast verdict"). Oracles: the exact float64 map (``check_entry`` without ``fast``) at a T just above
the switch, and ``check_entry(..., fast=True)`` with the other relation for a relation change."""
from __future__ import annotations

import html

import panel as pn
import pytest
import torch

from attention.verify import check_entry
from attention.verify.report import EXACT_LIMIT
from attention.zoo import ZOO
from dashboard.leaks import LeakDetector
from dashboard.leaks import plots as leak_plots
from dashboard.leaks.state import BATCH, DIM, EXACT_MAX_SEQ_LEN, MAX_SEQ_LEN
from harness import models_with_class, rendered

T_FAST = EXACT_MAX_SEQ_LEN + 4          # 36: the fast verdict, and the exact map still affordable


def _pairs(report):
    return {(l.out_pos, l.in_pos, l.batch) for l in report.leaks}


def test_the_tab_reaches_t_128_and_switches_to_the_fast_verdict_where_the_cli_does():
    assert MAX_SEQ_LEN == 128 and EXACT_MAX_SEQ_LEN == 32
    assert BATCH * EXACT_MAX_SEQ_LEN * DIM <= EXACT_LIMIT < BATCH * (EXACT_MAX_SEQ_LEN + 1) * DIM
    ld = LeakDetector(model="causal_mha", seq_len=EXACT_MAX_SEQ_LEN)
    assert ld.report.mode == "exact" and not ld.is_fast()
    ld.seq_len = EXACT_MAX_SEQ_LEN + 1
    assert ld.report.mode == "fast" and ld.is_fast()
    assert "(fast verdict)" in leak_plots.map_title(ld.report)
    ld.seq_len = MAX_SEQ_LEN
    assert ld.report.mode == "fast" and ld.report.dep_map.shape == (MAX_SEQ_LEN, MAX_SEQ_LEN)
    with pytest.raises(ValueError, match="seq_len"):
        ld.seq_len = MAX_SEQ_LEN + 1


@pytest.mark.parametrize("name", ["off_by_one_causal_mask", "gpt_block_stack", "cumsum",
                                  "sliding_window_one_too_wide", "batchnorm_over_time_train",
                                  "prefix_lm"])
def test_fast_verdict_in_the_tab_equals_the_exact_map(name):
    ld = LeakDetector(model=name, seq_len=T_FAST)
    exact = check_entry(name, seq_len=T_FAST, dim=DIM, batch=BATCH)           # float64, every row
    got = ld.report
    assert got.mode == "fast" and exact.mode == "exact"
    assert got.passed is exact.passed is (not ZOO[name].buggy)
    assert _pairs(got) == _pairs(exact)
    assert torch.equal(got.dep_map > 0, exact.dep_map > 0)
    assert got.sweep_failures == exact.sweep_failures


def test_at_t_128_a_buggy_model_fails_and_its_twin_passes():
    ld = LeakDetector(model="off_by_one_causal_mask", seq_len=MAX_SEQ_LEN)
    assert not ld.report.passed and ld.report.mode == "fast"
    assert {(l.out_pos, l.in_pos) for l in ld.report.leaks} == {(i, i + 1) for i in range(MAX_SEQ_LEN - 1)}
    assert all(l.magnitude > ld.report.atol for l in ld.report.leaks)          # judged in float64
    ld.model = "causal_mha"
    assert ld.report.passed and ld.report.mode == "fast"


def test_a_relation_change_on_a_fast_map_runs_the_fast_verdict_for_that_relation():
    ld = LeakDetector(model="causal_mha", seq_len=T_FAST)
    assert ld.n_computes == 1 and ld.report.passed
    ld.allowed = "sliding:3"                          # not a re-check of float32 estimates
    fresh = check_entry("causal_mha", seq_len=T_FAST, dim=DIM, batch=BATCH, allowed="sliding:3", fast=True)
    assert ld.n_computes == 2 and not ld.report.passed
    assert _pairs(ld.report) == _pairs(fresh) and ld.report.allowed_name == fresh.allowed_name
    assert torch.equal(ld.report.dep_map, fresh.dep_map)
    assert ld.report.precision == "float32 pattern, float64 leaking rows"
    ld.allowed = "full"
    ld.allowed = "sliding:3"                          # seen before: from the cache
    assert ld.n_computes == 3 and not ld.report.passed


def test_the_view_draws_a_fast_map_and_a_new_one_on_a_relation_change():
    ld = LeakDetector(model="causal_mha", seq_len=T_FAST)     # (T = 128 draws 16384 cells: slow here)
    with rendered(pn.panel(ld)) as page:
        fig = models_with_class(page.doc, "ap-leak-map")[0]
        assert fig.title.text == leak_plots.map_title(ld.report)
        assert fig.title.text.startswith("Dependency map (fast verdict) · causal outlined")
        verdict = models_with_class(page.doc, "ap-leak-verdict")[0]
        assert 'data-verdict="PASS"' in html.unescape(verdict.text)
        ld.allowed = "sliding:2"              # a new map (its float64 rows), written into the figure
        new = models_with_class(page.doc, "ap-leak-map")[0]
        assert new is fig and new.title.text == leak_plots.map_title(ld.report)
        assert 'data-verdict="FAIL"' in html.unescape(verdict.text)
