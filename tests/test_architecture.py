"""Dependency rules: core/ imports no GUI; the package root imports neither Qt nor torch."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_unetseg.core

GUI = ("napari", "qtpy", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6")


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_core_imports_no_gui():
    modules = [m.name for m in pkgutil.walk_packages(napari_unetseg.core.__path__, "napari_unetseg.core.")]
    assert "napari_unetseg.core.training" in modules
    loaded = _imported_after("; ".join(f"import {m}" for m in modules))
    assert not loaded & set(GUI), loaded & set(GUI)


def test_package_root_and_cli_help_are_light():
    loaded = _imported_after("import napari_unetseg, napari_unetseg.cli")
    assert "torch" not in loaded and not loaded & set(GUI)


LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


@pytest.mark.skipif(not Path(LINT_IMPORTS).exists(), reason="import-linter not installed")
def test_import_linter_contract():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([LINT_IMPORTS], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
