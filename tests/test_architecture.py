"""Packages depend one way (README, "Architecture"): each package imports only the packages below it.

Checked on the source itself (every import statement, including the ones inside functions) and by importing
the light entry points in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "candlecast"

# package -> the candlecast packages it may import (besides itself). ``config`` and ``errors`` are the ground
# floor; ``scores`` and ``calibration`` are pure maths.
ALLOWED: dict[str, set[str]] = {
    "config": {"errors"},
    "errors": set(),
    "scores": set(),
    "paths": {"errors", "scores"},
    "calibration": set(),
    "store": {"config", "errors"},
    "events": {"config", "errors"},
    "models": {"config", "errors", "events", "scores"},
    "ingest": {"config", "errors", "store"},
    "inference": {"config", "errors", "models", "events"},
    "jobs": {
        "config",
        "errors",
        "scores",
        "calibration",
        "paths",
        "store",
        "events",
        "models",
        "inference",
        "cli_options",
    },
    "gateway": {"config", "errors", "store", "paths"},
    "cli_options": set(),
}


def _imports(path: Path) -> set[str]:
    """The candlecast packages (first component below ``candlecast``) that ``path`` imports anywhere."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "candlecast" and len(parts) > 1:
                found.add(parts[1])
    return found


def _package_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_each_module_imports_only_the_packages_below_its_own(path: Path) -> None:
    package = _package_of(path)
    if package not in ALLOWED:  # cli.py and __init__.py sit on top
        return
    wrong = _imports(path) - ALLOWED[package] - {package}
    where = f"{path.relative_to(SRC)} ({package})"
    assert not wrong, f"{where} imports {sorted(wrong)}; allowed: {sorted(ALLOWED[package])}"


def test_every_package_is_placed_in_the_layering() -> None:
    packages = {_package_of(p) for p in _modules()} - {"__init__", "cli"}
    assert packages <= set(ALLOWED), f"add {sorted(packages - set(ALLOWED))} to ALLOWED (and to the README's table)"


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_inference_client_loads_no_server_code_and_no_model_registry() -> None:
    loaded = _loaded_after("import candlecast.inference.client, candlecast.inference.transports")
    assert "fastapi" not in loaded
    assert "candlecast.inference.app" not in loaded
    assert "candlecast.models.registry" not in loaded
    assert "torch" not in loaded


def test_importing_the_gateway_app_loads_no_model_code() -> None:
    loaded = _loaded_after("import candlecast.gateway.app")
    assert "torch" not in loaded
    assert not {m for m in loaded if m.startswith(("candlecast.models", "candlecast.inference", "candlecast.jobs"))}
