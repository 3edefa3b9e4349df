"""calibrate, setup-motors and find-port as a user with hardware runs them: no --sim, the command pointed
at devices that are simulators running as processes of their own (an arm never calibrated, a controller
board with a box of new motors, a USB bench), the test being the operator's hands at each of them."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from cli import WIDE, read_until, robot_cli, run_cli
from devices import Simulator, Terminal, simulator

from calibration.store import load_calibration
from drivers.feetech.bus import FeetechBus
from drivers.feetech.calibration import CALIBRATION_REGISTERS
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.sim_usb import ARM_ADAPTER_BY_ID
from robot_runtime.config import load_robot_config

LIMITED_JOINTS = [m.name for m in SO_MOTORS if m.name != "wrist_roll"]
"""wrist_roll turns freely: its range is the whole turn, nothing to record."""
DEVICE_TIMING = ("--set", "followers.0.reply_timeout_ms=50", "--set", "followers.0.retries=3")
"""A servo answers within microseconds; a simulated one answers from a process sharing two loaded cores with
the command, which may wait longer for the CPU than the default 5 ms (missed replies were seen beside two
CPU hogs). The config says so, as it would for a slow adapter."""


def motors_on(port: str) -> FeetechBus:
    """The arm's bus, opened by the test to look at what the motors hold; its patient timeout keeps a
    loaded machine from passing for a missing motor (the commands under test keep the config's)."""
    bus = FeetechBus(port, SO_MOTORS, reply_timeout_ms=50, retries=3)
    bus.open()
    return bus


# -- calibrate -------------------------------------------------------------------------------------


def calibrate_by_hand(terminal: Terminal, arm: Simulator) -> None:
    """The operator at the TUI: joints mid-range for homing, each limited joint to both end stops, write."""
    terminal.expect("1/3 Homing.")
    arm.do("hold-mid")
    terminal.press("\r")
    terminal.expect("2/3 Ranges.")
    for joint in LIMITED_JOINTS:
        for fraction in ("0", "1", "0.5"):
            arm.do(f"move {joint} {fraction}")  # answered once the TUI has read the joint there
    terminal.press("\r")
    terminal.expect("3/3 Review.")
    terminal.press("w")
    terminal.expect("Write the calibration to the motors")
    terminal.press("y")
    terminal.expect("Written")
    terminal.press("q")


def test_calibrate_without_sim_calibrates_an_arm_on_its_port_and_the_motors_hold_the_file(tmp_path: Path) -> None:
    with simulator("drivers.feetech.sim_calibration", "--model", "so100_follower") as arm:
        port, calibration_id = ("--set", f"followers.0.port={arm.address}"), ("--set", "followers.0.id=bench_arm")
        where = ("--calibration-dir", str(tmp_path))
        terminal = Terminal(robot_cli("calibrate", "--robot", "so100", *port, *calibration_id, *DEVICE_TIMING, *where))
        try:
            calibrate_by_hand(terminal, arm)
            returncode = terminal.wait()
        finally:
            terminal.close()
        output = terminal.output()
        path = tmp_path / "bench_arm.json"
        assert returncode == 0, output
        assert f"calibration written to the motors and {path}" in output
        calibration = load_calibration(path)
        bus = motors_on(arm.address)
        try:
            held = {register: bus.sync_read(register) for register in CALIBRATION_REGISTERS}
            mid = bus.sync_read("Present_Position")
        finally:
            bus.close()
    assert [c.id for c in calibration.values()] == [m.id for m in SO_MOTORS]
    for motor, cal in calibration.items():
        assert (cal.homing_offset, cal.range_min, cal.range_max) == tuple(held[r][motor] for r in CALIBRATION_REGISTERS)
    assert (calibration["wrist_roll"].range_min, calibration["wrist_roll"].range_max) == (0, 4095)
    # The joints were left mid-range: under the new offsets that pose reads half a turn, inside every range.
    for motor in LIMITED_JOINTS:
        assert abs(mid[motor] - 2047) <= 2, motor
        assert calibration[motor].range_min < mid[motor] < calibration[motor].range_max, motor


def test_calibrate_sim_calibrates_a_simulated_arm_its_simulated_hand_moves(tmp_path: Path) -> None:
    terminal = Terminal(robot_cli("calibrate", "--robot", "so100", "--sim", "--calibration-dir", str(tmp_path)))
    try:
        terminal.expect("1/3 Homing.")
        terminal.press("\r")  # the hand already holds the joints mid-range
        terminal.expect("2/3 Ranges.")
        # The hand sweeps the joints: Enter is refused (a joint not yet at both ends) until every range is full.
        deadline = time.monotonic() + 120
        while not terminal.shows("3/3 Review.", timeout_s=2):
            assert time.monotonic() < deadline, f"the ranges never filled: {terminal.output()[-3000:]}"
            terminal.press("\r")
        terminal.press("w")
        terminal.expect("Write the calibration to the motors")
        terminal.press("y")
        terminal.expect("Written")
        terminal.press("q")
        returncode = terminal.wait()
    finally:
        terminal.close()
    follower = load_robot_config("so100").followers[0].config
    assert isinstance(follower, FeetechArmConfig)
    assert returncode == 0, terminal.output()
    assert f"calibration written to the motors and {tmp_path / f'{follower.id}.json'}" in terminal.output()
    assert list(load_calibration(tmp_path / f"{follower.id}.json")) == [m.name for m in SO_MOTORS]


# -- setup-motors ----------------------------------------------------------------------------------


def test_setup_motors_without_sim_sets_up_each_motor_the_operator_connects_to_the_board() -> None:
    with simulator("drivers.feetech.sim_factory", "--model", "so100_follower") as board:
        process = subprocess.Popen(
            robot_cli("setup-motors", "--robot", "so100", *DEVICE_TIMING, "--port", board.address),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=WIDE,
        )  # fmt: skip
        assert process.stdin is not None
        output = ""
        try:
            for motor in reversed(SO_MOTORS):
                asked = f"connect ONLY the '{motor.name}' motor (id {motor.id}) to the controller board, then press Enter"
                output += read_until(process, asked)
                board.do(f"connect {motor.name}")
                process.stdin.write("\n")
                process.stdin.flush()
            output += process.communicate(timeout=60)[1]
        finally:
            process.kill()
        assert process.returncode == 0, output
        assert "wrist_flex: found id 1 at 115200 baud -> id 4 at 1000000 baud, verified" in output
        assert "gripper: found id 1 at 1000000 baud -> id 6 at 1000000 baud, verified" in output
        board.do("assemble")
        bus = motors_on(board.address)
        try:
            bus.check_motors()  # every id answers once, at the arm's rate, with the STS3215's model number
            locks = bus.sync_read("Lock")
        finally:
            bus.close()
    assert locks == {m.name: 1 for m in SO_MOTORS}


# -- find-port -------------------------------------------------------------------------------------


def test_find_port_without_sim_finds_the_replugged_arm_among_the_ports_linked_in_a_folder() -> None:
    with simulator("drivers.feetech.sim_usb", "--model", "so100_follower") as usb:
        process = subprocess.Popen(
            robot_cli("find-port", "--robot", "so100", *DEVICE_TIMING, "--serial-links", usb.address, "--timeout-s", "60"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=WIDE,
        )  # fmt: skip
        try:
            output = read_until(process, "unplug the arm's USB cable now")
            usb.do("unplug")
            output += read_until(process, "plug it back in")
            usb.do("plug-in")
            output += process.communicate(timeout=60)[1]
        finally:
            process.kill()
        assert process.returncode == 0, output
        went = re.search(r"^disappeared: (/dev/pts/\d+)$", output, re.MULTILINE)
        came = re.search(r"^appeared: (/dev/pts/\d+) \(was (/dev/pts/\d+): device names change on replug\)$", output, re.M)
        assert went and came, output
        assert came[2] == went[1] != came[1]
        assert "all 6 motors answer" in output
        link = f"{usb.address}/by-id/{ARM_ADAPTER_BY_ID}"
        assert f"--set followers.0.port={link}\n" in output
        bus = motors_on(link)  # the advice works: the arm's motors answer on the link
        try:
            bus.check_motors()
        finally:
            bus.close()


# -- the family behind the commands ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["calibrate", "setup-motors", "find-port"])
def test_a_family_without_the_tool_is_refused_with_the_family_named(command: str) -> None:
    result = run_cli(command, "--robot", "widowxai")
    assert result.returncode == 2
    assert (
        f"arm 'follower' is a trossen arm, and the trossen family has no {command} "
        "(it offers none of calibrate, setup-motors, find-port)"
    ) in result.stderr

