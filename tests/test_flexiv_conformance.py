"""The RDK stand-ins (drivers.flexiv.standin.v1 / v2) against the real flexivrdk wheels: every name a
stand-in exposes, except discover_at, exists in the real module as the same kind, with the same enum values,
method signatures (names and defaults) and fields. The real wheels are read in a subprocess with only the
unpacked wheel on PYTHONPATH (`.ci/flexiv-wheels DIR` unpacks them; ROBOT_RUNTIME_FLEXIV_WHEELS names DIR,
default .cache/flexiv-wheels). No real Robot is ever constructed with a well-formed serial: that would start
network discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flexiv_api import describe

from drivers.flexiv.standin import v1, v2

REPO = Path(__file__).resolve().parent.parent
WHEELS = Path(os.environ.get("ROBOT_RUNTIME_FLEXIV_WHEELS", REPO / ".cache" / "flexiv-wheels"))
STANDINS: dict[str, ModuleType] = {"1.9.4.1": v1, "2.0.0": v2}
EXTRA = {"discover_at"}


def _wheel_dir(version: str) -> Path:
    path = WHEELS / version
    if not (path / "flexivrdk" / "__init__.py").is_file():
        pytest.skip(f"flexivrdk {version} is not unpacked in {path}: run .ci/flexiv-wheels {WHEELS}")
    return path


def _run_real(version: str, code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(_wheel_dir(version))}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO / "tests", capture_output=True, text=True, timeout=120, check=False
    )


@cache
def _real_api(version: str) -> dict[str, Any]:
    result = _run_real(version, "import flexiv_api, sys; sys.exit(flexiv_api.main(['flexivrdk']))")
    assert result.returncode == 0, result.stderr
    api: dict[str, Any] = json.loads(result.stdout)
    return api


@pytest.mark.parametrize("version", STANDINS)
def test_standin_names_exist_in_the_real_rdk_alike(version):
    real = _real_api(version)
    standin = describe(STANDINS[version])
    assert standin["version"] == real["version"] == version
    problems = []
    for name, mine in standin["names"].items():
        theirs = real["names"].get(name)
        if name in EXTRA:
            assert theirs is None, f"{name} is no longer the stand-in's own name"
            continue
        if theirs is None:
            problems.append(f"{name}: not in flexivrdk {version}")
        elif mine["kind"] != theirs["kind"]:
            problems.append(f"{name}: a {mine['kind']} here, a {theirs['kind']} in flexivrdk")
        elif mine["kind"] == "enum":
            problems += [
                f"{name}.{member} = {value}, flexivrdk has {theirs['members'].get(member)}"
                for member, value in mine["members"].items()
                if theirs["members"].get(member) != value
            ]
        elif mine["kind"] == "value" and mine["repr"] != theirs["repr"]:
            problems.append(f"{name} = {mine['repr']}, flexivrdk has {theirs['repr']}")
        elif mine["kind"] == "class":
            problems += _class_problems(name, mine, theirs)
    assert not problems, "\n".join(problems)


def _class_problems(name: str, mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    problems = [f"{name}.{field}: no such field in flexivrdk" for field in mine["fields"] if field not in theirs["fields"]]
    problems += [f"{name}.{other}: no such attribute in flexivrdk" for other in mine["others"] if other not in theirs["others"]]
    for method, signatures in mine["methods"].items():
        real = theirs["methods"].get(method)
        if real is None:
            problems.append(f"{name}.{method}: no such method in flexivrdk")
        elif signatures[0] not in real:
            problems.append(f"{name}.{method}{signatures[0]}: flexivrdk has {' or '.join(real)}")
    return problems


@pytest.mark.parametrize("version", STANDINS)
def test_the_standins_cover_what_a_driver_uses(version):
    """The calls a Rizon driver makes (drivers.flexiv.sdk) are all there, so a gap shows here first."""
    names = describe(STANDINS[version])["names"]
    robot = set(names["Robot"]["methods"])
    assert {
        "__init__", "fault", "ClearFault", "operational", "operational_status", "estop_released", "reduced", "busy",
        "Enable", "Stop", "SwitchMode", "mode", "info", "states", "SendCartesianMotionForce", "SendJointPosition",
        "SetForceControlAxis", "SetMaxContactWrench", "ExecutePrimitive", "primitive_states",
    } <= robot  # fmt: skip
    assert {"__init__", "Enable", "Move", "Stop", "states", "params"} <= set(names["Gripper"]["methods"])
    assert {"Mode", "OperationalStatus", "RobotStates", "RobotInfo", "GripperStates", "GripperParams"} <= set(names)
    if version == "2.0.0":
        assert {"JointGroup", "NrtCartesianCmd", "NrtJointPositionCmd", "PrimitiveArgs"} <= set(names)


SERIAL_ERRORS = """
import json, flexivrdk
out = []
for serial in ("Rizon4", "", "Rizon4-SIM-001", "Foo-123456", "-123456"):
    try:
        flexivrdk.Robot(serial, [], False)
    except Exception as exc:
        out.append([serial, type(exc).__name__, str(exc)])
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", STANDINS)
def test_a_malformed_serial_fails_at_once_as_in_the_real_rdk(version):
    """Only serials refused before any network search: a malformed one (ValueError) or an unknown model."""
    result = _run_real(version, SERIAL_ERRORS)
    assert result.returncode == 0, result.stderr
    real = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r[1] for r in real] == ["ValueError", "ValueError", "ValueError", "RuntimeError", "RuntimeError"]
    for serial, kind, message in real:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the type is what is compared
            STANDINS[version].Robot(serial, [], False)
        assert (type(raised.value).__name__, str(raised.value)) == (kind, message)
