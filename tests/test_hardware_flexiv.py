"""Real Flexiv Rizon robots. Skipped unless ROBOT_RUNTIME_FLEXIV names a robot config (e.g. a copy of
flexiv.yaml or bi_flexiv.yaml with the robots' serial numbers) and flexivrdk is installed (`pip install
'.[flexiv]'`); set ROBOT_RUNTIME_ALLOW_MOTION=1 with the workspace clear to also let a policy swing the TCPs
by 1 cm for three seconds."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from cli import run_cli, serve_policy

from robot_runtime.config import RobotConfig, load_robot_config
from robot_runtime.session import Session

pytestmark = pytest.mark.hardware


@pytest.fixture
def flexiv_config() -> RobotConfig:
    robot = os.environ.get("ROBOT_RUNTIME_FLEXIV")
    if not robot:
        pytest.skip("no Rizon attached: set ROBOT_RUNTIME_FLEXIV to a robot config with its serial numbers (e.g. bi_flexiv)")
    if importlib.util.find_spec("flexivrdk") is None:
        pytest.skip("flexivrdk is not installed: pip install '.[flexiv]'")
    return load_robot_config(robot)


def test_real_rizons_connect_observe_only_and_report_a_pose_in_their_workspace(flexiv_config: RobotConfig) -> None:
    with Session(flexiv_config, sim=False, with_leaders=False, with_cameras=False, observe_only=True) as session:
        follower = session.follower
        state = follower.read()
        assert np.isfinite(state.position).all()
        for pose in follower.poses:
            position = state.position[pose.position]
            lower, upper = follower.lower_limits[pose.position], follower.upper_limits[pose.position]
            assert np.all(position >= lower - 0.05) and np.all(position <= upper + 0.05), (position, lower, upper)
            assert np.linalg.norm(state.position[pose.rotation]) <= np.pi + 1e-6
    assert all(report.parked is None for report in session.stop_reports), "observed robots are never moved"


def test_real_rizons_follow_a_small_swing(flexiv_config: RobotConfig, tmp_path: Path) -> None:
    if os.environ.get("ROBOT_RUNTIME_ALLOW_MOTION") != "1":
        pytest.skip("the robots would move: set ROBOT_RUNTIME_ALLOW_MOTION=1 with the workspace clear")
    with serve_policy("--script", "--amplitude", "0.01", "--fps", f"{flexiv_config.fps:g}") as served:
        result = run_cli(
            "run", "--robot", os.environ["ROBOT_RUNTIME_FLEXIV"], "--no-cameras", "--set", "policy.cameras={}",
            "--mode", "autonomous", "--task_prompt", "swing", "--policy", served.url, "--duration", "3",
            timeout_s=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "parked, torque safe" in result.stderr and "Traceback" not in result.stderr
