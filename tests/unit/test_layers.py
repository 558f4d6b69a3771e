"""The package layers (README "Layout"): ``devkit`` sits above ``labeling`` and ``training`` and may
import both; ``training`` may import ``labeling``; ``labeling`` imports neither, and neither imports
``devkit`` — so the Lambda, portal and training images ship without the demo harness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"labeling": ("devkit", "training"), "training": ("devkit",)}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _modules(package: str) -> list[Path]:
    # training/notebooks/ holds documents that use all three packages, as a user's script would.
    return [p for p in sorted((REPO / package).rglob("*.py")) if "notebooks" not in p.parts]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_from_the_layers_above_it(package: str) -> None:
    offences = [f"{path.relative_to(REPO)}:{line} imports {name}"
                for path in _modules(package) for line, name in _imports(path)
                if name.split(".")[0] in FORBIDDEN[package]]
    assert offences == []


def test_the_scan_sees_an_offending_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from devkit.synth import generate_dataset\n")
    assert _imports(bad) == [(2, "devkit.synth")]


def test_the_shipped_packages_hold_no_devkit_module() -> None:
    # What the Lambda archives and the portal image copy (labeling/, training/) has no demo harness.
    names = {p.stem for package in ("labeling", "training") for p in (REPO / package).rglob("*.py")}
    assert not names & {"synth", "synth_series", "samples", "simulate", "simulate_series", "demo",
                        "simulated", "demo_labels"}
