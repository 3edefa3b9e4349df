"""A bimanual Flexiv Rizon setup the way a user with robots runs it: no --sim, the robots served by
`robot-runtime sim flexiv` in a process of their own (kinematic Rizon 4 controllers behind the RDK
stand-in), the config pointed at them with --set. Policies drive the TCP poses (metres and rotation
vectors, both arms starting pointed straight down, where a rotation vector flips sign): test mode
commands nothing, autonomous mode follows a served end-effector episode (absolute or as deltas),
replay plays it back, an E-stop stops the run naming it; and `--sim` runs the same with cameras."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cli import serve_policy
from hardware_path import (
    Finished,
    Setup,
    SimulatedRobot,
    assert_dataset_check_passes,
    run_control,
    run_test_mode,
    simulated_robot,
)

from recorders.reader import DatasetReader
from robot_runtime import rotations

BI_FLEXIV = Setup(
    "bi_flexiv", "flexiv", ("left_follower", "right_follower"), (),
    moves=0.01, tracks=0.005, worst_lag=0.02, still=0.0005, goal_writes="motion_commands",
    run_options=("--set", "policy.cameras={}"),
)  # fmt: skip
"""Metres and radians. Without cameras the setup's wrist images give way to the state alone."""
SWING = 0.02
"""The scripted policy's amplitude, in metres and radians alike: 2 cm and 1.1 degrees around the start."""
POSES = ((0, 7), (7, 14))
"""Each arm's values: x, y, z, rotation vector, gripper."""
OPENPI_DELTAS = (
    "policy.actions=[{kind: delta, count: 6}, {kind: absolute, count: 1}, {kind: delta, count: 6}, {kind: absolute, count: 1}]"
)
"""openpi's make_bool_mask(6, -1, 6, -1) as this robot's action kinds."""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedRobot]:
    with simulated_robot(BI_FLEXIV.family, BI_FLEXIV.robot) as served:
        yield served


@pytest.fixture(scope="module")
def taught(sim: SimulatedRobot, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An end-effector episode: a scripted policy swinging both TCPs around their start, recorded by `run --record`."""
    dataset = tmp_path_factory.mktemp("taught") / "swing"
    with serve_policy("--script", "--amplitude", f"{SWING:g}", "--fps", "25") as served:
        result = autonomous(sim, served.url, dataset, tmp_path_factory.mktemp("teach"), seconds=5)
    result.assert_clean()
    result.assert_stopped_safely(BI_FLEXIV.followers)
    assert_dataset_check_passes(dataset)
    return dataset


def autonomous(sim: SimulatedRobot, url: str, dataset: Path, tmp_path: Path, seconds: float, *options: str) -> Finished:
    return run_control(
        "run", *sim.robot_args(BI_FLEXIV.robot), "--no-cameras", *BI_FLEXIV.run_options, *options, "--mode", "autonomous",
        "--task_prompt", "swing", "--policy", url, "--duration", f"{seconds:g}", "--record", str(dataset),
        "--video-codec", "h264", stats_json=tmp_path / "run.json",
    )  # fmt: skip


def distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The largest TCP position distance (m) and geodesic angle (rad) between two rows, over both arms."""
    position = max(float(np.linalg.norm(a[i : i + 3] - b[i : i + 3])) for i, _ in POSES)
    angle = max(rotations.geodesic_rad(a[i + 3 : i + 6], b[i + 3 : i + 6]) for i, _ in POSES)
    return position, angle


def assert_executed_the_served_episode(rerun: Path, taught: Path) -> None:
    """Every target sent once the policy drove is one of the taught episode's actions (the rotations too,
    across the sign flip of their vectors), and the TCPs tracked them: at the lag that fits best, within
    a bound that holds on a loaded machine (docs/benchmarks.md has the idle figures)."""
    served = DatasetReader(taught).episode(0).actions
    episode = DatasetReader(rerun).episode(0)
    sent, states = episode.actions, episode.states
    assert len(sent) > 50, f"only {len(sent)} policy ticks were recorded"
    off = [row for row in sent[2:] if min(max(distances(row, action)) for action in served) > 1e-5]
    assert not off, f"{len(off)} of {len(sent) - 2} targets are no action of the served episode: {off[:3]}"
    flips = [i for i in range(1, len(sent)) if np.abs(sent[i, 3:6] - sent[i - 1, 3:6]).max() > math.pi]
    assert flips, "the swing never crossed the rotation vector's sign flip: the test would not see an element-wise blend"
    best = min(
        (np.array([distances(states[i + lag], sent[i]) for i in range(10, len(sent) - lag)]) for lag in range(6)),
        key=lambda errors: float(np.percentile(errors[:, 0], 95)),
    )
    position_m, angle_rad = np.percentile(best, 95, axis=0)
    assert position_m < BI_FLEXIV.tracks and angle_rad < math.radians(1.0), (position_m, math.degrees(angle_rad))


def test_test_mode_asks_the_policy_and_commands_nothing(sim: SimulatedRobot, tmp_path: Path) -> None:
    result, rows = run_test_mode(sim, BI_FLEXIV, tmp_path, amplitude=SWING)
    result.assert_clean()
    policy_rows = [row for row in rows if row["requested"] is not None]
    assert len(policy_rows) > 20, f"only {len(policy_rows)} policy actions logged"
    moved = max(distances(np.asarray(row["sent"]), np.asarray(row["state"]))[0] for row in policy_rows)
    assert moved > BI_FLEXIV.moves / 2, "the logged targets must show what the arms would have done"
    assert all(stop["parked"] is None and stop["torque_safe"] for stop in result.stats["stop"]), result.stats["stop"]


def test_autonomous_mode_follows_a_served_end_effector_episode(sim: SimulatedRobot, taught: Path, tmp_path: Path) -> None:
    rerun = tmp_path / "rerun"
    seconds = len(DatasetReader(taught).episode(0).actions) / 25 + 1
    with serve_policy("--replay", str(taught), "--horizon", "25") as served:
        result = autonomous(sim, served.url, rerun, tmp_path, seconds)
    result.assert_clean()
    result.assert_stopped_safely(BI_FLEXIV.followers)
    assert result.stats["safety_interventions"]["rejected"] == 0
    assert_executed_the_served_episode(rerun, taught)


def test_a_policy_serving_deltas_has_the_observed_state_added_back(sim: SimulatedRobot, taught: Path, tmp_path: Path) -> None:
    rerun = tmp_path / "rerun"
    seconds = len(DatasetReader(taught).episode(0).actions) / 25 + 1
    with serve_policy("--replay", str(taught), "--horizon", "25", "--deltas", "6,-1,6,-1") as served:
        result = autonomous(sim, served.url, rerun, tmp_path, seconds, "--set", OPENPI_DELTAS)
    result.assert_clean()
    assert_executed_the_served_episode(rerun, taught)


def test_replay_plays_the_episode_back(sim: SimulatedRobot, taught: Path, tmp_path: Path) -> None:
    result = run_control(
        "replay", *sim.robot_args(BI_FLEXIV.robot), "--no-cameras", "--dataset", str(taught), "--episode", "0",
        stats_json=tmp_path / "replay.json",
    )  # fmt: skip
    result.assert_clean()
    result.assert_stopped_safely(BI_FLEXIV.followers)
    frames = len(DatasetReader(taught).episode(0).actions)
    assert result.stats["frames replayed"] == f"{frames} / {frames}"
    errors = dict(part.rsplit(" ", 1) for part in result.stats["max tracking error"].split(", "))
    assert set(errors) == {
        f"{side}_{what}" for side in ("left", "right") for what in ("gripper_width (m)", "tcp position (m)", "tcp rotation (rad)")
    }
    # The taught episode opens with steps of max_step (the scripted swing's clock ran on during the approach), which
    # the arm follows a few ticks behind; after that it tracks within millimetres and a fraction of a degree.
    actions = DatasetReader(taught).episode(0).actions
    largest_step_m = max(float(np.linalg.norm(np.diff(actions[:, i : i + 3], axis=0), axis=1).max()) for i, _ in POSES)
    for name, error in errors.items():
        bound = 0.01 if "rotation" in name else 3 * largest_step_m + BI_FLEXIV.tracks
        assert float(error) < bound, (name, error, bound)


def test_an_estop_pressed_mid_run_stops_it_naming_the_estop(tmp_path: Path) -> None:
    with (
        simulated_robot(BI_FLEXIV.family, BI_FLEXIV.robot) as sim,
        serve_policy("--script", "--amplitude", f"{SWING:g}") as served,
    ):
        result = run_control(
            "run", *sim.robot_args(BI_FLEXIV.robot), "--no-cameras", *BI_FLEXIV.run_options, "--mode", "autonomous",
            "--task_prompt", "swing", "--policy", served.url, "--duration", "20", stats_json=tmp_path / "run.json",
            once_running=lambda: sim.fault("left_follower", "arm", "estop"),
        )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "E-stop" in result.stderr and "Rizon4-000001" in result.stderr, result.stderr
    stops = result.stops()
    assert stops["right_follower"]["parked"] is True and stops["right_follower"]["torque_safe"], stops
    assert stops["left_follower"]["torque_safe"], "an E-stopped Rizon holds on its brakes"


def test_sim_runs_with_its_wrist_cameras(taught: Path, tmp_path: Path) -> None:
    seconds = len(DatasetReader(taught).episode(0).actions) / 25 + 1
    with serve_policy("--replay", str(taught), "--horizon", "25") as served:
        result = run_control(
            "run", "--robot", "bi_flexiv", "--sim", "--mode", "autonomous", "--task_prompt", "swing", "--policy", served.url,
            "--duration", f"{seconds:g}", stats_json=tmp_path / "run.json",
        )  # fmt: skip
    result.assert_clean()
    result.assert_stopped_safely(BI_FLEXIV.followers)
    cameras = {camera["name"]: camera for camera in result.stats["cameras"]["cameras"]}
    assert set(cameras) == {"left_wrist_image", "right_wrist_image"}, cameras
    assert all(camera["frames_delivered"] > 0 and camera["last_error"] is None for camera in cameras.values()), cameras
