"""An SO-100 arm on the simulated bus: LeRobot calibrations reused, units as LeRobot's, limits
enforced by the driver, and a park path that works with a motor gone."""

import contextlib
import json
import time

import numpy as np
import pytest

from calibration.store import CalibrationError, calibration_root
from drivers.feetech.arm import FeetechArm
from drivers.feetech.sim_setup import SIM_CALIBRATION
from robot_runtime.config import load_robot_config


@pytest.fixture
def sim_arms():
    """The so100 setup's follower and leader on simulators; yields (config, {label: SimulatedArm})."""
    config = load_robot_config("so100")
    assert config.sim is not None, "so100.yaml has a sim section"
    sim = config.sim
    with contextlib.ExitStack() as stack:
        arms = config.followers + config.leaders
        simulated = {spec.label: spec.family.simulate([spec], sim, stack)[0] for spec in arms}
        yield config, simulated


@pytest.fixture
def follower(sim_arms):
    _, simulated = sim_arms
    arm = FeetechArm(simulated["follower"].config, "follower")
    arm.connect()
    yield arm
    arm.disconnect()


def test_joints_carry_units_and_calibrated_limits(follower):
    assert follower.joint_names == ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    assert [j.unit for j in follower.joints] == ["deg"] * 5 + ["percent"]
    _, lo, hi = SIM_CALIBRATION["shoulder_pan"]
    assert follower.joints[0].lower == pytest.approx((lo - (lo + hi) / 2) * 360 / 4095)
    assert (follower.joints[5].lower, follower.joints[5].upper) == (0.0, 100.0)


def test_reads_start_at_the_simulated_rest_pose_in_lerobot_units(follower, sim_arms):
    config, _ = sim_arms
    expected = [config.sim.start_pose[n] for n in follower.joint_names]
    state = follower.read()
    assert np.allclose(state.position, expected, atol=0.2)
    assert abs(state.timestamp_s - time.monotonic()) < 1.0


def test_write_moves_the_arm_and_returns_what_was_sent(follower):
    target = follower.read().position + np.array([10, -5, 5, 0, 15, 20])
    result = follower.write(target)
    assert np.allclose(result.sent, target, atol=0.1)
    assert not result.clipped.any()
    deadline = time.monotonic() + 2
    while not np.allclose(follower.read().position, target, atol=0.3) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert np.allclose(follower.read().position, target, atol=0.3)


def test_targets_beyond_the_limits_are_clipped_and_reported(follower):
    target = follower.read().position.copy()
    target[0] = 500.0
    result = follower.write(target)
    assert result.sent[0] == pytest.approx(follower.joints[0].upper, abs=0.1)
    assert list(result.clipped) == [True, False, False, False, False, False]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_targets_never_reach_a_motor(follower, sim_arms, bad):
    before = follower.read().position
    target = before.copy()
    target[3] = bad
    with pytest.raises(ValueError, match="non-finite target for wrist_flex; nothing was sent"):
        follower.write(target)
    time.sleep(0.1)
    assert np.allclose(follower.read().position, before, atol=0.2)


def test_wrong_number_of_targets_is_refused(follower):
    with pytest.raises(ValueError, match="expected 6 targets"):
        follower.write(np.zeros(5))


def test_safe_stop_glides_to_the_park_pose_then_torque_goes_off(follower):
    park = follower.park_position.copy()
    follower.write(follower.read().position + np.array([20, 10, -10, 0, 0, 30]))
    time.sleep(0.3)
    follower.read()
    follower.safe_stop()
    assert np.allclose(follower.read().position, park, atol=3.0)
    assert follower.bus.sync_read("Torque_Enable") == dict.fromkeys(follower.joint_names, 0)


def test_safe_stop_parks_the_others_when_a_motor_is_gone(follower, sim_arms):
    _, simulated = sim_arms
    park = follower.park_position.copy()
    follower.write(follower.read().position + np.array([20, 0, 0, 0, 0, 0]))
    time.sleep(0.3)
    follower.read()
    simulated["follower"].inject("wrist_roll", "no_reply")
    follower.safe_stop()
    values = follower.bus.sync_read("Present_Position", ["shoulder_pan"])
    assert values  # the others still answer
    assert follower.bus.sync_read("Torque_Enable", ["shoulder_pan", "gripper"]) == {"shoulder_pan": 0, "gripper": 0}
    position = follower._norm.to_units(np.array([values["shoulder_pan"], 0, 0, 0, 0, 0]))[0]
    assert position == pytest.approx(park[0], abs=3.0)


def test_connect_configures_follower_registers_like_lerobot(follower):
    assert follower.bus.sync_read("P_Coefficient") == dict.fromkeys(follower.joint_names, 16)
    assert follower.bus.read("Max_Torque_Limit", "gripper") == 500
    assert follower.bus.read("Overload_Torque", "gripper") == 25
    assert follower.bus.sync_read("Torque_Enable") == dict.fromkeys(follower.joint_names, 1)
    assert follower.bus.sync_read("Lock") == dict.fromkeys(follower.joint_names, 1)


def test_leader_connects_with_torque_off(sim_arms):
    _, simulated = sim_arms
    leader = FeetechArm(simulated["leader"].config, "leader")
    leader.connect()
    try:
        assert leader.bus.sync_read("Torque_Enable") == dict.fromkeys(leader.joint_names, 0)
    finally:
        leader.disconnect()


def test_a_calibration_in_lerobots_default_folder_is_found(sim_arms):
    _, simulated = sim_arms
    sim_config = simulated["follower"].config
    lerobot_file = calibration_root() / "robots" / "so_follower" / f"{sim_config.id}.json"
    lerobot_file.parent.mkdir(parents=True)
    lerobot_file.write_text((sim_config.calibration_dir / f"{sim_config.id}.json").read_text())
    arm = FeetechArm(sim_config.model_copy(update={"calibration_dir": None}), "follower")
    assert arm.calibration_path == lerobot_file
    arm.connect()
    arm.disconnect()


def test_a_missing_calibration_says_where_it_looked_and_what_to_do(sim_arms):
    _, simulated = sim_arms
    config = simulated["follower"].config.model_copy(update={"calibration_dir": None, "id": "nobody"})
    missing = r"no calibration for id 'nobody' \(looked for .*so_follower/nobody\.json.*lerobot-calibrate"
    with pytest.raises(CalibrationError, match=missing):
        FeetechArm(config, "follower")


def test_a_calibration_the_motors_do_not_hold_is_refused(sim_arms, tmp_path):
    _, simulated = sim_arms
    config = simulated["follower"].config
    path = config.calibration_dir / f"{config.id}.json"
    data = json.loads(path.read_text())
    data["elbow_flex"]["homing_offset"] += 100
    path.write_text(json.dumps(data))
    arm = FeetechArm(config, "follower")
    with pytest.raises(
        CalibrationError, match=r"motor 'elbow_flex' .* does not hold the calibration .*Homing_Offset file -312 motor -412"
    ):
        arm.connect()
    assert not arm.bus.is_open


def test_a_calibration_for_other_motors_is_refused(sim_arms):
    _, simulated = sim_arms
    config = simulated["follower"].config
    path = config.calibration_dir / f"{config.id}.json"
    data = json.loads(path.read_text())
    del data["gripper"]
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"lists motors .* expected"):
        FeetechArm(config, "follower")
