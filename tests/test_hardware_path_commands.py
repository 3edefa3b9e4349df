"""Each single-arm setup the way a user with arms runs it: no --sim, its arms served by `robot-runtime sim
FAMILY` in a process of its own on their real transports (pseudo-terminals for Feetech buses, loopback
addresses for WidowX AI controllers), the config pointed at them with --set. Every control command runs,
moves (or provably does not move) the follower, and ends with every arm stopped safely."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hardware_path import (
    SO100,
    WIDOWXAI,
    Recorded,
    Setup,
    SimulatedRobot,
    assert_dataset_check_passes,
    assert_demonstration_recorded,
    assert_followers_followed,
    assert_replayed,
    assert_reproduced,
    record_with_demo,
    replay_episode,
    run_autonomous,
    run_test_mode,
    simulated_robot,
    teleop_with_demo,
)


@pytest.fixture(scope="module", params=[SO100, WIDOWXAI], ids=lambda setup: setup.robot)
def setup(request: pytest.FixtureRequest) -> Setup:
    return request.param


@pytest.fixture(scope="module")
def sim(setup: Setup) -> Iterator[SimulatedRobot]:
    """One simulator per setup: after the recording, only the follower is used, whatever the leader does."""
    with simulated_robot(setup.family, setup.robot) as sim:
        yield sim


@pytest.fixture(scope="module")
def recorded(setup: Setup, sim: SimulatedRobot, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    workdir = tmp_path_factory.mktemp(f"{setup.robot}-record")
    recorded = record_with_demo(sim, setup, workdir / "demo", workdir, "--no-cameras")
    recorded.result.assert_clean()  # every test using the recording fails here, with the reason, if recording failed
    return recorded


def test_teleop_mirrors_the_demonstrating_leader_and_parks_the_follower(setup: Setup, tmp_path: Path) -> None:
    with simulated_robot(setup.family, setup.robot) as sim:
        result, poses = teleop_with_demo(sim, setup, tmp_path)
    result.assert_clean()
    assert result.stats["outcome"] == "duration reached"
    result.assert_stopped_safely(setup.followers, setup.leaders)
    assert_followers_followed(poses, setup)


def test_record_stores_the_demonstration_and_the_dataset_passes_the_check(setup: Setup, recorded: Recorded) -> None:
    assert all(sent > 0 for sent in recorded.goals_sent.values()), recorded.goals_sent
    recorded.result.assert_stopped_safely(setup.followers, setup.leaders)
    assert recorded.result.stats["episodes in dataset"] == 1
    assert_demonstration_recorded(recorded.dataset, setup)
    assert_dataset_check_passes(recorded.dataset)


def test_replay_drives_the_follower_through_the_recorded_episode(
    setup: Setup, sim: SimulatedRobot, recorded: Recorded, tmp_path: Path
) -> None:
    result = replay_episode(sim, setup, recorded.dataset, tmp_path)
    result.assert_clean()
    assert result.stats["outcome"] == "episode replayed"
    assert_replayed(result, recorded.dataset, setup)
    result.assert_stopped_safely(setup.followers)


def test_run_in_test_mode_logs_the_policy_and_sends_the_follower_nothing(
    setup: Setup, sim: SimulatedRobot, recorded: Recorded, tmp_path: Path
) -> None:
    assert recorded.goals_sent["follower"] > 0, "the simulator counts the goals a command sends"
    result, rows = run_test_mode(sim, setup, tmp_path, amplitude=setup.moves)
    result.assert_clean()
    policy = [r for r in rows if r["phase"] == "policy" and r["requested"] is not None]
    assert len(policy) > 20 and result.stats["policy_stats"]["chunks"] >= 2
    assert np.ptp([r["requested"] for r in policy], axis=0).max() > setup.moves, "the scripted policy asks for motion"
    assert np.ptp([r["state"] for r in policy], axis=0).max() < setup.still, "the follower stayed where it was"
    assert "follower: not parked, torque safe (observed only: nothing was written)" in result.stderr


def test_run_autonomous_reproduces_the_served_episode(
    setup: Setup, sim: SimulatedRobot, recorded: Recorded, tmp_path: Path
) -> None:
    result, rerun = run_autonomous(sim, setup, recorded.dataset, tmp_path)
    result.assert_clean()
    assert result.stats["policy_stats"]["rejected_replies"] == 0 and result.stats["safety_interventions"]["rejected"] == 0
    result.assert_stopped_safely(setup.followers)
    assert_reproduced(recorded.dataset, rerun, setup)
    assert_dataset_check_passes(rerun)
