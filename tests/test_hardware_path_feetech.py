"""SO-100 setups the way a user with arms runs them: no --sim, the buses served by `robot-runtime sim feetech`
in its own process on pseudo-terminals, the config pointed at them with --set. Every control command
runs, moves (or provably does not move) the follower, and ends with every arm stopped safely."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hardware_path import (
    BI_SO100,
    SO100,
    Recorded,
    SimulatedRobot,
    assert_dataset_check_passes,
    assert_demonstration_recorded,
    assert_followers_followed,
    assert_replayed,
    assert_reproduced,
    record_with_demo,
    replay_episode,
    run_autonomous,
    run_control,
    run_test_mode,
    simulated_robot,
    teleop_with_demo,
)


@pytest.fixture(scope="module")
def so100() -> Iterator[SimulatedRobot]:
    """One simulator for the module: after the recording, only the follower is used, whatever the leader does."""
    with simulated_robot(SO100.family, SO100.robot) as sim:
        yield sim


@pytest.fixture(scope="module")
def recorded(so100: SimulatedRobot, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    workdir = tmp_path_factory.mktemp("so100-record")
    dataset = workdir / "demo"
    recorded = record_with_demo(so100, SO100, dataset, workdir, "--no-cameras")
    recorded.result.assert_clean()  # every test using the recording fails here, with the reason, if recording failed
    return recorded


def test_teleop_mirrors_the_demonstrating_leader_and_parks_the_follower(tmp_path: Path) -> None:
    with simulated_robot(SO100.family, SO100.robot) as sim:
        result, poses = teleop_with_demo(sim, SO100, tmp_path)
    result.assert_clean()
    assert result.stats["outcome"] == "duration reached"
    result.assert_stopped_safely(SO100.followers, SO100.leaders)
    assert_followers_followed(poses, SO100)


def test_record_stores_the_demonstration_and_the_dataset_passes_the_check(recorded: Recorded) -> None:
    recorded.result.assert_clean()
    assert all(sent > 0 for sent in recorded.goals_sent.values()), recorded.goals_sent
    recorded.result.assert_stopped_safely(SO100.followers, SO100.leaders)
    assert recorded.result.stats["episodes in dataset"] == 1
    assert_demonstration_recorded(recorded.dataset, SO100)
    assert_dataset_check_passes(recorded.dataset)


def test_replay_drives_the_follower_through_the_recorded_episode(
    so100: SimulatedRobot, recorded: Recorded, tmp_path: Path
) -> None:
    result = replay_episode(so100, SO100, recorded.dataset, tmp_path)
    result.assert_clean()
    assert result.stats["outcome"] == "episode replayed"
    assert_replayed(result, recorded.dataset, SO100)
    result.assert_stopped_safely(SO100.followers)


def test_run_in_test_mode_logs_the_policy_and_sends_the_follower_nothing(
    so100: SimulatedRobot, recorded: Recorded, tmp_path: Path
) -> None:
    assert recorded.goals_sent["follower"] > 0, "the simulator counts the goals a command sends"
    result, rows = run_test_mode(so100, SO100, tmp_path, amplitude=20.0)
    result.assert_clean()
    policy = [r for r in rows if r["phase"] == "policy" and r["requested"] is not None]
    assert len(policy) > 20 and result.stats["policy_stats"]["chunks"] >= 2
    assert np.ptp([r["requested"] for r in policy], axis=0).max() > SO100.moves, "the scripted policy asks for motion"
    assert np.ptp([r["state"] for r in policy], axis=0).max() < 1.0, "the follower stayed where it was"
    assert "follower: not parked, torque safe (observed only: nothing was written)" in result.stderr


def test_run_autonomous_reproduces_the_served_episode(so100: SimulatedRobot, recorded: Recorded, tmp_path: Path) -> None:
    result, rerun = run_autonomous(so100, SO100, recorded.dataset, tmp_path)
    result.assert_clean()
    assert result.stats["policy_stats"]["rejected_replies"] == 0 and result.stats["safety_interventions"]["rejected"] == 0
    result.assert_stopped_safely(SO100.followers)
    assert_reproduced(recorded.dataset, rerun, SO100)
    assert_dataset_check_passes(rerun)


def test_a_follower_motor_that_stops_answering_is_named_and_both_arms_end_torque_safe(tmp_path: Path) -> None:
    with simulated_robot(SO100.family, SO100.robot) as sim:
        port = sim.arms["follower"]
        result = run_control(
            "teleop", "--robot", SO100.robot, *sim.overrides, "--no-cameras", "--duration", "30",
            stats_json=tmp_path / "teleop.json", once_running=lambda: sim.fault("follower", "wrist_flex", "no_reply"),
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(rf"error: motor 4 \(wrist_flex\) did not answer on {re.escape(port)}", " ".join(result.stderr.split())), (
        result.stderr
    )
    assert result.stats["outcome"] == "hardware error"
    assert [stop["torque_safe"] for stop in result.stats["stop"]] == [True, True]


def test_bimanual_record_mirrors_both_leaders_and_the_dataset_passes_the_check(tmp_path: Path) -> None:
    dataset = tmp_path / "demo"
    with simulated_robot(BI_SO100.family, BI_SO100.robot) as sim:
        recorded = record_with_demo(sim, BI_SO100, dataset, tmp_path, "--no-cameras", episode_time_s=4.0)
    recorded.result.assert_clean()
    recorded.result.assert_stopped_safely(BI_SO100.followers, BI_SO100.leaders)
    assert_demonstration_recorded(dataset, BI_SO100)
    assert_dataset_check_passes(dataset)
