"""Checks that a model does not look ahead, or more generally sees only what it may.

- :mod:`~attention.verify.lookahead`: ``verify_no_lookahead`` / ``max_future_weight`` read attention
  weights; ``check_output_invariance`` perturbs every position after a prefix and checks that
  outputs ``0..prefix`` do not move.
- :mod:`~attention.verify.dependency`: ``dependency_map``, the exact ``‖∂y_i/∂x_j‖`` map.
- :mod:`~attention.verify.relations`: allowed relations as dense keep-masks.
- :mod:`~attention.verify.leaks`: ``find_leaks`` / ``leaks_in_map``, forbidden dependencies.
- :mod:`~attention.verify.sweep`: ``invariance_sweep``, every prefix in one batched call.
- :mod:`~attention.verify.report`: ``leak_report`` and its ``LeakReport``.
- :mod:`~attention.verify.zoo_check`: ``check_entry``, a report for one bug-zoo model.
- :mod:`~attention.verify.calling`: how every check calls a model (output unwrapping, float64,
  ``NonFiniteError`` for NaN/inf: no verdict).
- CLI: :mod:`~attention.verify.leak_cli` (``--model``), :mod:`~attention.verify.zoo_cli`
  (``--zoo``), :mod:`~attention.verify.cli_setup` (factory, ``--dim``, input, ``--allowed``).

``python -m attention.verify`` runs them over a grid (``--model`` / ``--zoo`` for the leak
detector). This module only re-exports.
"""
from .calling import NonFiniteError, PrecisionWarning, unwrap_output, with_output
from .dependency import dependency_map
from .leaks import Leak, find_leaks, leaks_in_map
from .lookahead import (
    InvarianceResult,
    check_output_invariance,
    default_atol,
    max_future_weight,
    verify_no_lookahead,
)
from .relations import dense_allowed, sweep_checked_prefixes
from .report import LeakReport, leak_report
from .sweep import SweepRun, invariance_sweep
from .zoo_check import check_entry

__all__ = [
    "InvarianceResult",
    "Leak",
    "LeakReport",
    "NonFiniteError",
    "PrecisionWarning",
    "SweepRun",
    "check_entry",
    "check_output_invariance",
    "default_atol",
    "dense_allowed",
    "dependency_map",
    "find_leaks",
    "invariance_sweep",
    "leak_report",
    "leaks_in_map",
    "max_future_weight",
    "sweep_checked_prefixes",
    "unwrap_output",
    "verify_no_lookahead",
    "with_output",
]
