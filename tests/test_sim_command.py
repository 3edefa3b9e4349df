"""`robot-runtime sim FAMILY --robot R` serves a family's simulated arms from a process of its own, on their
real transports (ptys, loopback addresses), as powered-up arms: stdout says where each arm is, the `--set`
overrides that point the robot config there, then `ready`; stdin takes commands. `--sim` starts the same
processes and applies their overrides, so a command then runs the code it runs on hardware."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scservo_sdk as scs
from cli import WIDE, robot_cli, run_cli

from drivers.feetech.bus import FeetechBus
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.sim_setup import SIMULATED_REPLY_TIMEOUT_MS
from robot_runtime.config import load_robot_config
from robot_runtime.demo import Demonstration, ScriptedDemo
from robot_runtime.session import Session
from robot_runtime.sim_client import SimulatorError

START_TIMEOUT_S = 90.0
"""A simulator's start-up (imports; a MuJoCo controller per WidowX AI arm), on a loaded 2-core machine."""
REPLY_TIMEOUT_S = 15.0
MOVED = {"feetech": 10.0, "trossen": 0.2}
"""Joint travel (degrees, radians) that only the demonstration explains."""


@dataclass
class Served:
    """A running `robot-runtime sim`: what it announced, and its command channel."""

    process: subprocess.Popen[bytes]
    announced: list[str] = field(default_factory=list)
    _pending: bytes = b""

    @property
    def arms(self) -> dict[str, str]:
        return dict(line.split() for line in self.announced[:-1])

    @property
    def overrides(self) -> list[str]:
        """`--set=KEY=VALUE` words of the overrides line."""
        words = shlex.split(self.announced[-1])
        assert words[0] == "overrides", self.announced
        return words[1:]

    def line(self, timeout_s: float = REPLY_TIMEOUT_S) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            remaining_s = deadline - time.monotonic()
            assert remaining_s > 0, f"no line from the simulator within {timeout_s:g} s"
            ready, _, _ = select.select([self.process.stdout], [], [], remaining_s)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                assert chunk, f"the simulator closed stdout (exit code {self.process.poll()})"
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def command(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()
        return self.line()

    def pose(self, arm: str) -> np.ndarray:
        reply = self.command(f"pose {arm}")
        assert reply.startswith("ok "), reply
        return np.array(list(json.loads(reply[3:]).values()))


@contextlib.contextmanager
def serve(family: str, robot: str, *args: str, stdin: int = subprocess.PIPE) -> Iterator[Served]:
    """`robot-runtime sim FAMILY --robot ROBOT ARGS...` once it printed `ready`; always stopped."""
    command = robot_cli("sim", family, "--robot", robot, *args)
    process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=WIDE)
    served = Served(process)
    try:
        while (line := served.line(START_TIMEOUT_S)) != "ready":
            served.announced.append(line)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def wait_until_moved(pose, start: np.ndarray, travel: float, timeout_s: float = 20.0) -> np.ndarray:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = pose()
        if np.abs(now - start).max() > travel:
            return now
        time.sleep(0.1)
    raise AssertionError(f"the arm did not move {travel:g} within {timeout_s:g} s: still at {pose()}")


def simulator_processes(parent: int) -> set[int]:
    """Processes started by `parent` (children and their children) that run a simulator."""
    found: set[int] = set()
    parents = {parent}
    for _ in range(2):
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
                if ppid in parents and (b"robot_runtime.sim_serve" in cmdline or b"drivers.trossen.sim_server" in cmdline):
                    found.add(int(entry.name))
        parents |= found
    return found


def running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: set[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (alive := {pid for pid in pids if running(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"simulator processes still running: {alive}"


# -- the contract of `robot-runtime sim` ------------------------------------------------------------


def test_sim_feetech_announces_each_arm_then_the_overrides_then_ready():
    with serve("feetech", "so100") as sim:
        assert list(sim.arms) == ["follower", "leader"]
        assert all(re.fullmatch(r"/dev/pts/\d+", port) for port in sim.arms.values()), sim.arms
        keys = [word.removeprefix("--set=").split("=")[0] for word in sim.overrides]
        settings = ("port", "calibration_dir", "reply_timeout_ms")
        assert keys == [f"{arm}.{setting}" for arm in ("followers.0", "leaders.0") for setting in settings]
        assert f"--set=followers.0.port={sim.arms['follower']}" in sim.overrides


def test_the_overrides_point_the_config_at_the_buses_and_give_them_a_simulator_s_reply_timeout():
    with serve("feetech", "so100") as sim:
        config = load_robot_config("so100", [word.removeprefix("--set=") for word in sim.overrides])
        (follower,) = config.followers
        assert isinstance(follower.config, FeetechArmConfig) and config.sim is not None
        assert follower.config.port == sim.arms["follower"]
        device_timeout_ms = FeetechArmConfig.model_fields["reply_timeout_ms"].default
        assert follower.config.reply_timeout_ms == SIMULATED_REPLY_TIMEOUT_MS > device_timeout_ms
        arm = follower.family.build(follower.config, "follower")
        arm.connect(observe_only=True)  # checks every motor and the calibration the overrides name
        try:
            expected = [config.sim.start_pose[name] for name in arm.joint_names]
            assert np.allclose(arm.read().position, expected, atol=0.5)
        finally:
            arm.disconnect()
        port = scs.PortHandler(sim.arms["leader"])  # and any stock SDK client
        assert port.openPort()
        try:
            assert [scs.PacketHandler(0).ping(port, i)[:2] for i in range(1, 7)] == [(777, scs.COMM_SUCCESS)] * 6
        finally:
            port.closePort()


def test_write_config_writes_a_robot_yaml_that_reaches_the_simulators_as_it_is(tmp_path):
    written = tmp_path / "so100-sim.yaml"
    with serve("feetech", "so100", "--write-config", str(written)) as sim:
        config = load_robot_config(str(written))
        follower, leader = config.followers[0].config, config.leaders[0].config
        assert isinstance(follower, FeetechArmConfig) and isinstance(leader, FeetechArmConfig)
        assert follower.port == sim.arms["follower"] and leader.port == sim.arms["leader"]
        assert follower.calibration_dir is not None and (follower.calibration_dir / "my_so100_follower.json").is_file()
        assert config.cameras.keys() == load_robot_config("so100").cameras.keys()


@pytest.mark.parametrize(("family", "robot"), [("feetech", "so100"), ("trossen", "widowxai")])
def test_a_simulated_leader_holds_its_start_pose_until_the_demo_command(family, robot):
    with serve(family, robot) as sim:
        before = sim.pose("leader")
        time.sleep(2.0)  # longer than the demonstration's hold: it would be moving had it started
        assert np.allclose(sim.pose("leader"), before, atol=MOVED[family] / 10)
        assert sim.command("demo") == "ok"
        wait_until_moved(lambda: sim.pose("leader"), before, MOVED[family])
        assert np.allclose(sim.pose("follower"), before, atol=MOVED[family] / 10), "followers have no demonstration"


def test_a_fault_command_breaks_the_named_joint_for_every_client():
    with serve("feetech", "so100") as sim:
        assert sim.command("fault follower:wrist_flex:no_reply") == "ok"
        bus = FeetechBus(sim.arms["follower"], SO_MOTORS, reply_timeout_ms=5, retries=3)
        bus.open()
        try:
            assert not bus.ping(4)
            assert bus.ping(3) and bus.ping(5)
        finally:
            bus.close()


def test_commands_it_cannot_carry_out_are_answered_with_the_reason():
    with serve("feetech", "so100") as sim:
        faults = "no_reply, corrupt_checksum, overload, late_reply"
        assert sim.command("fault follower:wrist_flex:melted") == f"error: unknown fault 'melted' for follower (faults: {faults})"
        assert sim.command("fault follower:elbow:no_reply").startswith("error: follower has no joint 'elbow'")
        assert sim.command("fault arm2:wrist_flex:no_reply") == "error: no simulated arm 'arm2' (arms: follower, leader)"
        assert sim.command("fault wrist_flex").startswith("error: expected fault LABEL:JOINT:FAULT")
        assert sim.command("dance").startswith("error: unknown command 'dance' (commands: demo [LABEL], fault LABEL:JOINT:FAULT,")
        assert sim.command("writes follower").startswith("ok {")  # still serving


def test_with_stdin_at_dev_null_it_serves_until_sigterm():
    with serve("feetech", "so100", stdin=subprocess.DEVNULL) as sim:
        time.sleep(1.0)
        assert sim.process.poll() is None, "the end of /dev/null stopped it"
        bus = FeetechBus(sim.arms["follower"], SO_MOTORS, reply_timeout_ms=5, retries=3)
        bus.open()
        assert bus.ping(1)
        bus.close()
        sim.process.send_signal(signal.SIGTERM)
        assert sim.process.wait(timeout=30) == 0


def test_the_end_of_a_piped_stdin_stops_it_the_driving_program_is_gone():
    with serve("feetech", "so100") as sim:
        assert sim.process.stdin is not None
        sim.process.stdin.close()
        assert sim.process.wait(timeout=30) == 0


def test_sim_trossen_serves_each_controller_on_a_loopback_address_for_the_vendor_driver():
    with serve("trossen", "widowxai") as sim:
        assert list(sim.arms) == ["follower", "leader"]
        assert all(re.fullmatch(r"127\.0\.0\.\d+", ip) for ip in sim.arms.values()) and len(set(sim.arms.values())) == 2
        assert sim.overrides == [f"--set=followers.0.ip={sim.arms['follower']}", f"--set=leaders.0.ip={sim.arms['leader']}"]
        config = load_robot_config("widowxai", [word.removeprefix("--set=") for word in sim.overrides])
        follower = config.followers[0]
        arm = follower.family.build(follower.config, "follower")
        arm.connect(observe_only=True)
        try:
            assert config.sim is not None
            assert np.allclose(arm.read().position, [config.sim.start_pose[j] for j in arm.joint_names], atol=0.02)
        finally:
            arm.disconnect()
        writes = json.loads(sim.command("writes follower").removeprefix("ok "))
        assert writes == {"position_inputs": 0, "position_goal_changes": 0}, "observe-only commands nothing"
        assert sim.command("fault follower:joint_2:JOINT_OVERHEATED") == "ok"


def test_sim_of_a_family_the_robot_does_not_have_is_a_clear_error():
    result = run_cli("sim", "dynamixel", "--robot", "so100")
    assert result.returncode == 2
    assert "no arm of family 'dynamixel' (arms: follower (feetech), leader (feetech))" in " ".join(result.stderr.split())


# -- `--sim`: the same processes, the config pointed at them -----------------------------------------


def test_under_sim_the_arms_are_reached_through_simulator_processes_with_a_simulator_s_reply_timeout():
    config = load_robot_config("so100")
    with Session(config, sim=True, with_cameras=False) as session:
        simulators = simulator_processes(os.getpid())
        assert len(simulators) == 1, "one simulator process for the Feetech family"
        simulated = session.simulated["follower"]
        assert isinstance(simulated.config, FeetechArmConfig) and isinstance(config.followers[0].config, FeetechArmConfig)
        assert config.sim is not None
        assert simulated.config.port == simulated.address and re.fullmatch(r"/dev/pts/\d+", simulated.address)
        assert simulated.config.reply_timeout_ms == SIMULATED_REPLY_TIMEOUT_MS > config.followers[0].config.reply_timeout_ms
        expected = [config.sim.start_pose[name] for name in simulated.joint_names]
        assert np.allclose(session.follower.read().position, expected, atol=0.5)
        assert np.allclose(simulated.pose(), expected, atol=0.5), "the pose shared by the simulator process"
        assert simulated.writes()["Torque_Enable"] > 0, "the follower was set up over the wire"
    assert [r.torque_safe for r in session.stop_reports] == [True, True]
    wait_gone(simulators)


def test_start_demonstrations_moves_the_simulated_leaders_from_then_on_only():
    config = load_robot_config("so100")
    with Session(config, sim=True, with_cameras=False) as session:
        assert session.leader is not None
        before = session.leader.read().position
        time.sleep(2.0)
        assert np.allclose(session.leader.read().position, before, atol=0.5)
        session.start_demonstrations()
        wait_until_moved(lambda: session.leader.read().position, before, MOVED["feetech"])


def test_a_simulator_that_cannot_start_is_reported_with_the_end_of_its_log(so100_yaml, write_robot):
    del so100_yaml["sim"]["start_pose"]["gripper"]
    config = load_robot_config(str(write_robot(so100_yaml)))
    with pytest.raises(SimulatorError) as caught, Session(config, sim=True, with_cameras=False):
        pass
    message = str(caught.value)
    assert "the feetech simulator process exited (code 1) before its start; its log ends:" in message
    assert "sim.start_pose: missing joints ['gripper']" in message
    assert not simulator_processes(os.getpid())


def test_ctrl_c_while_the_simulators_start_leaves_none_running(tmp_path):
    log = tmp_path / "stderr.txt"
    teleop = robot_cli("teleop", "--robot", "bi_widowxai", "--sim", "--no-cameras", "--duration", "30")
    with log.open("w") as sink:
        command = subprocess.Popen(teleop, stdin=subprocess.DEVNULL, stderr=sink, env=WIDE)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(started := simulator_processes(command.pid)) < 2:  # the simulator process and its first controller
            assert command.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        command.send_signal(signal.SIGINT)
        command.wait(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    wait_gone(started)
    assert "Traceback" not in log.read_text()


def test_a_demonstration_holds_its_start_until_started_and_a_second_start_changes_nothing(fake_clock):
    script = ScriptedDemo(np.zeros(2), np.array([[10.0, -10.0]]), hold_s=1.0, segment_s=2.0)
    demo = Demonstration(script, clock=fake_clock)
    fake_clock.advance(100.0)
    assert demo(fake_clock()).tolist() == [0.0, 0.0], "not started: the start pose, however long the wait"
    demo.start()
    fake_clock.advance(1.0 + 2.0)  # the hold, then one segment: at the waypoint
    assert demo(fake_clock()).tolist() == [10.0, -10.0]
    demo.start()
    assert demo(fake_clock()).tolist() == [10.0, -10.0], "a second start does not send the leader back"
