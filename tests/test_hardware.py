"""Real SO-100/SO-101 arms. Skipped unless ROBOT_RUNTIME_HARDWARE names a robot config (e.g. so101 or
a YAML path) whose ports exist; set ROBOT_RUNTIME_ALLOW_MOTION=1 to also run a short teleop and a short
recording (with the config's cameras attached)."""

import os
from pathlib import Path

import numpy as np
import pytest
from cli import run_cli, serve_policy

from calibration.procedure import diff
from calibration.store import MotorCalibration, load_calibration
from drivers.feetech.bus import FeetechBus
from drivers.feetech.calibration import FeetechCalibrationBus, calibration_path
from drivers.feetech.config import FeetechArmConfig
from recorders.check import check_dataset
from robot_runtime.config import load_robot_config
from robot_runtime.loop import FixedRateLoop
from robot_runtime.session import Session
from robot_runtime.teleop import Teleop

pytestmark = pytest.mark.hardware


@pytest.fixture(autouse=True)
def _real_calibration_root(monkeypatch):
    """Hardware tests use the user's own LeRobot calibrations, not the isolated test folder."""
    if "ROBOT_RUNTIME_HARDWARE_CALIBRATION" in os.environ:
        monkeypatch.setenv("HF_LEROBOT_CALIBRATION", os.environ["ROBOT_RUNTIME_HARDWARE_CALIBRATION"])
    else:
        monkeypatch.delenv("HF_LEROBOT_CALIBRATION", raising=False)


@pytest.fixture
def hardware_config():
    robot = os.environ.get("ROBOT_RUNTIME_HARDWARE")
    if not robot:
        pytest.skip("no arm attached: set ROBOT_RUNTIME_HARDWARE to a robot config (e.g. so101) to run on hardware")
    config = load_robot_config(robot)
    ports = [a.config.port for a in config.followers + config.leaders if isinstance(a.config, FeetechArmConfig)]
    missing = [port for port in ports if not Path(port).exists()]
    if missing:
        pytest.skip(f"ports {missing} of {robot} are not present")
    return config


def test_real_arms_connect_and_report_positions_inside_their_limits(hardware_config):
    with Session(hardware_config, sim=False) as session:
        assert session.leader is not None, "the config lists leader arms"
        for rig in (session.follower, session.leader):
            state = rig.read()
            assert np.all(state.position >= rig.lower_limits - 5) and np.all(state.position <= rig.upper_limits + 5)
    assert all(r.torque_safe for r in session.stop_reports)


def test_real_teleop_runs_for_three_seconds(hardware_config):
    if os.environ.get("ROBOT_RUNTIME_ALLOW_MOTION") != "1":
        pytest.skip("the arm would move: set ROBOT_RUNTIME_ALLOW_MOTION=1 with the workspace clear")
    with Session(hardware_config, sim=False) as session:
        assert session.leader is not None, "the config lists leader arms"
        teleop = Teleop(session.leader, session.follower, hardware_config.safety, hardware_config.fps)
        teleop.start()
        stats = FixedRateLoop(hardware_config.fps).run(teleop.tick, duration_s=3)
    assert stats.ticks > 0.9 * 3 * hardware_config.fps
    assert all(r.torque_safe for r in session.stop_reports)


def test_real_recording_of_a_short_episode_passes_the_dataset_check(hardware_config, tmp_path):
    """Records with whatever cameras the config lists (they must be attached), then checks every frame."""
    if os.environ.get("ROBOT_RUNTIME_ALLOW_MOTION") != "1":
        pytest.skip("the arm would move: set ROBOT_RUNTIME_ALLOW_MOTION=1 with the workspace clear")
    robot = os.environ["ROBOT_RUNTIME_HARDWARE"]
    dataset = tmp_path / "hardware"
    result = run_cli(
        "record",
        "--robot",
        robot,
        "--dataset",
        str(dataset),
        "--task",
        "hardware check",
        "--episode-time",
        "3",
        "--reset-time",
        "0",
        timeout_s=300,
    )
    assert result.returncode == 0, result.stderr
    report = check_dataset(dataset)
    assert report.ok, report.problems
    assert report.frames >= 0.9 * 3 * hardware_config.fps


def test_real_test_mode_run_leaves_the_arm_where_it_was(hardware_config, tmp_path):
    """A dry run against a scripted server: the follower is only read, so no motion permission is needed."""
    robot = os.environ["ROBOT_RUNTIME_HARDWARE"]
    with Session(hardware_config, sim=False, with_leaders=False, with_cameras=False, observe_only=True) as session:
        before = session.follower.read().position
    with serve_policy("--script") as served:
        result = run_cli(
            "run",
            "--robot",
            robot,
            "--mode",
            "test",
            "--task_prompt",
            "hardware check",
            "--policy",
            served.url,
            "--duration",
            "3",
            "--action-log",
            str(tmp_path / "log.jsonl"),
            timeout_s=120,
        )
    assert result.returncode == 0, result.stderr
    with Session(hardware_config, sim=False, with_leaders=False, with_cameras=False, observe_only=True) as session:
        after = session.follower.read().position
    assert np.abs(after - before).max() < 2.0


def test_real_arms_hold_the_calibration_that_calibrate_would_show_as_matching(hardware_config):
    """Read-only: what each bus arm's motors hold equals its calibration file, as the calibrate TUI diffs them."""
    for spec in hardware_config.followers + hardware_config.leaders:
        config = spec.config
        bus = FeetechBus(config.port, config.arm_model.motors, baudrate=config.baudrate)
        bus.open()
        try:
            target = FeetechCalibrationBus(bus)
            assert target.missing_motors() == []
            file = load_calibration(calibration_path(config, None))
            held = {m: MotorCalibration(i, file[m].drive_mode, *target.held()[m]) for m, i in target.motor_ids.items()}
        finally:
            bus.close()
        assert diff(file, held) == [], f"{spec.label}: the motors do not hold {calibration_path(config, None)}"
