"""NaN and inf never read as "no dependency": every check refuses to give a verdict and names where.

NaN makes every comparison false, so a NaN dependency or difference would look clean. The model of
issue 10: a reversed cumsum (it looks ahead) whose first output row is NaN.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attention.verify import (
    NonFiniteError,
    check_output_invariance,
    dependency_map,
    find_leaks,
    invariance_sweep,
    leak_report,
    leaks_in_map,
)
from attention.zoo import ZOO


class Poisoned(nn.Module):
    """A zoo model whose output is ``value`` at position ``pos`` of every batch item."""

    def __init__(self, name: str = "reversed_cumsum", value: float = float("nan"), pos: int = 0) -> None:
        super().__init__()
        self.inner, self.value, self.pos = ZOO[name].build(8, 0), value, pos

    def forward(self, x):
        y = self.inner(x).clone()
        y[:, self.pos] = self.value
        return y


def _nan_grad(x):
    """Finite output, NaN gradient: the unused branch of where() is the sqrt of a negative number."""
    return torch.where(x > 0, x.sqrt(), x).cumsum(dim=1)


@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("inf"), "inf"), (-float("inf"), "inf")])
@pytest.mark.parametrize("check", [dependency_map, find_leaks, leak_report, invariance_sweep])
def test_non_finite_output_is_no_verdict_naming_the_positions(check, value, kind, gen):
    x = torch.randn(2, 6, 8, generator=gen)
    with pytest.raises(NonFiniteError, match=rf"model output holds {kind} at \(batch b, position t\) = "
                                             r"\(0, 3\), \(1, 3\): .*no verdict") as info:
        check(Poisoned(value=value, pos=3), x)
    assert info.value.where == "model output" and info.value.positions == [(0, 3), (1, 3)]


def test_reversed_cumsum_with_a_nan_row_is_not_a_pass_even_for_a_causal_model(gen):
    x = torch.randn(2, 6, 8, generator=gen)
    for name in ("reversed_cumsum", "cumsum"):                       # leaking and correct alike
        with pytest.raises(NonFiniteError):
            leak_report(Poisoned(name), x)


def test_nan_in_the_dependency_map_with_a_finite_output_is_no_verdict(gen):
    x = torch.randn(1, 5, 3, generator=gen)
    assert bool(torch.isfinite(_nan_grad(x.double())).all())
    with pytest.raises(NonFiniteError, match=r"dependency map holds NaN at \(batch b, output i, input j\)"):
        dependency_map(_nan_grad, x)
    with pytest.raises(NonFiniteError, match=r"dependency map holds NaN"):
        find_leaks(_nan_grad, x)


def test_leaks_in_map_refuses_a_map_with_nan_instead_of_returning_no_leaks():
    dep = torch.ones(4, 4, dtype=torch.float64).tril()
    dep[1, 3] = float("nan")                                         # a forbidden pair, unknown size
    with pytest.raises(NonFiniteError, match=r"dependency map holds NaN at \(output i, input j\) = \(1, 3\)"):
        leaks_in_map(dep)
    dep3 = dep.expand(2, 4, 4).clone()
    with pytest.raises(NonFiniteError, match=r"\(batch b, output i, input j\) = \(0, 1, 3\), \(1, 1, 3\)"):
        leaks_in_map(dep3)


def test_nan_only_in_the_sweep_copies_is_no_verdict(gen):
    x = torch.randn(1, 5, 4, generator=gen)

    def nan_when_perturbed(z):                                       # finite on x, NaN on the copies
        y = z.cumsum(dim=1)
        return torch.where((z - x.to(z.dtype)).abs().amax() > 0, y * float("nan"), y)

    with pytest.raises(NonFiniteError, match=r"model output in the prefix sweep holds NaN at "
                                             r"\(copy L, position t <= L\)"):
        invariance_sweep(nan_when_perturbed, x)


def test_check_output_invariance_fails_rather_than_passes_on_nan(gen):
    x = torch.randn(2, 6, 8, generator=gen)
    r = check_output_invariance(Poisoned("cumsum"), x, 3)
    assert not r.passed


def test_finite_models_still_pass_and_report_their_precision(gen):
    x = torch.randn(2, 6, 8, generator=gen)
    r = leak_report(ZOO["cumsum"].build(8, 0), x)
    assert r.passed and r.precision == "float64" and r.sweep_dtype == "float32"
    assert r.to_dict()["precision"] == {"dependency_map": "float64", "sweep": "float32"}
