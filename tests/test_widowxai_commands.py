"""The WidowX AI setups through the commands users run, each arm a trossen-arm-sim controller: bimanual
teleop in the ALOHA joint order, a recording, a policy dry run that commands nothing, a controller fault
and an unreachable controller, all ending with every arm stopped safely."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

from cli import run_cli, serve_policy

from recorders.check import check_dataset
from recorders.reader import DatasetReader
from robot_runtime.config import load_robot_config
from robot_runtime.sim_client import Simulators

JOINTS = (*(f"joint_{i}" for i in range(6)), "left_carriage_joint")
ALOHA_ORDER = [f"{side}_{joint}.pos" for side in ("left", "right") for joint in JOINTS]


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout_s=180)


def test_bimanual_teleop_runs_through_four_simulated_controllers_and_parks_them_all(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    result = cli("teleop", "--robot", "bi_widowxai", "--sim", "--duration", "4", "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    out = json.loads(stats.read_text())
    assert out["outcome"] == "duration reached" and out["loop"]["ticks"] > 60
    assert [s["arm"] for s in out["stop"]] == ["left_follower", "right_follower", "left_leader", "right_leader"]
    assert all(s["parked"] and s["torque_safe"] for s in out["stop"]), out["stop"]


def test_a_recording_stores_the_aloha_joint_order_and_passes_the_check(tmp_path: Path) -> None:
    dataset = tmp_path / "demo"
    result = cli(
        "record", "--robot", "bi_widowxai", "--sim", "--no-cameras", "--dataset", str(dataset), "--task", "hand over",
        "--episode-time", "3", "--reset-time", "0", "--video-codec", "h264",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reader = DatasetReader(dataset)
    assert reader.info["features"]["action"]["names"] == ALOHA_ORDER
    assert reader.info["robot_type"] == "bi_widowxai_follower"
    actions = reader.episode(0).actions
    assert actions[:, 1].max() - actions[:, 1].min() > 0.3, "the demonstration moves joint_1 of the left arm (radians)"
    assert check_dataset(dataset).ok


def test_a_test_mode_run_sends_no_position_goal_to_either_follower(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        simulators = Simulators.start(load_robot_config("bi_widowxai"), stack, with_leaders=False)  # as --sim does
        arms = [simulators.arms[label] for label in ("left_follower", "right_follower")]
        before = [arm.writes()["position_goal_changes"] for arm in arms]
        ips = [f"--set=followers.{i}.ip={arm.address}" for i, arm in enumerate(arms)]
        with serve_policy("--script", "--amplitude", "0.3") as served:
            # No cameras here (the setup's RealSenses are not simulated without --sim), so the custom layout.
            result = cli(
                "run", "--robot", "bi_widowxai", *ips, "--no-cameras", "--set", "policy.preset=custom", "--mode", "test",
                "--task_prompt", "hand over", "--policy", served.url, "--duration", "3",
                "--action-log", str(tmp_path / "log.jsonl"), "--stats-json", str(tmp_path / "stats.json"),
            )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert [arm.writes()["position_goal_changes"] for arm in arms] == before
    out = json.loads((tmp_path / "stats.json").read_text())
    assert out["policy_stats"]["chunks"] >= 2


def test_a_controller_fault_names_the_joint_and_every_other_arm_still_parks(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    result = cli(
        "teleop", "--robot", "bi_widowxai", "--sim", "--no-cameras", "--duration", "20",
        "--sim-fault", "right_follower:joint_2:JOINT_OVERHEATED@2", "--stats-json", str(stats),
    )  # fmt: skip
    assert result.returncode == 1
    assert "joint_2" in result.stderr and "overheated" in result.stderr.lower()
    out = json.loads(stats.read_text())
    assert out["outcome"] == "hardware error"
    stops = {s["arm"]: s for s in out["stop"]}
    assert stops["left_follower"]["parked"] and stops["left_follower"]["torque_safe"]
    assert not stops["right_follower"]["torque_safe"], "a faulted controller is reported as such, not as parked"


def test_an_unreachable_controller_is_a_clear_error_in_bounded_time() -> None:
    started = time.monotonic()
    settings = ("ip=127.0.0.250", "connect_timeout_s=1")
    unreachable = [f"--set={role}.0.{key}" for role in ("followers", "leaders") for key in settings]
    result = cli("teleop", "--robot", "widowxai", "--no-cameras", "--duration", "1", *unreachable)
    elapsed_s = time.monotonic() - started
    assert result.returncode == 1
    assert "127.0.0.250" in result.stderr and "same subnet" in result.stderr
    assert elapsed_s < 30, f"took {elapsed_s:.1f} s"
