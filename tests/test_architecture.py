"""The dependency rules of the design, checked on the source: apps reach arm families only through
ArmFamily, and every control command runs through the one runner."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from apps.runner import ControlCommand

ROOT = Path(__file__).resolve().parents[1]
CONTROL_COMMANDS = ("teleop", "record", "replay", "run")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "apps").glob("*.py")), ids=lambda p: p.name)
def test_no_app_module_imports_a_driver_package(path: Path) -> None:
    drivers = sorted(m for m in imported_modules(path) if m == "drivers" or m.startswith("drivers."))
    assert not drivers, f"{path.name} imports {drivers}: reach a family through ArmFamily"


CORE_PACKAGES = ("robot_runtime", "cameras", "recorders", "calibration", "drivers")
CORE_FILES = sorted(p for package in CORE_PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_packages_never_import_apps(path: Path) -> None:
    apps = sorted(m for m in imported_modules(path) if m == "apps" or m.startswith("apps."))
    assert not apps, f"{path.relative_to(ROOT)} imports {apps}: dependencies point from apps to the core"


@pytest.mark.parametrize("name", CONTROL_COMMANDS)
def test_every_control_command_runs_through_the_runner(name: str) -> None:
    module = importlib.import_module(f"apps.{name}")
    classes = [v for v in vars(module).values() if isinstance(v, type)]
    commands = [c for c in classes if issubclass(c, ControlCommand) and c is not ControlCommand]
    assert len(commands) == 1, f"apps/{name}.py defines {commands}"
    assert "run_control" in (ROOT / "apps" / f"{name}.py").read_text()
