"""Simulators stay a leaf layer: stdlib, numpy/scipy and the shared clock only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import vegard.simulators

ALLOWED_THIRD_PARTY = {"numpy", "scipy", "caproto"}
ALLOWED_PROJECT = {"vegard.clock", "vegard.diffraction_geometry", "vegard.motion"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_simulators_import_only_stdlib_numpy_scipy_and_the_clock() -> None:
    folder = Path(vegard.simulators.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        for name in imported_modules(path):
            top = name.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or top in ALLOWED_THIRD_PARTY
                or name in ALLOWED_PROJECT
            )
            assert allowed, f"{path.name} imports {name}"
