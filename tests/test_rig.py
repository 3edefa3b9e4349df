"""A rig of several arms behaves as one: LeRobot's left_/right_ names, one vector split per arm,
and a stop that reaches every arm, arms on separate transports parking at the same time."""

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from robot_runtime.config import load_robot_config
from robot_runtime.loop import FixedRateLoop
from robot_runtime.rig import Rig, stop_rigs
from robot_runtime.robot import Arm, ArmError, JointSpec, JointState, StopReport
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
    # every 30 Hz slot of the 3 s either ran or is reported missed (a loaded machine skips some, never most)
    assert stats.ticks + stats.missed_deadlines >= 85 and stats.ticks >= 45 and step is not None
    assert np.abs(step.follower.position - step.leader.position).max() < 8.0


# ---- the stop: arms on separate transports park at the same time -------------------------------

WAIT_S = 30.0
"""How long a parking arm waits for the others it must overlap with: only reached when they never come."""


class ParkingArm(Arm):
    """An arm whose park is `park`, run on whatever thread the rig stops it from."""

    joints = (JointSpec("joint", "deg", -90.0, 90.0),)
    park_position = np.zeros(1)
    is_connected = True

    def __init__(self, name: str, transport: str, park: Callable[[], object] = lambda: None) -> None:
        self.name = name
        self._transport = transport
        self._park = park

    @property
    def transport(self) -> str:
        return self._transport

    def _safe_stop(self) -> list[StopReport]:
        self._park()
        return [StopReport(self.name, parked=True, torque_safe=True)]

    def _connect(self, *, observe_only: bool) -> None: ...
    def _set_torque(self, enabled: bool) -> None: ...
    def disconnect(self) -> None: ...

    def read(self) -> JointState:
        raise NotImplementedError

    def _send(self, targets: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def test_four_arms_on_their_own_controllers_park_at_the_same_time_and_report_in_rig_order():
    together = threading.Barrier(4, timeout=WAIT_S)  # breaks, failing each stop, unless all four park at once
    follower = Rig({p: ParkingArm(f"{p}_follower", f"192.168.1.{i}", together.wait) for i, p in ((5, "left"), (4, "right"))})
    leader = Rig({p: ParkingArm(f"{p}_leader", f"192.168.1.{i}", together.wait) for i, p in ((3, "left"), (2, "right"))})
    reports = stop_rigs([follower, leader])
    assert [r.describe() for r in reports] == [
        "left_follower: parked, torque safe",
        "right_follower: parked, torque safe",
        "left_leader: parked, torque safe",
        "right_leader: parked, torque safe",
    ]


def test_a_failing_arm_is_reported_and_keeps_no_other_arm_from_parking():
    together = threading.Barrier(2, timeout=WAIT_S)

    def fail() -> None:
        raise ArmError("right_follower (WidowX AI at 192.168.1.4): no answer")

    rig = Rig({
        "left": ParkingArm("left_follower", "192.168.1.5", together.wait),
        "right": ParkingArm("right_follower", "192.168.1.4", fail),
        "third": ParkingArm("third_follower", "192.168.1.6", together.wait),
    })  # fmt: skip
    left, right, third = rig.safe_stop()
    assert left.parked and left.torque_safe and third.parked and third.torque_safe
    assert (right.arm, right.parked, right.torque_safe) == ("right_follower", False, False)
    assert "192.168.1.4): no answer" in right.detail


def test_arms_sharing_one_bus_take_turns_while_an_arm_on_another_bus_parks_beside_them():
    events: list[str] = []
    alongside = threading.Barrier(2, timeout=WAIT_S)  # the arm on the other bus parks during the first one's park
    second_started = threading.Event()

    def first() -> None:
        events.append("first starts")
        alongside.wait()
        if second_started.wait(timeout=1.0):  # the turn of the second arm on this bus must not come yet
            events.append("second started during the first")
        events.append("first ends")

    def second() -> None:
        second_started.set()
        events.append("second starts")

    rig = Rig({
        "a": ParkingArm("first", "/dev/ttyACM0", first),
        "b": ParkingArm("other_bus", "/dev/ttyACM1", alongside.wait),
        "c": ParkingArm("second", "/dev/ttyACM0", second),
    })  # fmt: skip
    reports = rig.safe_stop()
    assert [(r.arm, r.torque_safe) for r in reports] == [("first", True), ("other_bus", True), ("second", True)]
    assert events == ["first starts", "first ends", "second starts"]
