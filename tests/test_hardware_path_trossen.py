"""WidowX AI setups the way a user with arms runs them: no --sim, each arm's controller a simulator started
on its own (the vendor's trossen-arm-sim, or `robot-runtime sim trossen`) on a loopback address, the config
pointed at it with --set or a YAML. Every control command runs, moves (or provably does not move) the
followers, and ends with every arm stopped safely."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hardware_path import (
    BI_WIDOWXAI,
    WIDOWXAI,
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
    trossen_controllers,
)


def test_teleop_against_two_separately_started_vendor_controllers_runs_and_parks_both_arms(tmp_path: Path) -> None:
    with trossen_controllers(2) as (follower_ip, leader_ip):
        result = run_control(
            "teleop", "--robot", "widowxai", "--no-cameras", "--set", f"followers.0.ip={follower_ip}",
            "--set", f"leaders.0.ip={leader_ip}", "--duration", "2", stats_json=tmp_path / "teleop.json",
        )  # fmt: skip
    result.assert_clean()
    assert result.stats["outcome"] == "duration reached"
    assert follower_ip in result.stderr and leader_ip in result.stderr, "the start line names where the arms are"
    result.assert_stopped_safely(WIDOWXAI.followers, WIDOWXAI.leaders)
    assert result.stops()["leader"]["parked"] is True, "a WidowX AI leader holds its motors, so it is parked too"


@pytest.fixture(scope="module")
def widowxai() -> Iterator[SimulatedRobot]:
    """One simulator for the module: after the recording, only the follower is used, whatever the leader does."""
    with simulated_robot(WIDOWXAI.family, WIDOWXAI.robot) as sim:
        yield sim


@pytest.fixture(scope="module")
def recorded(widowxai: SimulatedRobot, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    workdir = tmp_path_factory.mktemp("widowxai-record")
    dataset = workdir / "demo"
    recorded = record_with_demo(widowxai, WIDOWXAI, dataset, workdir, "--no-cameras")
    recorded.result.assert_clean()  # every test using the recording fails here, with the reason, if recording failed
    return recorded


def test_teleop_mirrors_the_demonstrating_leader_and_parks_both_arms(tmp_path: Path) -> None:
    with simulated_robot(WIDOWXAI.family, WIDOWXAI.robot) as sim:
        result, poses = teleop_with_demo(sim, WIDOWXAI, tmp_path)
    result.assert_clean()
    assert result.stats["outcome"] == "duration reached"
    result.assert_stopped_safely(WIDOWXAI.followers, WIDOWXAI.leaders)
    assert_followers_followed(poses, WIDOWXAI)


def test_record_stores_the_demonstration_and_the_dataset_passes_the_check(recorded: Recorded) -> None:
    recorded.result.assert_clean()
    assert all(sent > 0 for sent in recorded.goals_sent.values()), recorded.goals_sent
    recorded.result.assert_stopped_safely(WIDOWXAI.followers, WIDOWXAI.leaders)
    assert recorded.result.stats["episodes in dataset"] == 1
    assert_demonstration_recorded(recorded.dataset, WIDOWXAI)
    assert_dataset_check_passes(recorded.dataset)


def test_replay_drives_the_follower_through_the_recorded_episode(
    widowxai: SimulatedRobot, recorded: Recorded, tmp_path: Path
) -> None:
    result = replay_episode(widowxai, WIDOWXAI, recorded.dataset, tmp_path)
    result.assert_clean()
    assert result.stats["outcome"] == "episode replayed"
    assert_replayed(result, recorded.dataset, WIDOWXAI)
    result.assert_stopped_safely(WIDOWXAI.followers)


def test_run_in_test_mode_logs_the_policy_and_sends_the_follower_nothing(
    widowxai: SimulatedRobot, recorded: Recorded, tmp_path: Path
) -> None:
    assert recorded.goals_sent["follower"] > 0, "the simulator counts the goals a command sends"
    result, rows = run_test_mode(widowxai, WIDOWXAI, tmp_path, amplitude=0.3)
    result.assert_clean()
    policy = [r for r in rows if r["phase"] == "policy" and r["requested"] is not None]
    assert len(policy) > 20 and result.stats["policy_stats"]["chunks"] >= 2
    assert np.ptp([r["requested"] for r in policy], axis=0).max() > 0.5, "the scripted policy asks for motion"
    assert np.ptp([r["state"] for r in policy], axis=0).max() < 0.02, "the follower stayed where it was"


def test_run_autonomous_reproduces_the_served_episode(widowxai: SimulatedRobot, recorded: Recorded, tmp_path: Path) -> None:
    result, rerun = run_autonomous(widowxai, WIDOWXAI, recorded.dataset, tmp_path)
    result.assert_clean()
    assert result.stats["policy_stats"]["rejected_replies"] == 0 and result.stats["safety_interventions"]["rejected"] == 0
    result.assert_stopped_safely(WIDOWXAI.followers)
    assert_reproduced(recorded.dataset, rerun, WIDOWXAI)
    assert_dataset_check_passes(rerun)


def test_bimanual_teleop_mirrors_both_leaders_and_parks_all_four_arms(tmp_path: Path) -> None:
    with simulated_robot(BI_WIDOWXAI.family, BI_WIDOWXAI.robot) as sim:
        result, poses = teleop_with_demo(sim, BI_WIDOWXAI, tmp_path)
    result.assert_clean()
    result.assert_stopped_safely(BI_WIDOWXAI.followers, BI_WIDOWXAI.leaders)
    assert_followers_followed(poses, BI_WIDOWXAI)


def test_bimanual_record_from_the_simulators_written_config_passes_the_check(tmp_path: Path) -> None:
    dataset = tmp_path / "demo"
    with simulated_robot(BI_WIDOWXAI.family, BI_WIDOWXAI.robot, write_config=True) as sim:
        recorded = record_with_demo(sim, BI_WIDOWXAI, dataset, tmp_path, "--no-cameras", episode_time_s=4.0)
    recorded.result.assert_clean()
    recorded.result.assert_stopped_safely(BI_WIDOWXAI.followers, BI_WIDOWXAI.leaders)
    assert_demonstration_recorded(dataset, BI_WIDOWXAI)
    assert_dataset_check_passes(dataset)
