"""Flexiv Rizon arms through the RDK stand-in (exactly flexivrdk 1.9.4.1's and 2.0.0's API) against simulated
Rizon 4 controllers on loopback TCP, for both RDK generations: connect, Cartesian moves, the quaternion
hemisphere near the pi flip, observe-only, faults and the E-stop, unreachable robots, each reason a robot
is not operational, the park on stop, and the gripper off the control tick."""

import contextlib
import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.spatial.transform import Rotation

from drivers.flexiv import FAMILY
from drivers.flexiv.arm import FlexivArm
from drivers.flexiv.config import HOME_Q_RAD, FlexivArmConfig
from drivers.flexiv.sdk import RizonGripper, RizonSdk, load_api
from drivers.flexiv.sim_controller import RizonSimSpec, SimulatedRizons
from robot_runtime.config import ArmSpec, DemoConfig, SimConfig, load_robot_config
from robot_runtime.policy.mapping import PolicyIO
from robot_runtime.rig import Rig
from robot_runtime.robot import Arm, ArmError, ObserveOnlyError
from robot_runtime.rotations import from_quat_wxyz, geodesic_rad
from robot_runtime.sim_client import Simulators

APIS = ("v1", "v2")
SERIALS = tuple(f"Rizon4-{n:06d}" for n in range(100001, 100017))
POSITION_TOLERANCE_M = 0.002
ANGLE_TOLERANCE_RAD = math.radians(1.0)
SETTLE_S = 30.0
"""A bound, not a speed: the simulated controllers integrate in a thread of a loaded machine."""


@pytest.fixture(scope="module", params=APIS)
def rizons(request):
    """Simulated Rizon 4s (one serial per test) served for one RDK generation."""
    with SimulatedRizons({serial: RizonSimSpec() for serial in SERIALS}) as sims:
        yield request.param, sims


@pytest.fixture
def stack():
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def robot(rizons, stack):
    """A fresh simulated robot for this test, and a way to connect arms to it (always disconnected after)."""
    api, sims = rizons
    serial = _unused_serial(sims)

    def connect(name: str = "follower", *, observe_only: bool = False, **settings) -> FlexivArm:
        arm = FlexivArm(_config(api, sims.address, serial, **settings), name)
        stack.callback(arm.disconnect)
        arm.connect(observe_only=observe_only)
        return arm

    return SimpleNamespace(api=api, sims=sims, serial=serial, sim=sims[serial], connect=connect)


_TAKEN: set[tuple[int, str]] = set()


def _unused_serial(sims: SimulatedRizons) -> str:
    """A serial no earlier test of this module touched: a test must not see another's faults or pose."""
    for serial in SERIALS:
        if (id(sims), serial) not in _TAKEN and not any(sims[serial].command_counts().values()):
            _TAKEN.add((id(sims), serial))
            return serial
    pytest.fail("every simulated serial is taken: add more to SERIALS")


def _config(api: str, address: str, serial: str, **settings) -> FlexivArmConfig:
    return FlexivArmConfig(
        serial_number=serial,
        sdk="standin",
        standin_address=address,
        standin_api=api,
        operational_timeout_s=20.0,
        **settings,
    )


def _vector_of(pose7: np.ndarray) -> np.ndarray:
    return np.concatenate([pose7[:3], from_quat_wxyz(pose7[3:])])


def _stream_until(arm: Arm, target: np.ndarray, reached, timeout_s: float = SETTLE_S, rate_hz: float = 25.0) -> bool:
    """Write `target` every tick (as the loop does) until `reached()` or the bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        arm.write(target)
        arm.read()
        if reached():
            return True
        time.sleep(1 / rate_hz)
    return False


def _at(sim, target: np.ndarray) -> bool:
    here = _vector_of(sim.tcp_pose())
    return (
        float(np.linalg.norm(here[:3] - target[:3])) <= POSITION_TOLERANCE_M
        and geodesic_rad(here[3:6], target[3:6]) <= ANGLE_TOLERANCE_RAD
    )


# -- the arm's vector -------------------------------------------------------------------------------


def test_the_vector_is_the_tcp_pose_and_the_gripper_with_one_pose_in_the_world_frame():
    arm = FlexivArm(FlexivArmConfig(serial_number="Rizon4-123456"), "follower")
    assert arm.joint_names == ["tcp_x", "tcp_y", "tcp_z", "tcp_rx", "tcp_ry", "tcp_rz", "gripper_width"]
    assert [j.unit for j in arm.joints] == ["m"] * 3 + ["rad"] * 3 + ["m"]
    assert [(j.lower, j.upper) for j in arm.joints[:3]] == [(0.30, 0.80), (-0.35, 0.35), (0.10, 0.60)]
    assert all((j.lower, j.upper) == (-math.pi, math.pi) for j in arm.joints[3:6])
    assert (arm.poses[0].start, arm.poses[0].frame) == (0, "world")
    joint = FlexivArm(FlexivArmConfig(serial_number="Rizon 4s-123456", control="joint", gripper=None), "follower")
    assert joint.joint_names == [f"joint{i}" for i in range(1, 8)] and joint.poses == ()
    assert np.allclose(joint.park_position, HOME_Q_RAD)


def test_a_rotation_is_never_clipped_value_by_value_and_positions_stay_in_the_box():
    arm = FlexivArm(FlexivArmConfig(serial_number="Rizon4-123456"), "follower")
    rotation = np.array([0.0, 0.0, 3.3])  # past pi: the same rotation as [0, 0, 3.3 - 2 pi]
    checked = arm.clip(np.array([0.9, 0.0, 0.3, *rotation, 0.05]))
    assert checked.sent[0] == pytest.approx(0.80) and checked.clipped[0]
    assert geodesic_rad(checked.sent[3:6], rotation) < 1e-9, "the same rotation, not [0, 0, pi]"
    assert not checked.clipped[3:6].any()
    with pytest.raises(ValueError, match="non-finite"):
        arm.clip(np.array([0.5, 0.0, 0.3, np.nan, 0.0, 0.0, 0.05]))


def test_the_config_checks_the_serial_the_whitelist_and_the_park_pose():
    for bad in ("Rizon4", "rizon4-123456", "Rizon4-12-345", "Rizon4-", "Rizon4- ", "Panda-123456", "Rizon5-123456"):
        with pytest.raises(ValidationError, match="serial number like"):
            FlexivArmConfig(serial_number=bad)
    for good in ("Rizon4-123456", "Rizon 4s-123456", "Rizon4-SIM001", "Rizon10R-12345", "Rizon 4sR-AB 12"):
        assert FlexivArmConfig(serial_number=good).serial_number == good
    with pytest.raises(ValidationError, match="not an IPv4 address"):
        FlexivArmConfig(serial_number="Rizon4-123456", network_interface_whitelist=["eth0"])
    with pytest.raises(ValidationError, match="joint4"):
        FlexivArmConfig(serial_number="Rizon4-123456", park_q_rad=[0, 0, 0, 3.0, 0, 0, 0])
    with pytest.raises(ValidationError, match="standin_address"):
        FlexivArmConfig(serial_number="Rizon4-123456", sdk="standin")
    with pytest.raises(ValidationError, match="below max_m"):
        FlexivArmConfig(serial_number="Rizon4-123456", workspace={"min_m": [0.5, 0, 0], "max_m": [0.4, 1, 1]})


# -- connecting -------------------------------------------------------------------------------------


def test_connect_enables_zeroes_the_sensor_and_enters_pure_motion_cartesian_control(robot):
    arm = robot.connect()
    state = arm.read()
    assert state.position.shape == (7,)
    assert abs(state.timestamp_s - time.monotonic()) < 1.0
    assert np.allclose(state.position[:3], robot.sim.tcp_pose()[:3], atol=1e-3)
    assert np.linalg.norm(state.position[3:6]) <= math.pi + 1e-9, "a canonical rotation vector"
    assert state.position[6] == pytest.approx(robot.sim.gripper_width(), abs=1e-4)
    assert arm.last_states is not None and arm.last_states.q.shape == (7,) and arm.last_states.ext_wrench.shape == (6,)
    assert arm._connected().mode() == "NRT_CARTESIAN_MOTION_FORCE"
    counts = robot.sim.command_counts()
    assert counts["enable"] == 1 and counts["primitive"] == 1, "enabled once, ZeroFTSensor run once"
    assert counts["force_control_axis"] == 1 and counts["max_contact_wrench"] == 1
    assert counts["motion_commands"] == 1, "nothing moved the arm but the sensor zeroing"


def test_a_cartesian_move_reaches_its_target(robot):
    arm = robot.connect()
    start = arm.read().position
    turned = (Rotation.from_rotvec([0.0, 0.0, 0.15]) * Rotation.from_rotvec(start[3:6])).as_rotvec()
    target = np.concatenate([start[:3] + np.array([0.03, 0.04, -0.02]), turned, [0.05]])
    assert _stream_until(arm, target, lambda: _at(robot.sim, target)), (
        f"the TCP is at {_vector_of(robot.sim.tcp_pose())}, not {target}"
    )
    state = arm.read().position
    assert np.linalg.norm(state[:3] - target[:3]) <= POSITION_TOLERANCE_M
    assert geodesic_rad(state[3:6], target[3:6]) <= ANGLE_TOLERANCE_RAD


def test_a_target_across_the_pi_flip_turns_the_short_way(robot, monkeypatch):
    """Flexiv's home pose points the tool down: a rotation of pi, where rotation vectors 0.02 rad apart point
    opposite ways. Every quaternion sent lies in the hemisphere of the TCP's, and the arm turns 0.02 rad,
    not a full turn."""
    arm = robot.connect()
    start = arm.read().position
    here = Rotation.from_rotvec(start[3:6])
    target_rotation = Rotation.from_rotvec([0.0, 0.0, 0.02]) * here
    flipped = target_rotation.as_rotvec()
    if np.dot(flipped, start[3:6]) > 0:  # make the target's vector the far one of the two
        flipped = flipped - 2 * math.pi * flipped / np.linalg.norm(flipped)
    assert np.linalg.norm(flipped - start[3:6]) > 3.0, "the two rotation vectors are far apart as numbers"
    sdk = arm._connected()
    sent: list[tuple[np.ndarray, np.ndarray]] = []
    send = sdk.send_cartesian

    def recording(pose, limits):
        sent.append((np.array(pose[3:]), sdk.states().tcp_pose[3:]))
        send(pose, limits)

    monkeypatch.setattr(sdk, "send_cartesian", recording)
    target = np.concatenate([start[:3], flipped, [start[6]]])
    worst = 0.0

    def reached() -> bool:
        nonlocal worst
        worst = max(worst, geodesic_rad(_vector_of(robot.sim.tcp_pose())[3:6], start[3:6]))
        return _at(robot.sim, target)

    assert _stream_until(arm, target, reached)
    assert worst < 0.05, f"the tool turned {worst:.2f} rad on the way to a target 0.02 rad away"
    assert all(float(np.dot(quat, current)) > 0 for quat, current in sent)


def test_observe_only_reads_and_writes_nothing(robot):
    arm = robot.connect(observe_only=True)
    for _ in range(5):
        assert arm.read().position.shape == (7,)
    with pytest.raises(ObserveOnlyError):
        arm.write(arm.read().position)
    (report,) = arm.safe_stop()
    assert report.parked is None and report.torque_safe
    assert not any(robot.sim.command_counts().values()), robot.sim.command_counts()


def test_a_minor_fault_is_cleared_at_connect(robot, caplog):
    robot.sim.inject("minor_fault")
    arm = robot.connect()
    assert not arm._connected().fault()
    assert robot.sim.command_counts()["clear_fault"] >= 1
    assert "cleared a fault" in caplog.text


@pytest.mark.parametrize(("injection", "named"), [("fault", "critical fault"), ("estop", "E-stop")])
def test_a_fault_or_the_estop_mid_run_is_an_error_naming_it(robot, injection, named):
    arm = robot.connect()
    target = arm.read().position + np.array([0.02, 0, 0, 0, 0, 0, 0])
    arm.write(target)
    robot.sim.inject(injection)
    with pytest.raises(ArmError, match=named) as raised:
        arm.read()
    assert robot.serial in str(raised.value) and "follower" in str(raised.value)
    with pytest.raises(ArmError, match=named):
        arm.write(target)
    (report,) = arm.safe_stop()
    assert report.parked is False and named in report.detail
    if injection == "estop":
        robot.sim.inject("release_estop")


def test_an_unreachable_robot_is_an_error_saying_what_to_check(robot):
    absent = "Rizon4-999999"
    arm = FlexivArm(_config(robot.api, robot.sims.address, absent), "follower")
    started = time.monotonic()
    with pytest.raises(ArmError, match=r"Rizon4-999999.*Remote mode") as raised:
        arm.connect()
    assert time.monotonic() - started < 60
    assert "\n" not in str(raised.value)
    assert not arm.is_connected and arm.safe_stop() == []


def test_a_robot_in_manual_mode_or_with_the_estop_pressed_is_named_at_connect(rizons, stack):
    api, _ = rizons
    specs = {"Rizon4-200001": RizonSimSpec(auto_mode=False), "Rizon4-200002": RizonSimSpec(estop_pressed=True)}
    sims = stack.enter_context(SimulatedRizons(specs))
    for serial, named in (("Rizon4-200001", "Manual mode"), ("Rizon4-200002", "E-stop is pressed")):
        arm = FlexivArm(_config(api, sims.address, serial), "follower")
        with pytest.raises(ArmError, match=named):
            arm.connect()
        assert not arm.is_connected


class _FakeRobot:
    """A robot at the SDK boundary that stays in one operational status, for the statuses the simulator has no
    way to reach (regular Auto mode, reduced and recovery states, a critical fault that will not clear)."""

    status = "READY"

    def __init__(self, serial, whitelist, verbose):
        pass

    def operational(self):
        return False

    def operational_status(self):
        return SimpleNamespace(name=self.status)

    def fault(self):
        return self.status.endswith("FAULT")

    def estop_released(self):
        return self.status != "ESTOP_NOT_RELEASED"

    def ClearFault(self, timeout_sec):
        return False

    def Enable(self):
        pass


@pytest.mark.parametrize(
    ("status", "named"),
    [
        ("ESTOP_NOT_RELEASED", "E-stop is pressed"),
        ("IN_MANUAL_MODE", "Manual mode"),
        ("IN_AUTO_MODE", "regular Auto mode"),
        ("CRITICAL_FAULT", "power-cycle"),
        ("MINOR_FAULT", "minor fault"),
        ("IN_REDUCED_STATE", "reduced state"),
        ("IN_RECOVERY_STATE", "recovery state"),
        ("RELEASING_BRAKE", "not operational 0.1 s after enabling"),
    ],
)
def test_every_reason_a_robot_is_not_operational_is_named(status, named):
    robot_class = type("Robot", (_FakeRobot,), {"status": status})
    sdk = RizonSdk(SimpleNamespace(Robot=robot_class, __version__="1.9.4.1"), "follower", "Rizon4-123456")
    sdk.connect([])

    def bring_up() -> None:  # as the arm does at connect
        sdk.clear_fault(1)
        sdk.enable()
        sdk.wait_operational(0.1)

    with pytest.raises(ArmError, match=named) as raised:
        bring_up()
    assert str(raised.value).startswith("follower (Rizon Rizon4-123456)")


def test_an_rdk_that_does_not_match_the_robots_software_is_named():
    def refuse(serial, whitelist, verbose):
        raise RuntimeError(f"[flexiv::rdk::Robot] Version of this client is incompatible with robot [{serial}]")

    sdk = RizonSdk(SimpleNamespace(Robot=refuse, __version__="2.0.0"), "follower", "Rizon4-123456")
    with pytest.raises(ArmError, match=r"flexivrdk 2\.0\.0\) does not match the robot's software.*1\.9\.4"):
        sdk.connect([])


def test_a_missing_or_unsuitable_rdk_is_one_line_saying_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "flexivrdk", None)  # as if not installed
    with pytest.raises(ArmError, match=r"pip install 'robot-runtime\[flexiv\]'"):
        load_api(FlexivArmConfig(serial_number="Rizon4-123456"))
    monkeypatch.setitem(sys.modules, "flexivrdk", SimpleNamespace(__version__="2.1.0"))
    with pytest.raises(ArmError, match="Enlight and MICO only"):
        load_api(FlexivArmConfig(serial_number="Rizon4-123456"))


# -- stopping ---------------------------------------------------------------------------------------


def test_safe_stop_glides_to_the_park_pose_and_goes_idle(robot):
    arm = robot.connect()
    start = arm.read().position
    target = start + np.array([0.0, 0.05, 0.03, 0, 0, 0, 0])
    _stream_until(arm, target, lambda: _at(robot.sim, target))
    (report,) = arm.safe_stop()
    assert report.parked is True and report.torque_safe, report.describe()
    assert np.allclose(robot.sim.q(), HOME_Q_RAD, atol=0.01)
    assert arm._connected().mode() == "IDLE"
    assert robot.sim.command_counts()["stop"] >= 1


def test_an_estop_during_the_park_stops_it_and_the_report_says_the_controller_holds_the_arm(robot):
    arm = robot.connect()
    start = arm.read().position
    target = start + np.array([0.0, 0.1, 0.05, 0, 0, 0, 0])
    _stream_until(arm, target, lambda: _at(robot.sim, target))
    press = threading.Timer(0.2, robot.sim.inject, args=("estop",))
    press.start()
    (report,) = arm.safe_stop()
    press.join()
    assert report.parked is False and report.torque_safe and "E-stop" in report.detail, report.describe()
    assert not np.allclose(robot.sim.q(), HOME_Q_RAD, atol=0.01), "nothing moved it after the E-stop"
    robot.sim.inject("release_estop")


def test_joint_control_streams_joint_positions(robot):
    arm = robot.connect(control="joint", gripper=None)
    assert arm._connected().mode() == "NRT_JOINT_POSITION"
    target = np.array(HOME_Q_RAD) + np.array([0.1, -0.05, 0.0, 0.1, 0.0, -0.1, 0.2])
    assert _stream_until(arm, target, lambda: np.allclose(robot.sim.q(), target, atol=1e-3))
    assert np.allclose(arm.read().position, target, atol=1e-3)


# -- the gripper ------------------------------------------------------------------------------------


def test_the_gripper_moves_off_the_tick_latest_target_wins_and_small_changes_are_not_sent(robot, monkeypatch):
    arm = robot.connect()
    start = arm.read().position
    delivered = threading.Event()
    moves: list[tuple[float, str]] = []
    move = RizonGripper.move

    def slow_move(self, width_m, velocity_m_s, force_n):
        moves.append((width_m, threading.current_thread().name))
        delivered.wait(SETTLE_S)  # Move blocks until the request is delivered: here, until the test lets it
        move(self, width_m, velocity_m_s, force_n)

    monkeypatch.setattr(RizonGripper, "move", slow_move)
    arm.write(np.concatenate([start[:6], [0.02]]))
    deadline = time.monotonic() + SETTLE_S
    while not moves and time.monotonic() < deadline:
        time.sleep(0.01)
    assert moves and moves[0][1] != threading.current_thread().name, "Move runs on its own thread"
    sent = arm.write(np.concatenate([start[:6], [0.03]])).sent  # returns while the first Move still blocks
    arm.write(np.concatenate([start[:6], [0.06]]))  # the latest target wins over 0.03
    assert sent[6] == pytest.approx(0.03)
    assert arm.write(np.concatenate([start[:6], [0.0605]])).sent[6] == pytest.approx(0.06), "below min_change_m"
    delivered.set()
    deadline = time.monotonic() + SETTLE_S
    while abs(robot.sim.gripper_width() - 0.06) > 1e-4 and time.monotonic() < deadline:
        arm.read()
        time.sleep(0.02)
    assert robot.sim.gripper_width() == pytest.approx(0.06, abs=1e-4)
    assert [width for width, _ in moves] == [0.02, 0.06]


def test_a_gripper_name_the_robot_does_not_have_is_named_at_connect(robot):
    with pytest.raises(ArmError, match=r"gripper 'Robotiq-2F85'.*check gripper.name"):
        robot.connect(gripper={"name": "Robotiq-2F85"})
    assert robot.sim.command_counts()["gripper_move"] == 0


# -- the family and its simulator -------------------------------------------------------------------


def test_the_family_simulates_each_arm_and_points_its_config_at_the_simulator(stack):
    start = {"tcp_x": 0.6, "tcp_y": 0.05, "tcp_z": 0.35, "tcp_rx": 0.0, "tcp_ry": math.pi, "tcp_rz": 0.0, "gripper_width": 0.04}
    sim = SimConfig(start_pose=start, demo=DemoConfig(waypoints=[start]))
    specs = [
        ArmSpec("follower", prefix, FAMILY, FlexivArmConfig(serial_number=f"Rizon4-00000{i}"))
        for i, prefix in enumerate(("left", "right"), start=1)
    ]
    left, right = FAMILY.simulate(specs, sim, stack)
    assert isinstance(left.config, FlexivArmConfig) and isinstance(right.config, FlexivArmConfig)
    assert left.config.sdk == "standin" and left.config.standin_address == left.address == right.address
    assert (left.config.serial_number, right.config.serial_number) == ("Rizon4-000001", "Rizon4-000002")
    assert left.joint_names[-1] == "gripper_width" and "estop" in left.faults
    assert np.allclose(left.pose()[:3], [0.6, 0.05, 0.35], atol=1e-4)
    assert geodesic_rad(left.pose()[3:6], np.array([0.0, math.pi, 0.0])) < 1e-4
    assert left.pose()[6] == pytest.approx(0.04)
    arm = FlexivArm(left.config, "left_follower")
    stack.callback(arm.disconnect)
    arm.connect()
    assert np.allclose(arm.read().position, left.pose(), atol=1e-4)
    assert left.writes()["enable"] == 1 and right.writes()["enable"] == 0
    left.inject("arm", "estop")
    with pytest.raises(ArmError, match="E-stop"):
        arm.read()
    assert FAMILY.describe(left.config).startswith("Rizon Rizon4-000001 (simulated at 127.0.0.1:")


def test_sim_serves_the_bimanual_setup_to_arms_in_another_process(stack):
    """What `--sim` does: `robot-runtime sim flexiv` in a process of its own, the config pointed at it."""
    simulators = Simulators.start(load_robot_config("bi_flexiv"), stack)
    left_spec, right_spec = simulators.config.followers
    arms = {spec.label: FAMILY.build(spec.config, spec.label) for spec in (left_spec, right_spec)}
    for arm in arms.values():
        stack.callback(arm.disconnect)
        arm.connect()
    left, right = arms["left_follower"], arms["right_follower"]
    start = left.read().position
    target = start + np.array([0.02, 0.0, 0.02, 0, 0, 0, -0.03])
    simulated = simulators.arms["left_follower"]
    assert _stream_until(left, target, lambda: np.allclose(simulated.pose(), target, atol=POSITION_TOLERANCE_M))
    assert np.allclose(right.read().position, start, atol=1e-3), "the right arm stayed where it was"
    assert simulated.writes()["cartesian_motion"] > 0
    assert simulators.arms["right_follower"].writes()["cartesian_motion"] == 0
    simulated.inject("arm", "estop")
    with pytest.raises(ArmError, match="E-stop"):
        left.read()
    assert [report.parked for arm in arms.values() for report in arm.safe_stop()] == [False, True]


@pytest.mark.parametrize(
    ("robot_name", "images"),
    [("flexiv", {"image", "wrist_image"}), ("bi_flexiv", {"left_wrist_image", "right_wrist_image"})],
)
def test_the_setups_lay_observations_out_as_flexiv_policies_expect(robot_name, images):
    """openpi's bimanual Flexiv layout: per arm [eef_pos(3), eef_rot_axis_angle(3), gripper_width(1)], left first,
    the images under observation/<name>."""
    config = load_robot_config(robot_name)
    rig = Rig({spec.prefix: FAMILY.build(spec.config, spec.label) for spec in config.followers})
    io = PolicyIO.build(
        config.policy, rig.joints, rig.feature_names, list(config.cameras), config.source, poses=rig.poses, rate_hz=config.fps
    )
    state = np.concatenate([[0.6, 0.1 * i, 0.3, 0.0, 3.0, 0.0, 0.05 + 0.01 * i] for i in range(len(config.followers))])
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    message = io.observation(state, dict.fromkeys(config.cameras, frame), "fold the towel")
    assert np.allclose(message["observation/state"], state, atol=1e-6)
    assert {key.removeprefix("observation/") for key in message if key.startswith("observation/")} - {"state"} == images
    assert config.fps == 25


def test_the_installed_rdk_is_taken_as_it_is_and_its_refusal_of_a_serial_is_one_line():
    """With flexivrdk installed (1.9.4.x or 2.0.0): its generation is recognised, and a malformed serial, which it
    refuses before any network search, is an ArmError. A well-formed serial would start a search: never here."""
    api = pytest.importorskip("flexivrdk")
    assert load_api(FlexivArmConfig(serial_number="Rizon4-123456")) is api
    sdk = RizonSdk(api, "follower", "abc")
    assert sdk.generation == ("v2" if api.__version__.startswith("2.") else "v1")
    with pytest.raises(ArmError, match=r"refused the serial number.*\[abc\] is invalid; check serial_number"):
        sdk.connect([])
