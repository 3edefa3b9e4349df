"""Shared fixtures: simulated Feetech buses over real pseudo-terminals, and robot configs on disk; Hypothesis
settings that hold on a loaded machine."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fakes import FakeClock
from hypothesis import HealthCheck, settings

from drivers.feetech.bus import FeetechBus
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import SimServo
from robot_runtime.config import resolve_robot_path

# Hypothesis fails an example slower than 200 ms, and a slow data generation: facts about the machine's load,
# not about the code. Its "ci" profile (CI=true) already drops both; this keeps that profile's other choices.
# Run logs and crash markers of the commands under test go to a folder of this test run, never the user's:
# set before tests/cli.py copies the environment for the commands it starts.
if "ROBOT_RUNTIME_STATE_DIR" not in os.environ:
    os.environ["ROBOT_RUNTIME_STATE_DIR"] = tempfile.mkdtemp(prefix="robot-runtime-state-")
    atexit.register(shutil.rmtree, os.environ["ROBOT_RUNTIME_STATE_DIR"], ignore_errors=True)

settings.register_profile("any-load", parent=settings.default, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("any-load")


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _isolated_calibration_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read or write the user's real LeRobot calibrations."""
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(tmp_path / "lerobot-calibration"))


@pytest.fixture
def so_bus_sim() -> Iterator[FeetechBusSimulator]:
    """Six STS3215 servos with SO-100 ids on one simulated bus."""
    with FeetechBusSimulator(SimServo(m.id) for m in SO_MOTORS) as sim:
        yield sim


@pytest.fixture
def so_bus(so_bus_sim: FeetechBusSimulator) -> Iterator[FeetechBus]:
    bus = FeetechBus(so_bus_sim.port_path, SO_MOTORS, reply_timeout_ms=5, retries=1)
    bus.open()
    yield bus
    bus.close()


@pytest.fixture
def so100_yaml() -> dict:
    return yaml.safe_load(resolve_robot_path("so100").read_text())


@pytest.fixture
def write_robot(tmp_path: Path):
    """Write a robot config dict to a YAML file and return its path."""

    def write(config: dict, name: str = "robot.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write
