"""WidowX AI setups the way a user with arms runs them: no --sim, each arm's controller a simulator started
on its own (the vendor's trossen-arm-sim, or `robot-runtime sim trossen`) on a loopback address, the config
pointed at it with --set or a YAML. Every control command runs, moves (or provably does not move) the
followers, and ends with every arm stopped safely. The commands every setup runs are in
test_hardware_path_commands.py; these are the vendor's own controllers and the bimanual setup."""

from __future__ import annotations

from pathlib import Path

from hardware_path import (
    BI_WIDOWXAI,
    WIDOWXAI,
    assert_dataset_check_passes,
    assert_demonstration_recorded,
    assert_followers_followed,
    record_with_demo,
    run_control,
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
