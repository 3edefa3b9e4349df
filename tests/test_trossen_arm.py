"""WidowX AI arms on the real trossen_arm driver against trossen-arm-sim controllers (one process per
arm, each on its own loopback address): motion, limits enforced before the wire, observe-only,
controller faults, reconnection, unreachable controllers, firmware mismatch, and two arms at once."""

import contextlib
import math
import time
from collections.abc import Callable

import numpy as np
import pytest
from pydantic import ValidationError
from trossen_arm_sim import TrossenArmSimServer, WidowXSim

from drivers.trossen import FAMILY
from drivers.trossen.arm import TrossenArm
from drivers.trossen.config import JOINT_NAMES, TrossenArmConfig
from drivers.trossen.sim_setup import SimServerProcess, _free_host
from robot_runtime.config import ArmSpec, DemoConfig, SimConfig
from robot_runtime.robot import ArmError, ObserveOnlyError

START = dict(zip(JOINT_NAMES, (0.0, 0.6, 0.5, 0.0, 0.0, 0.0, 0.01), strict=True))
SIM = SimConfig(
    start_pose=START,
    demo=DemoConfig(
        hold_s=0.1, segment_s=0.6, waypoints=[{**START, "joint_0": 0.6, "joint_2": 0.9, "left_carriage_joint": 0.03}]
    ),
)
READ_BACK_TOLERANCE = np.array([0.01] * 6 + [0.001])  # rad, m


def _spec(end_effector: str = "wxai_v0_follower", prefix: str = "") -> ArmSpec:
    config = TrossenArmConfig(end_effector=end_effector, ip="192.168.1.2", connect_timeout_s=10.0)  # loopback, loaded machine
    return ArmSpec(role=config.role, prefix=prefix, family=FAMILY, config=config)


@pytest.fixture
def stack():
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def simulate(stack):
    def start(*specs: ArmSpec):
        try:
            return FAMILY.simulate(list(specs), SIM, stack)
        except RuntimeError as exc:
            pytest.skip(f"the WidowX AI simulator cannot start here: {exc}")

    return start


@pytest.fixture
def connect(stack):
    """Connect an arm on a simulated controller; always disconnected, so the next test's client is served."""

    def connect_arm(simulated, name: str = "follower", **kwargs) -> TrossenArm:
        arm = TrossenArm(simulated.config, name)
        arm.connect(**kwargs)
        stack.callback(arm.disconnect)
        return arm

    return connect_arm


def _settle(read: Callable[[], np.ndarray], target: np.ndarray, timeout_s: float = 10.0) -> np.ndarray:
    """The position `read` gives once it is within tolerance of `target`, or at the deadline (a bound, not a
    speed: the simulated controller runs slower than real time on a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        position = read()
        if (np.abs(position - target) <= READ_BACK_TOLERANCE).all() or time.monotonic() > deadline:
            return position
        time.sleep(0.02)


def _stream_to(arm: TrossenArm, target: np.ndarray, duration_s: float = 0.5, rate_hz: float = 30.0) -> None:
    start = arm.read().position
    steps = int(duration_s * rate_hz)
    for k in range(1, steps + 1):
        arm.write(start + k / steps * (target - start))
        time.sleep(1 / rate_hz)


def test_joints_follow_lerobot_names_and_match_the_controllers_limits(simulate, connect):
    (simulated,) = simulate(_spec())
    arm = connect(simulated)
    assert arm.joint_names == ["joint_0", "joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "left_carriage_joint"]
    assert [j.unit for j in arm.joints] == ["rad"] * 6 + ["m"]
    limits = arm._driver.get_joint_limits()
    ours = [bound for j in arm.joints for bound in (j.lower, j.upper)]
    assert ours == pytest.approx([bound for lim in limits for bound in (lim.position_min, lim.position_max)], abs=1e-3)


def test_connect_move_and_read_back(simulate, connect):
    (simulated,) = simulate(_spec())
    arm = connect(simulated)
    state = arm.read()
    assert np.allclose(state.position, list(START.values()), atol=0.01)
    assert abs(state.timestamp_s - time.monotonic()) < 0.5
    target = state.position + np.array([0.3, 0.2, -0.2, 0.1, -0.1, 0.2, 0.01])
    _stream_to(arm, target)
    assert np.abs(_settle(lambda: arm.read().position, target) - target).max() <= READ_BACK_TOLERANCE.max()
    assert np.allclose(_settle(simulated.pose, target), target, atol=0.01), "the simulator itself holds the arm there"
    assert simulated.writes()["position_goal_changes"] > 0


def test_targets_past_the_limits_are_clipped_before_they_reach_the_controller(tmp_path, stack):
    server = SimServerProcess(tmp_path, start_pose=np.array(list(START.values())))
    stack.callback(server.stop)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"the WidowX AI simulator cannot start here: {exc}")
    config = TrossenArmConfig(end_effector="wxai_v0_follower", ip=server.host)
    arm = TrossenArm(config, "follower")
    arm.connect()
    stack.callback(arm.disconnect)
    target = arm.read().position
    target[1], target[2], target[6] = 4.0, -0.5, 0.08  # past joint_1 upper, joint_2 lower, gripper upper
    result = arm.write(target)
    assert result.clipped.tolist() == [False, True, True, False, False, False, True]
    assert result.sent[[1, 2, 6]] == pytest.approx([np.pi, 0.0, 0.044])
    deadline = time.monotonic() + 5.0
    while True:  # every goal that crosses the wire, on the way and at the end, before the simulator's own silent clipping
        goal = server.state.goal.copy()
        assert goal[1] <= np.pi + 1e-6 and goal[2] >= -1e-6 and goal[6] <= 0.044 + 1e-6
        if np.allclose(goal[[1, 2, 6]], [np.pi, 0.0, 0.044], atol=1e-4) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert goal[[1, 2, 6]] == pytest.approx([np.pi, 0.0, 0.044], abs=1e-4)


def test_observe_only_reads_and_never_commands_a_position(simulate, connect):
    (simulated,) = simulate(_spec())
    arm = connect(simulated, observe_only=True)
    before = arm.read().position
    with pytest.raises(ObserveOnlyError):
        arm.write(before + 0.1)
    with pytest.raises(ObserveOnlyError):
        arm.set_torque(True)
    reports = arm.safe_stop()
    assert [(r.parked, r.torque_safe) for r in reports] == [(None, True)]
    time.sleep(0.2)
    assert simulated.writes() == {"position_inputs": 0, "position_goal_changes": 0}
    assert np.allclose(arm.read().position, before, atol=1e-3)


def test_safe_stop_parks_through_the_staged_pose_and_holds(simulate, connect):
    (simulated,) = simulate(_spec())
    arm = connect(simulated)
    (report,) = arm.safe_stop()
    assert (report.parked, report.torque_safe) == (True, True), report.describe()
    assert np.allclose(arm.read().position, arm.park_position, atol=0.03)


def test_a_joint_fault_names_the_joint_and_the_stop_still_reports(simulate, connect):
    (simulated,) = simulate(_spec())
    arm = connect(simulated)
    simulated.inject("joint_3", "JOINT_OVERHEATED")
    deadline = time.monotonic() + 20.0  # a bound, not a speed: the simulator's UDP cycle slows on a loaded machine
    with pytest.raises(ArmError) as caught:  # noqa: PT012 - polls until the driver reports the fault
        while time.monotonic() < deadline:  # the driver learns of the error on its next UDP cycle
            arm.read()
            time.sleep(0.005)
    message = str(caught.value)
    assert "joint joint_3" in message and simulated.address in message and "cool" in message
    (report,) = arm.safe_stop()
    assert (report.parked, report.torque_safe) == (False, False)
    assert "Joint overheated" in report.detail


def test_reconnecting_clears_the_controllers_error(simulate, connect):
    (simulated,) = simulate(_spec())
    arm = connect(simulated)
    simulated.inject("left_carriage_joint", "JOINT_DISABLED_UNEXPECTEDLY")
    deadline = time.monotonic() + 20.0  # a bound, not a speed: the simulator's UDP cycle slows on a loaded machine
    with pytest.raises(ArmError, match="left_carriage_joint"):  # noqa: PT012 - the driver learns of it on a later UDP cycle
        while time.monotonic() < deadline:
            arm.write(arm.park_position)
            time.sleep(0.005)
    arm.disconnect()
    arm.connect()
    target = arm.read().position + np.array([0.2, 0, 0, 0, 0, 0, 0])
    _stream_to(arm, target)
    assert np.abs(_settle(lambda: arm.read().position, target) - target).max() <= READ_BACK_TOLERANCE.max()


def test_an_unreachable_controller_fails_in_bounded_time_saying_what_to_check():
    config = TrossenArmConfig(end_effector="wxai_v0_follower", ip="127.0.0.250", connect_timeout_s=1.0)
    arm = TrossenArm(config, "follower")
    t0 = time.monotonic()
    with pytest.raises(ArmError) as caught:
        arm.connect()
    elapsed_s = time.monotonic() - t0
    assert elapsed_s < config.connect_timeout_s + 2.0
    message = str(caught.value)
    assert "127.0.0.250" in message and "powered" in message and "subnet" in message
    assert not arm.is_connected and arm.safe_stop() == []


class LateOutputsController(TrossenArmSimServer):
    """The vendor's simulated controller whose UDP joint outputs begin only `silent_s` after the first
    request (forever with inf): as a controller behind a busy computer, or behind a firewall, would."""

    def __init__(self, host: str, silent_s: float) -> None:
        super().__init__(WidowXSim(), host=host)
        self.silent_s = silent_s

    def _udp_loop(self) -> None:
        assert self._udp_socket is not None
        self._udp_socket.recvfrom(4096)
        deadline = time.monotonic() + self.silent_s
        with contextlib.suppress(OSError):  # the socket closes on stop()
            while time.monotonic() < deadline:
                self._udp_socket.settimeout(0.05)
                with contextlib.suppress(TimeoutError):
                    self._udp_socket.recvfrom(4096)
            self._udp_socket.settimeout(None)
            super()._udp_loop()


@pytest.fixture
def late_outputs_controller(stack):
    def start(silent_s: float) -> str:
        controller = LateOutputsController(_free_host(), silent_s)
        controller.sim.start()
        stack.callback(controller.sim.stop)
        controller.start()
        stack.callback(controller.stop)
        return controller.host

    return start


def test_a_controller_whose_first_joint_outputs_miss_the_drivers_window_is_configured_again(late_outputs_controller):
    host = late_outputs_controller(silent_s=1.5)  # the driver's own window is about 1 s
    arm = TrossenArm(TrossenArmConfig(end_effector="wxai_v0_follower", ip=host, connect_timeout_s=20.0), "follower")
    arm.connect(observe_only=True)
    try:
        assert arm.read().position.shape == (7,)
    finally:
        arm.disconnect()


def test_a_controller_that_never_sends_joint_outputs_points_at_udp_within_the_connect_timeout(late_outputs_controller):
    host = late_outputs_controller(silent_s=math.inf)
    config = TrossenArmConfig(end_effector="wxai_v0_follower", ip=host, connect_timeout_s=3.0)
    arm = TrossenArm(config, "follower")
    t0 = time.monotonic()
    with pytest.raises(ArmError) as caught:
        arm.connect()
    assert time.monotonic() - t0 < config.connect_timeout_s + 10.0  # a bound for a loaded machine
    message = str(caught.value)
    assert host in message and "UDP" in message and "50000" in message and "firewall" in message
    assert not arm.is_connected


def test_a_firmware_version_mismatch_says_so(tmp_path):
    server = SimServerProcess(tmp_path, start_pose=np.array(list(START.values())), firmware_version="1.10")
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"the WidowX AI simulator cannot start here: {exc}")
    try:
        arm = TrossenArm(TrossenArmConfig(end_effector="wxai_v0_follower", ip=server.host), "follower")
        with pytest.raises(ArmError, match="firmware"):
            arm.connect()
    finally:
        server.stop()


def test_two_arms_side_by_side_move_independently(simulate, connect):
    left_sim, right_sim = simulate(_spec(prefix="left"), _spec(prefix="right"))
    assert left_sim.address != right_sim.address
    assert all(s.address.startswith("127.0.0.") for s in (left_sim, right_sim))
    left, right = connect(left_sim, "left_follower"), connect(right_sim, "right_follower")
    right_start = right.read().position
    left_target = left.read().position + np.array([0.4, 0, 0.2, 0, 0, 0, 0])
    _stream_to(left, left_target)
    assert np.abs(_settle(lambda: left.read().position, left_target) - left_target).max() <= READ_BACK_TOLERANCE.max()
    assert np.allclose(right.read().position, right_start, atol=1e-3)
    right_target = right_start + np.array([-0.4, 0, 0, 0.3, 0, 0, 0])
    _stream_to(right, right_target)
    assert np.abs(_settle(lambda: right.read().position, right_target) - right_target).max() <= READ_BACK_TOLERANCE.max()
    assert np.allclose(left.read().position, left_target, atol=0.01)


def test_a_simulated_leader_plays_the_demo_and_parks_on_stop(simulate, connect):
    (simulated,) = simulate(_spec("wxai_v0_leader"))
    leader = connect(simulated, "leader")
    assert leader._driver.get_modes()[0].name == "external_effort"
    simulated.start_demonstration()
    seen = []
    for _ in range(25):
        seen.append(leader.read().position)
        time.sleep(0.04)
    travel = np.ptp(np.array(seen), axis=0)
    assert travel[0] > 0.2 and travel[6] > 0.005  # joint_0 and the gripper follow the demo
    (report,) = leader.safe_stop()
    assert (report.parked, report.torque_safe) == (True, True), report.describe()


def test_config_checks_the_address_and_the_role():
    assert TrossenArmConfig(end_effector="wxai_v0_leader", ip="192.168.1.3").role == "leader"
    assert TrossenArmConfig(end_effector="wxai_v0_base", ip="192.168.1.3").role == "follower"
    with pytest.raises(ValidationError, match="IPv4"):
        TrossenArmConfig(end_effector="wxai_v0_follower", ip="192.168.1")
    with pytest.raises(ValidationError, match="unknown joints"):
        TrossenArmConfig(end_effector="wxai_v0_follower", ip="192.168.1.2", park_position={"gripper": 0.0})
