"""Shared fixtures for the whole test suite (keep this file small)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Every process a test starts (servers, notebook kernels, CLIs) imports this checkout first.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
# Served apps preload all-MiniLM-L6-v2 after their first page (~6 CPU-s per server process):
# off for the suite's servers, except where a test turns it on to check it.
os.environ["AP_PRELOAD"] = "0"
sys.path.insert(0, str(ROOT / "tests" / "browser"))          # _harness, shared by browser and notebook tests


@pytest.fixture
def gen() -> torch.Generator:
    """A CPU generator seeded with 0: tests draw their random tensors from it, not the global RNG."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium for the whole test session, shared by the browser and notebook
    tests (playwright's sync API allows one running instance per process)."""
    from _harness import BrowserSetupError, launch_chromium
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        try:
            b = launch_chromium(pw)
        except (BrowserSetupError, PlaywrightError) as exc:
            pytest.fail(f"cannot start chromium for the browser tests: {exc}", pytrace=False)
        yield b
        b.close()
