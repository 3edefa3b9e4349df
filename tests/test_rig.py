"""A rig of several arms behaves as one: LeRobot's left_/right_ names, one vector split per arm,
and a stop that reaches every arm."""

import time

import numpy as np
import pytest

from robot_runtime.config import load_robot_config
from robot_runtime.loop import FixedRateLoop
from robot_runtime.session import Session
from robot_runtime.teleop import Teleop

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@pytest.fixture
def bimanual():
    config = load_robot_config("bi_so100")
    with Session(config, sim=True) as session:
        yield config, session
    assert len(session.stop_reports) == 4 and all(r.torque_safe for r in session.stop_reports)


def test_feature_names_carry_the_arm_prefix_like_lerobot(bimanual):
    _, session = bimanual
    assert session.follower.feature_names == [f"left_{j}.pos" for j in JOINTS] + [f"right_{j}.pos" for j in JOINTS]
    assert [j.name for j in session.follower.joints][:2] == ["left_shoulder_pan", "left_shoulder_lift"]


def test_one_vector_drives_each_arm_with_its_own_slice(bimanual):
    _, session = bimanual
    rig = session.follower
    start = rig.read().position
    target = start.copy()
    target[0] += 10  # left shoulder_pan only
    target[6 + 5] += 30  # right gripper only
    rig.write(target)
    for _ in range(50):
        if np.allclose(rig.read().position, target, atol=0.5):
            break
        time.sleep(0.02)
    now = rig.split(rig.read().position)
    assert now["left"][0] == pytest.approx(start[0] + 10, abs=0.5)
    assert now["right"][5] == pytest.approx(start[11] + 30, abs=0.5)
    assert np.allclose(now["left"][1:], start[1:6], atol=0.5)


def test_a_wrong_length_vector_is_refused_before_any_arm_moves(bimanual):
    _, session = bimanual
    with pytest.raises(ValueError, match="expected 12 targets"):
        session.follower.write(np.zeros(6))


def test_bimanual_teleop_mirrors_both_arms(bimanual):
    config, session = bimanual
    teleop = Teleop(session.leader, session.follower, config.safety, config.fps)
    teleop.start()
    stats = FixedRateLoop(30).run(teleop.tick, duration_s=3.0)
    step = teleop.last
    assert stats.ticks >= 85
    assert np.abs(step.follower.position - step.leader.position).max() < 8.0
