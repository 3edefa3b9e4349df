"""What only SO-100 setups show on the path users take (no --sim, the buses served by `robot-runtime sim
feetech` in its own process on pseudo-terminals): a motor that stops answering, and a bimanual recording.
The commands every setup runs are in test_hardware_path_commands.py."""

from __future__ import annotations

import re
from pathlib import Path

from hardware_path import (
    BI_SO100,
    SO100,
    assert_dataset_check_passes,
    assert_demonstration_recorded,
    record_with_demo,
    run_control,
    simulated_robot,
)


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
