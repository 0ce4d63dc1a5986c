"""The import rules of docs/ARCHITECTURE.md, enforced by import-linter (contracts in pyproject.toml)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(*args: str) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"lint-imports not found next to {sys.executable}: install the test extra "
                    f"(pip install -e '.[test]')")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_every_import_contract_is_kept():
    run = _lint_imports()
    assert run.returncode == 0, f"lint-imports failed:\n{run.stdout}\n{run.stderr}"
    assert "0 broken" in run.stdout


def test_lint_imports_sees_the_imports_it_judges(tmp_path):
    # A contract that the real tree breaks (masks imports materialize_mask from mask_mods): if the
    # linter did not see imports, every contract above would pass without proving anything.
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["attention"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "must break"\ntype = "forbidden"\n'
        'source_modules = ["attention.masks"]\nforbidden_modules = ["attention.mask_mods"]\n'
    )
    run = _lint_imports("--config", str(config))
    assert run.returncode == 1, f"expected a broken contract:\n{run.stdout}\n{run.stderr}"
    assert "must break BROKEN" in run.stdout
