"""The RDK stand-ins (drivers.flexiv.standin v1 and v2) driving simulated Rizons (drivers.flexiv.sim_controller)
over loopback, the way a driver uses flexivrdk: connect, enable, modes, Cartesian and joint motion within the
commanded limits, faults, E-stop, the gripper, and what the controller counts. Plus the kinematic model the
controller integrates. Waits are bounded generously; no test asserts a speed of the machine."""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from drivers.flexiv import sim_controller
from drivers.flexiv.model import DQ_MAX_RAD_S, HOME_Q_RAD, Q_MAX_RAD, Q_MIN_RAD, CartesianTarget, MotionGenerator, RizonKinematics
from drivers.flexiv.sim_controller import RizonSimSpec, SimulatedRizons
from drivers.flexiv.standin import v1, v2
from robot_runtime.rotations import from_quat_wxyz, geodesic_rad, to_quat_wxyz

REPO = Path(__file__).resolve().parent.parent
SERIAL = "Rizon4-SIM001"
GRIPPER = "Flexiv-GN01"
WAIT_S = 20.0


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)


@contextmanager
def simulated(api: ModuleType, **spec: Any) -> Iterator[SimulatedRizons]:
    with SimulatedRizons({SERIAL: RizonSimSpec(**spec), "Rizon4-SIM002": RizonSimSpec()}) as sims:
        api.discover_at(sims.address)
        yield sims


@pytest.fixture(params=["v1", "v2"])
def api(request) -> ModuleType:
    return v1 if request.param == "v1" else v2


# -- what differs between the generations, in one place -------------------------------------------------


def states(api: ModuleType, robot: Any) -> Any:
    return robot.states()[api.JointGroup.ARMS] if api is v2 else robot.states()


def tcp_velocity(api: ModuleType, state: Any) -> list[float]:
    return state.tcp_twist if api is v2 else state.tcp_vel


def send_pose(api: ModuleType, robot: Any, pose: list[float], **limits: float) -> None:
    if api is v2:
        robot.SendCartesianMotionForce({v2.JointGroup.ARMS: v2.NrtCartesianCmd(pose, **limits)})
    else:
        robot.SendCartesianMotionForce(pose, **limits)


def send_joints(api: ModuleType, robot: Any, q: list[float], max_vel: list[float], max_acc: list[float]) -> None:
    if api is v2:
        robot.SendJointPosition({v2.JointGroup.ARMS: v2.NrtJointPositionCmd(q, [0.0] * 7, max_vel, max_acc)})
    else:
        robot.SendJointPosition(q, [0.0] * 7, max_vel, max_acc)


def execute_primitive(api: ModuleType, robot: Any, name: str) -> None:
    """Start a primitive with no parameters, each generation's way, and wait until it terminates."""
    if api is v2:
        robot.ExecutePrimitive({v2.JointGroup.ARMS: v2.PrimitiveArgs(name, {})})
        wait_until(lambda: robot.primitive_states()[v2.JointGroup.ARMS].names_and_values["terminated"] == 1, name)
    else:
        robot.ExecutePrimitive(name, {})
        wait_until(lambda: robot.primitive_states()["terminated"] == 1, name)


def zero_ft_sensor(api: ModuleType, robot: Any) -> None:
    """Flexiv's examples' way: the ZeroFTSensor primitive with nothing touching the arm."""
    robot.SwitchMode(api.Mode.NRT_PRIMITIVE_EXECUTION)
    execute_primitive(api, robot, "ZeroFTSensor")


def setup_cartesian(api: ModuleType, robot: Any) -> None:
    zero_ft_sensor(api, robot)
    robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
    if api is v2:
        robot.SetForceControlAxis(v2.JointGroup.ARMS, [False] * 6)
        robot.SetMaxContactWrench(v2.JointGroup.ARMS, [10.0, 10.0, 10.0, 2.0, 2.0, 2.0])
    else:
        robot.SetForceControlAxis([False] * 6)
        robot.SetMaxContactWrench([10.0, 10.0, 10.0, 2.0, 2.0, 2.0])


def gripper_move(api: ModuleType, gripper: Any, width: float, velocity: float, force: float) -> None:
    gripper.Move(width, velocity, force)


def enabled_robot(api: ModuleType, serial: str = SERIAL) -> Any:
    robot = api.Robot(serial, [], False)
    robot.Enable()
    wait_until(robot.operational, "operational after Enable()")
    return robot


def sample_motion(api: ModuleType, robot: Any, done: Callable[[Any], bool]) -> list[Any]:
    """States until `done(state)`, each carrying the controller's time."""
    samples = [states(api, robot)]
    deadline = time.monotonic() + WAIT_S
    while not done(samples[-1]):
        assert time.monotonic() < deadline, "the motion did not finish"
        time.sleep(0.01)
        samples.append(states(api, robot))
    return samples


def controller_time(state: Any) -> float:
    seconds, nanoseconds = state.timestamp
    return seconds + nanoseconds * 1e-9


# -- connection and status ------------------------------------------------------------------------------


def test_connect_enable_and_become_operational(api):
    with simulated(api) as sims:
        robot = api.Robot(SERIAL)
        assert robot.connected() and not robot.fault() and robot.estop_released() and not robot.reduced()
        assert robot.operational_status() == api.OperationalStatus.NOT_ENABLED
        assert not robot.operational() and robot.mode() == api.Mode.IDLE
        info = robot.info()
        assert (info.serial_num, info.model_name, info.DoF) == (SERIAL, "Rizon4", 7)
        assert np.allclose(info.q_min, Q_MIN_RAD) and np.allclose(info.q_max, Q_MAX_RAD)
        robot.Enable()
        wait_until(robot.operational, "operational")
        assert robot.operational_status() == api.OperationalStatus.READY
        first = states(api, robot)
        assert np.allclose(first.tcp_pose, sims[SERIAL].tcp_pose(), atol=1e-9)
        assert np.allclose(first.q, HOME_Q_RAD) and len(first.tcp_pose) == 7
        wait_until(lambda: controller_time(states(api, robot)) > controller_time(first), "controller time advancing")
        assert sims[SERIAL].command_counts()["enable"] == 1


def test_an_unserved_serial_fails_as_the_rdk_does_after_a_bounded_wait(api):
    with simulated(api):
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"Failed to connect to \[Rizon4-SIM999\]\. Please check that"):
            api.Robot("Rizon4-SIM999")
        assert time.monotonic() - started < 10
        with pytest.raises(ValueError, match="Format of the provided robot serial number"):
            api.Robot("Rizon4")


def test_robots_are_found_at_every_address_discovered(api):
    """Two controller processes (one per arm of a bimanual rig) at two addresses: each serial is found."""
    with SimulatedRizons({"Rizon4-LEFT01": RizonSimSpec()}) as left, SimulatedRizons({"Rizon4-RIGHT1": RizonSimSpec()}) as right:
        api.discover_at(left.address)
        api.discover_at(right.address)
        assert api.Robot("Rizon4-LEFT01").info().serial_num == "Rizon4-LEFT01"
        assert api.Robot("Rizon4-RIGHT1").info().serial_num == "Rizon4-RIGHT1"


def test_discover_at_refuses_an_address_that_is_not_host_port(api):
    with pytest.raises(ValueError, match="host:port"):
        api.discover_at("localhost")


def test_manual_mode_robot_never_becomes_operational(api):
    with simulated(api, auto_mode=False) as sims:
        robot = api.Robot(SERIAL)
        robot.Enable()
        time.sleep(0.5)
        assert robot.operational_status() == api.OperationalStatus.IN_MANUAL_MODE and not robot.operational()
        with pytest.raises(RuntimeError, match="Robot is not operational: In Manual mode"):
            robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
        assert sims[SERIAL].command_counts()["motion_commands"] == 0


# -- motion ------------------------------------------------------------------------------------------------


def test_cartesian_motion_reaches_the_target_within_the_commanded_limits(api):
    max_linear, max_angular = 0.1, 0.4
    with simulated(api) as sims:
        robot = enabled_robot(api)
        setup_cartesian(api, robot)
        start = np.array(states(api, robot).tcp_pose)
        turn = Rotation.from_rotvec([0.0, 0.25, 0.15])
        rotation = turn * Rotation.from_rotvec(from_quat_wxyz(start[3:]))
        goal = np.concatenate([start[:3] + np.array([0.06, 0.04, -0.05]), to_quat_wxyz(rotation.as_rotvec(), start[3:])])
        send_pose(api, robot, goal.tolist(), max_linear_vel=max_linear, max_angular_vel=max_angular)

        def arrived(state: Any) -> bool:
            pose = np.array(state.tcp_pose)
            angle = geodesic_rad(from_quat_wxyz(pose[3:]), from_quat_wxyz(goal[3:]))
            return float(np.linalg.norm(pose[:3] - goal[:3])) < 1e-3 and angle < math.radians(0.5)

        samples = sample_motion(api, robot, arrived)
        for before, after in pairwise(samples):
            dt = controller_time(after) - controller_time(before)
            if dt <= 0:
                continue
            a, b = np.array(before.tcp_pose), np.array(after.tcp_pose)
            assert np.linalg.norm(b[:3] - a[:3]) / dt <= max_linear * 1.05 + 1e-3
            assert geodesic_rad(from_quat_wxyz(a[3:]), from_quat_wxyz(b[3:])) / dt <= max_angular * 1.05 + 1e-3
        assert max(np.linalg.norm(tcp_velocity(api, s)[:3]) for s in samples) <= max_linear * 1.05
        assert len(samples) > 5, "the motion took time, as its limits demand"
        assert np.allclose(sims[SERIAL].tcp_pose()[:3], goal[:3], atol=1e-3)
        wait_until(lambda: not robot.busy(), "idle after arriving")


def test_joint_motion_reaches_the_target_within_each_joints_limit(api):
    max_vel = [0.4] * 7
    with simulated(api) as sims:
        robot = enabled_robot(api)
        robot.SwitchMode(api.Mode.NRT_JOINT_POSITION)
        goal = (HOME_Q_RAD + np.array([0.3, -0.2, 0.25, 0.2, -0.3, 0.2, 0.4])).tolist()
        send_joints(api, robot, goal, max_vel, [2.0] * 7)
        samples = sample_motion(api, robot, lambda s: bool(np.allclose(s.q, goal, atol=1e-3)))
        for before, after in pairwise(samples):
            dt = controller_time(after) - controller_time(before)
            if dt > 0:
                assert np.all(np.abs(np.subtract(after.q, before.q)) / dt <= np.array(max_vel) * 1.05 + 1e-3)
        assert np.allclose(sims[SERIAL].q(), goal, atol=1e-3)


def test_commands_refused_as_the_rdk_refuses_them(api):
    with simulated(api):
        robot = api.Robot(SERIAL)
        pose = list(states(api, robot).tcp_pose)
        with pytest.raises(RuntimeError, match="not operational: Not enabled"):
            robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
        robot.Enable()
        wait_until(robot.operational, "operational")
        with pytest.raises(RuntimeError, match="not in an applicable control mode"):
            send_pose(api, robot, pose)
        robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
        with pytest.raises(ValueError, match="must be greater than 0"):
            send_pose(api, robot, pose, max_linear_vel=0.0)
        with pytest.raises(TypeError):
            send_pose(api, robot, pose[:6])
        with pytest.raises(RuntimeError, match="not in an applicable control mode"):
            send_joints(api, robot, HOME_Q_RAD.tolist(), [1.0] * 7, [1.0] * 7)
        robot.SwitchMode(api.Mode.NRT_JOINT_POSITION)
        with pytest.raises(ValueError, match=r"Size of input vector \[positions\]"):
            send_joints(api, robot, HOME_Q_RAD.tolist()[:6], [1.0] * 7, [1.0] * 7)
        with pytest.raises(ValueError, match="must be greater than 0"):
            send_joints(api, robot, HOME_Q_RAD.tolist(), [0.0] * 7, [1.0] * 7)
        with pytest.raises(TypeError):
            robot.SwitchMode(6)
        if api is v2:
            with pytest.raises(ValueError, match="joint group"):
                robot.SendJointPosition({v2.JointGroup.ARM_1: v2.NrtJointPositionCmd([0.0] * 7, [0.0] * 7, [1.0] * 7, [1.0] * 7)})


def test_the_home_primitive_moves_the_arm_home_and_terminates(api):
    with simulated(api, q_start_rad=tuple(HOME_Q_RAD + 0.2)) as sims:
        robot = enabled_robot(api)
        robot.SwitchMode(api.Mode.NRT_PRIMITIVE_EXECUTION)
        execute_primitive(api, robot, "Home")
        assert np.allclose(sims[SERIAL].q(), HOME_Q_RAD, atol=1e-3) and not robot.busy()
        with pytest.raises(RuntimeError, match=r"no primitive \[MoveL\]"):
            execute_primitive(api, robot, "MoveL")


# -- faults and the E-stop ------------------------------------------------------------------------------


def test_a_minor_fault_clears_and_the_robot_enables_again(api):
    with simulated(api) as sims:
        robot = enabled_robot(api)
        sims[SERIAL].inject("minor_fault")
        assert robot.fault() and robot.operational_status() == api.OperationalStatus.MINOR_FAULT
        assert not robot.operational()
        assert robot.ClearFault(10)
        assert not robot.fault()
        robot.Enable()
        wait_until(robot.operational, "operational after clearing")


def test_a_critical_fault_stops_the_arm_and_does_not_clear(api):
    with simulated(api) as sims:
        robot = enabled_robot(api)
        robot.SwitchMode(api.Mode.NRT_JOINT_POSITION)
        send_joints(api, robot, (HOME_Q_RAD + 0.5).tolist(), [0.3] * 7, [1.0] * 7)
        wait_until(robot.busy, "moving")
        sims[SERIAL].inject("fault")
        assert robot.fault() and robot.operational_status() == api.OperationalStatus.CRITICAL_FAULT
        held = sims[SERIAL].q()
        assert not robot.ClearFault(1)
        assert robot.fault() and robot.mode() == api.Mode.IDLE
        assert np.array_equal(sims[SERIAL].q(), held)
        with pytest.raises(RuntimeError, match="not operational: Critical fault occurred"):
            robot.SwitchMode(api.Mode.NRT_JOINT_POSITION)


def test_the_estop_stops_and_needs_release_and_enable(api):
    with simulated(api) as sims:
        robot = enabled_robot(api)
        robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
        goal = list(states(api, robot).tcp_pose)
        goal[2] -= 0.1
        send_pose(api, robot, goal, max_linear_vel=0.05)
        wait_until(robot.busy, "moving")
        sims[SERIAL].inject("estop")
        assert not robot.estop_released() and not robot.operational()
        assert robot.operational_status() == api.OperationalStatus.ESTOP_NOT_RELEASED
        held = sims[SERIAL].q()
        time.sleep(0.2)
        assert np.array_equal(sims[SERIAL].q(), held) and not robot.busy()
        with pytest.raises(RuntimeError, match="E-stop is not released"):
            robot.Enable()
        sims[SERIAL].inject("release_estop")
        assert robot.estop_released() and robot.operational_status() == api.OperationalStatus.NOT_ENABLED
        robot.Enable()
        wait_until(robot.operational, "operational after release")


# -- the cache and the non-blocking commands ------------------------------------------------------------


def _off_the_wire(robot: Any) -> None:
    """Make any request or command of this Robot instance fail the test: what it still answers is local."""

    def refused(*_: Any, **__: Any) -> None:
        raise AssertionError("a getter went to the controller")

    robot._link.request = refused
    robot._link.send = refused


def test_the_getters_read_a_cache_the_controller_keeps_current(api):
    """Another Robot instance changes the robot; this one, making no request, sees each change within a bound,
    with the controller's timestamp."""
    with simulated(api) as sims:
        watcher = api.Robot(SERIAL)
        gripper = api.Gripper(watcher)
        robot = enabled_robot(api)
        _off_the_wire(watcher)
        wait_until(watcher.operational, "the enabling seen")
        assert watcher.operational_status() == api.OperationalStatus.READY and not watcher.fault()
        robot.SwitchMode(api.Mode.NRT_JOINT_POSITION)
        wait_until(lambda: watcher.mode() == api.Mode.NRT_JOINT_POSITION, "the mode change seen")
        goal = (HOME_Q_RAD + 0.1).tolist()
        send_joints(api, robot, goal, [1.0] * 7, [2.0] * 7)
        wait_until(watcher.busy, "the motion seen")
        wait_until(lambda: np.allclose(states(api, watcher).q, goal, atol=1e-9), "the arrival seen")
        wait_until(lambda: not watcher.busy(), "the rest seen")
        state = states(api, watcher)
        assert np.allclose(state.tcp_pose, sims[SERIAL].tcp_pose(), atol=1e-9)
        assert abs(controller_time(state) - time.time()) < WAIT_S, "the controller's clock"
        wait_until(lambda: controller_time(states(api, watcher)) > controller_time(state), "time advancing at rest")
        assert gripper.states().width == pytest.approx(0.0), "no gripper enabled"
        robot.Stop()
        wait_until(lambda: watcher.mode() == api.Mode.IDLE, "the stop seen")


def test_an_injected_fault_is_in_the_cache_when_inject_returns(api):
    with simulated(api) as sims:
        robot = enabled_robot(api)
        _off_the_wire(robot)
        sims[SERIAL].inject("estop")
        assert not robot.estop_released() and robot.operational_status() == api.OperationalStatus.ESTOP_NOT_RELEASED
        sims[SERIAL].inject("release_estop")
        assert robot.estop_released() and robot.operational_status() == api.OperationalStatus.NOT_ENABLED


def test_a_command_refused_for_its_mode_or_arguments_raises_at_once_and_is_never_sent(api):
    with simulated(api) as sims:
        robot = enabled_robot(api)
        pose = list(states(api, robot).tcp_pose)
        with pytest.raises(RuntimeError, match=r"SendCartesianMotionForce\] Robot is not in an applicable control mode"):
            send_pose(api, robot, pose)
        robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
        with pytest.raises(RuntimeError, match=r"SendJointPosition\] Robot is not in an applicable control mode"):
            send_joints(api, robot, HOME_Q_RAD.tolist(), [1.0] * 7, [1.0] * 7)
        with pytest.raises(ValueError, match=r"\[pose\] has a zero quaternion"):
            send_pose(api, robot, [*pose[:3], 0.0, 0.0, 0.0, 0.0])
        with pytest.raises(ValueError, match=r"\[pose\] must hold finite numbers"):
            send_pose(api, robot, [math.nan, *pose[1:]])
        robot.Stop()
        counts = sims[SERIAL].command_counts()
        assert counts["cartesian_motion"] == counts["joint_position"] == 0, "refused before it left"


def test_a_non_blocking_command_is_not_waited_on_and_a_blocking_one_is(api, monkeypatch):
    """SendCartesianMotionForce returns while the controller still holds it; Stop() waits for the controller,
    which handles a link's requests in order."""
    entered, release, handled = threading.Event(), threading.Event(), threading.Event()
    track = sim_controller._HANDLERS["cartesian_motion"]

    def held(robot: Any, args: dict[str, Any]) -> Any:
        entered.set()
        release.wait(WAIT_S)
        result = track(robot, args)
        handled.set()
        return result

    monkeypatch.setitem(sim_controller._HANDLERS, "cartesian_motion", held)
    with simulated(api) as sims:
        robot = enabled_robot(api)
        robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
        goal = list(states(api, robot).tcp_pose)
        goal[2] -= 0.01
        send_pose(api, robot, goal)
        assert not handled.is_set(), "returned before the controller handled it"
        assert entered.wait(WAIT_S)
        stopper = threading.Thread(target=robot.Stop)
        stopper.start()
        stopper.join(0.2)
        assert stopper.is_alive(), "Stop() waits for the controller"
        release.set()
        stopper.join(WAIT_S)
        assert handled.is_set() and not stopper.is_alive()
        assert sims[SERIAL].command_counts()["cartesian_motion"] == 1


# -- gripper and counts -----------------------------------------------------------------------------------


def test_gripper_moves_at_the_commanded_velocity(api):
    with simulated(api) as sims:
        robot = api.Robot(SERIAL)
        gripper = api.Gripper(robot)
        with pytest.raises(RuntimeError, match="No gripper enabled"):
            gripper_move(api, gripper, 0.05, 0.05, 20.0)
        with pytest.raises(ValueError, match="does not exist"):
            gripper.Enable("Robotiq-2F-85")
        gripper.Enable(GRIPPER)
        params = gripper.params()
        assert (params.name, params.min_width, params.max_width) == (GRIPPER, 0.0, 0.1)
        assert gripper.states().width == pytest.approx(0.1)
        with pytest.raises(ValueError, match=r"\[width\] is outside the valid range"):
            gripper_move(api, gripper, 0.2, 0.05, 20.0)
        with pytest.raises(ValueError, match=r"\[velocity\] is outside the valid range"):
            gripper_move(api, gripper, 0.05, 0.0, 20.0)
        started = time.monotonic()
        gripper_move(api, gripper, 0.03, 0.05, 20.0)
        wait_until(lambda: gripper.states().width == pytest.approx(0.03, abs=1e-6), "gripper at 0.03 m")
        assert time.monotonic() - started >= 0.07 / 0.05 * 0.9, "0.07 m at 0.05 m/s takes 1.4 s"
        assert not gripper.states().is_moving
        assert sims[SERIAL].command_counts()["gripper_move"] == 4


def test_reading_commands_nothing_and_every_command_is_counted(api):
    with simulated(api) as sims:
        robot = api.Robot(SERIAL)
        for _ in range(5):
            states(api, robot)
            robot.operational()
            robot.fault()
            robot.mode()
            api.Gripper(robot).states()
        counts = sims[SERIAL].command_counts()
        assert set(counts.values()) == {0}, counts
        robot.Enable()
        wait_until(robot.operational, "operational")
        robot.SwitchMode(api.Mode.NRT_CARTESIAN_MOTION_FORCE)
        for _ in range(3):
            send_pose(api, robot, list(states(api, robot).tcp_pose))
        robot.Stop()
        counts = sims[SERIAL].command_counts()
        assert (counts["enable"], counts["switch_mode"], counts["cartesian_motion"], counts["stop"]) == (1, 1, 3, 1)
        assert counts["motion_commands"] == 3
        assert set(sims["Rizon4-SIM002"].command_counts().values()) == {0}


# -- the controller process and its wire ----------------------------------------------------------------


def test_the_controller_runs_as_a_process_until_sigterm():
    command = [sys.executable, "-m", "drivers.flexiv.sim_controller", "--serial", SERIAL, "--serial", "Rizon4-SIM002"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert process.stdout is not None and process.stdin is not None
        word, address = process.stdout.readline().split()
        assert word == "ready"
        v1.discover_at(address)
        robot = v1.Robot(SERIAL)
        process.stdin.write(f"inject {SERIAL} estop\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "ok"
        assert not robot.estop_released()
        process.stdin.write(f"counts {SERIAL}\nbogus\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline())["enable"] == 0
        assert process.stdout.readline().startswith("error unknown command")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_a_stopped_controller_drops_its_robots(api):
    with simulated(api):
        robot = api.Robot(SERIAL)
        assert robot.connected()
    with pytest.raises(RuntimeError, match="Failed to deliver the request"):
        robot.Enable()
    assert not robot.connected()
    with pytest.raises(RuntimeError, match="Lost connection with the robot"):
        robot.operational()


def test_the_wire_refuses_malformed_requests_and_keeps_serving():
    with SimulatedRizons({SERIAL: RizonSimSpec()}) as sims:
        host, port = sims.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            reader = sock.makefile("rb")

            def ask(raw: bytes) -> dict[str, Any]:
                sock.sendall(raw + b"\n")
                reply: dict[str, Any] = json.loads(reader.readline())
                return reply

            assert ask(b"{not json")["ok"] is False
            assert "hello" in ask(b'{"id": 1, "op": "poll", "args": {}}')["message"]
            assert ask(b'{"id": 2, "op": "hello", "args": {"serial": "Rizon4-NOPE"}}')["ok"] is False
            assert ask(b'{"id": 3, "op": "hello", "args": {"serial": "Rizon4-SIM001"}}')["ok"] is True
            bad_pose = ask(b'{"id": 4, "op": "cartesian_motion", "args": {"pose": [1, "x"]}}')
            assert (bad_pose["kind"], bad_pose["id"]) == ("invalid_argument", 4)
            assert ask(b'{"id": 5, "op": "format_disk", "args": {}}')["ok"] is False
            assert ask(b"[1, 2]")["ok"] is False
            assert ask(b'{"id": 6, "op": "poll", "args": {}}')["result"]["status"] == "NOT_ENABLED"
        counts = sims[SERIAL].command_counts()
        assert counts["cartesian_motion"] == 1, "a refused command is still a command received"
        assert counts["enable"] == counts["switch_mode"] == 0


# -- the kinematic model ----------------------------------------------------------------------------------


def test_inverse_kinematics_recovers_reachable_poses_within_the_limits():
    kinematics = RizonKinematics(tcp_offset_m=(0.0, 0.0, 0.15))
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(Q_MIN_RAD * 0.8, Q_MAX_RAD * 0.8)
        target = kinematics.tcp_pose(q)
        solution, reached = kinematics.inverse(target, q + rng.normal(0.0, 0.1, 7))
        assert reached
        assert np.all(solution >= Q_MIN_RAD) and np.all(solution <= Q_MAX_RAD)
        pose = kinematics.tcp_pose(solution)
        assert np.linalg.norm(pose[:3] - target[:3]) < 1e-5
        assert geodesic_rad(from_quat_wxyz(pose[3:]), from_quat_wxyz(target[3:])) < 1e-4


def test_an_unreachable_pose_gives_the_nearest_within_the_limits():
    kinematics = RizonKinematics()
    far = np.array([2.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0])
    solution, reached = kinematics.inverse(far, HOME_Q_RAD)
    assert not reached
    assert np.all(solution >= Q_MIN_RAD) and np.all(solution <= Q_MAX_RAD)


def test_home_puts_the_flange_in_front_of_the_base_pointing_down():
    pose = RizonKinematics().flange_pose(HOME_Q_RAD)
    assert 0.5 < pose[0] < 0.8 and 0.2 < pose[2] < 0.5
    down = Rotation.from_quat(pose[3:], scalar_first=True).apply([0.0, 0.0, 1.0])
    assert down[2] < -0.99


def test_the_motion_generator_turns_the_short_way_within_its_limits():
    """A target 170 degrees around z is reached by the shorter arc, never faster than max_angular_vel."""
    kinematics = RizonKinematics()
    motion = MotionGenerator(kinematics, HOME_Q_RAD)
    start = kinematics.tcp_pose(HOME_Q_RAD)
    turned = Rotation.from_rotvec([0.0, 0.0, math.radians(170)]) * Rotation.from_rotvec(from_quat_wxyz(start[3:]))
    goal = np.concatenate([start[:3], to_quat_wxyz(turned.as_rotvec())])
    motion.track(CartesianTarget(goal, max_angular_vel=1.0))
    total = 0.0
    for _ in range(2000):
        before = kinematics.tcp_pose(motion.q_rad)
        motion.step(0.005)
        step = geodesic_rad(from_quat_wxyz(before[3:]), from_quat_wxyz(kinematics.tcp_pose(motion.q_rad)[3:]))
        assert step <= 1.0 * 0.005 * 1.01 + 1e-9
        assert np.all(np.abs(motion.dq_rad_s) <= DQ_MAX_RAD_S + 1e-9)
        total += step
    end = kinematics.tcp_pose(motion.q_rad)
    assert geodesic_rad(from_quat_wxyz(end[3:]), from_quat_wxyz(goal[3:])) < math.radians(0.5)
    assert total < math.radians(175)
