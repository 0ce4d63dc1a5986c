"""Argument checks shared by the library's modules (ints, alignments).

Errors name the argument, what was expected and what was found.
"""
from __future__ import annotations

__all__ = ["ALIGNS", "check_positive_int"]

ALIGNS = ("top_left", "bottom_right")
"""Where a causal diagonal sits: ``"top_left"`` (``tril(ones(T, S))``) or ``"bottom_right"``."""


def check_positive_int(name: str, value: object) -> int:
    """``value`` if it is an ``int >= 1`` (not a bool); else a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {name} to be an int but found {type(value).__name__}")
    if value < 1:
        raise ValueError(f"expected {name} >= 1 but found {name}={value}")
    return value
