"""Plain numpy references the long-context tests compare against (no project code inside)."""
from __future__ import annotations

import math

import numpy as np


def np_pool(w: np.ndarray, f: int, reduce: str = "max") -> np.ndarray:
    """Block-reduce the last two dims of ``w (..., T, S)`` over ``f x f`` blocks (``"max"`` or
    ``"mean"``; partial blocks at the far edges reduce over what they hold), as float32."""
    T, S = w.shape[-2:]
    R, C = math.ceil(T / f), math.ceil(S / f)
    lead = w.shape[:-2]
    fill = -np.inf if reduce == "max" else 0.0
    padded = np.full(lead + (R * f, C * f), fill, dtype=np.float64)
    padded[..., :T, :S] = w
    blocks = padded.reshape(lead + (R, f, C, f))
    if reduce == "max":
        out = blocks.max(axis=(-3, -1))
    else:
        held = np.zeros((R * f, C * f))
        held[:T, :S] = 1
        out = blocks.sum(axis=(-3, -1)) / held.reshape(R, f, C, f).sum(axis=(-3, -1))
    return out.astype(np.float32)
