"""Shared fixtures for the whole test suite (keep this file small)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A CPU generator seeded with 0: tests draw their random tensors from it, not the global RNG."""
    return torch.Generator().manual_seed(0)
