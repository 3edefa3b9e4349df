"""Motor setup, through the real SDK over the simulator's pty: one motor on the cable is found at any baud
rate, gets its id and the arm's baud rate, is verified by a fresh bus and has its EEPROM locked again;
anything else on the cable, or nothing, is a clear error. The command is driven as a user drives it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from cli import WIDE, read_until, robot_cli, run_cli

from drivers.feetech.bus import FeetechBus, Motor
from drivers.feetech.control_table import REGISTERS
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.setup import FoundMotor, MotorSetupError, assign, find_single_motor, setup_order
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_factory import boxed_servo
from drivers.feetech.sim_servo import SimServo

GRIPPER = Motor("gripper", 6)


@pytest.fixture
def cable() -> Iterator[FeetechBusSimulator]:
    """A controller board with nothing plugged in yet."""
    with FeetechBusSimulator([]) as sim:
        yield sim


@pytest.fixture
def setup_bus(cable: FeetechBusSimulator) -> Iterator[FeetechBus]:
    bus = FeetechBus(cable.port_path, (), reply_timeout_ms=5, retries=1)
    bus.open()
    yield bus
    bus.close()


def fresh_bus(port: str, motors: tuple[Motor, ...]) -> FeetechBus:
    bus = FeetechBus(port, motors, reply_timeout_ms=5, retries=1)
    bus.open()
    return bus


def test_a_reused_motor_at_115200_baud_becomes_the_gripper_at_1_mbaud(cable, setup_bus):
    cable.attach(boxed_servo(115_200))

    found = find_single_motor(setup_bus, "gripper")
    assert found == FoundMotor(baud_bps=115_200, id=1, model_number=777)
    assign(setup_bus, GRIPPER, found, 1_000_000)
    setup_bus.close()

    bus = fresh_bus(cable.port_path, (GRIPPER,))
    try:
        bus.check_motors()
        assert bus.read("ID", "gripper") == 6
        assert bus.read("Baud_Rate", "gripper") == 0
        assert bus.read("Lock", "gripper") == 1
    finally:
        bus.close()


def test_the_eeprom_is_locked_again_so_a_stray_write_cannot_change_the_id(cable, setup_bus):
    cable.attach(boxed_servo())
    assign(setup_bus, GRIPPER, find_single_motor(setup_bus, "gripper"), 1_000_000)

    setup_bus.write_by_id("ID", 6, 3)

    assert setup_bus.read_by_id("Lock", 6) == 1
    assert setup_bus.ping(6) and not setup_bus.ping(3)


def test_two_motors_on_the_cable_are_named_with_their_baud_rates(cable, setup_bus):
    cable.attach(boxed_servo())
    cable.attach(boxed_servo(115_200))

    two = r"more than one motor answered on .* \(id 1 at 1000000 baud; id 1 at 115200 baud\): connect ONLY the 'gripper' motor"
    with pytest.raises(MotorSetupError, match=two):
        find_single_motor(setup_bus, "gripper")


def test_two_motors_at_one_baud_rate_are_both_named(cable, setup_bus):
    cable.attach(SimServo(1))
    cable.attach(SimServo(3))

    with pytest.raises(MotorSetupError, match=r"\(id 1 at 1000000 baud; id 3 at 1000000 baud\)"):
        find_single_motor(setup_bus, "gripper")


def test_two_factory_fresh_motors_sharing_id_1_are_counted(cable, setup_bus):
    cable.attach(boxed_servo())
    cable.attach(boxed_servo())

    with pytest.raises(MotorSetupError, match=r"\(2 motors with id 1 at 1000000 baud\): connect ONLY the 'gripper' motor"):
        find_single_motor(setup_bus, "gripper")


def test_no_motor_on_the_cable_says_what_to_check(setup_bus):
    with pytest.raises(MotorSetupError) as info:
        find_single_motor(setup_bus, "gripper")
    message = str(info.value)
    rates = "1000000, 500000, 250000, 128000, 115200, 57600, 38400, 19200"
    assert f"no motor answered on {setup_bus.port} at any baud rate ({rates})" in message
    advices = ("'gripper' motor is connected", "3-pin cable", "is the only one", "power supply is on", "controller board's port")
    for advice in advices:
        assert advice in message


def test_a_motor_of_another_model_is_refused_before_anything_is_written(cable, setup_bus):
    servo = boxed_servo()
    servo._set("Model_Number", 1020)
    servo.writes.clear()
    cable.attach(servo)

    found = find_single_motor(setup_bus, "gripper")
    other_model = r"gripper: the motor found \(id 1 at 1000000 baud\) is model 1020, not model 777 \(STS3215\)"
    with pytest.raises(MotorSetupError, match=other_model):
        assign(setup_bus, GRIPPER, found, 1_000_000)
    assert not servo.writes


def test_a_motor_that_does_not_take_its_new_id_is_named_with_the_write_that_failed(cable, setup_bus, monkeypatch):
    servo = boxed_servo()
    store = servo.write
    id_address = REGISTERS["ID"].address
    monkeypatch.setattr(servo, "write", lambda address, data: None if address == id_address else store(address, data))
    cable.attach(servo)

    found = find_single_motor(setup_bus, "gripper")
    with pytest.raises(MotorSetupError, match=r"^gripper: motor 6 did not answer on .* \(write of Baud_Rate\): .*its id is 6"):
        assign(setup_bus, GRIPPER, found, 1_000_000)


def test_a_baud_rate_the_servos_cannot_take_is_refused(cable, setup_bus):
    cable.attach(boxed_servo())
    found = find_single_motor(setup_bus, "gripper")

    with pytest.raises(MotorSetupError, match="an STS3215 cannot be set to 4800 baud"):
        assign(setup_bus, GRIPPER, found, 4800)


def test_motors_are_set_up_gripper_first_and_can_be_restricted():
    gripper_first = ["gripper", "wrist_roll", "wrist_flex", "elbow_flex", "shoulder_lift", "shoulder_pan"]
    assert [m.name for m in setup_order(SO_MOTORS)] == gripper_first
    assert [m.name for m in setup_order(SO_MOTORS, ["shoulder_pan", "gripper"])] == ["gripper", "shoulder_pan"]
    with pytest.raises(ValueError, match=r"no motor named 'elbow' on this arm \(motors: shoulder_pan, "):
        setup_order(SO_MOTORS, ["elbow"])


# -- the command ---------------------------------------------------------------------------------


def prompt(motor: Motor) -> str:
    return f"connect ONLY the '{motor.name}' motor (id {motor.id}) to the controller board, then press Enter"


def start_setup(port: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        robot_cli("setup-motors", "--robot", "so100", "--port", port, *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=WIDE,
    )


def press_enter(process: subprocess.Popen) -> None:
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.flush()


def test_the_command_sets_up_a_whole_arm_as_the_operator_swaps_motors(cable):
    box = {m.name: boxed_servo(115_200 if m.name == "elbow_flex" else 1_000_000) for m in SO_MOTORS}
    process = start_setup(cable.port_path)
    output = ""
    try:
        for motor in reversed(SO_MOTORS):
            output += read_until(process, prompt(motor))
            for servo in cable.servos:
                cable.detach(servo)
            cable.attach(box[motor.name])
            press_enter(process)
        _, rest = process.communicate(timeout=30)
    finally:
        process.kill()
    output += rest
    assert process.returncode == 0, output
    assert "elbow_flex: found id 1 at 115200 baud -> id 3 at 1000000 baud, verified" in output
    assert "shoulder_pan: found id 1 at 1000000 baud -> id 1 at 1000000 baud, verified" in output
    assert "robot-runtime calibrate --robot so100 --arm follower" in output

    cable.detach(box["shoulder_pan"])
    for servo in box.values():  # the arm assembled: every motor on one chain
        cable.attach(servo)
    bus = fresh_bus(cable.port_path, SO_MOTORS)
    try:
        bus.check_motors()
        assert all(bus.read("Lock", m.name) == 1 for m in SO_MOTORS)
    finally:
        bus.close()


def test_a_failure_midway_says_what_is_done_and_how_to_go_on(cable):
    process = start_setup(cable.port_path)
    try:
        read_until(process, prompt(GRIPPER))
        cable.attach(boxed_servo())
        press_enter(process)
        read_until(process, prompt(Motor("wrist_roll", 5)))
        cable.detach(cable.servos[0])  # and nothing plugged in instead
        press_enter(process)
        _, output = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 1
    assert f"error: no motor answered on {cable.port_path} at any baud rate" in output
    assert (
        f"\nto go on once fixed: robot-runtime setup-motors --robot so100 --arm follower --port {cable.port_path} "
        "--motor wrist_roll wrist_flex elbow_flex shoulder_lift shoulder_pan\n"
    ) in output
    assert "id 6 @ 1000000" in output  # the summary of what was set


def test_with_stdin_closed_the_command_stops_instead_of_waiting(cable):
    result = run_cli("setup-motors", "--robot", "so100", "--port", cable.port_path)

    assert result.returncode == 1
    assert "error: stdin closed before Enter was pressed for the 'gripper' motor: run setup-motors in a terminal" in result.stderr


def test_sim_runs_unattended_and_finds_the_reused_motor_by_its_baud_rate():
    result = run_cli("setup-motors", "--robot", "so100", "--sim")

    assert result.returncode == 0, result.stderr
    found = [line.split(":")[0] for line in result.stderr.splitlines() if line.endswith(", verified")]
    assert found == ["gripper", "wrist_roll", "wrist_flex", "elbow_flex", "shoulder_lift", "shoulder_pan"]
    assert "wrist_flex: found id 1 at 115200 baud -> id 4 at 1000000 baud, verified" in result.stderr


def test_motor_restricts_the_command_to_the_named_motors():
    result = run_cli("setup-motors", "--robot", "so100", "--arm", "leader", "--sim", "--motor", "wrist_roll")

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("connect ONLY") == 1
    assert "wrist_roll: found id 1 at 1000000 baud -> id 5 at 1000000 baud, verified" in result.stderr
    assert "robot-runtime calibrate --robot so100 --arm leader" in result.stderr


def test_a_wrong_port_is_the_bus_error_that_says_what_to_check():
    result = run_cli("setup-motors", "--robot", "so100", "--port", "/dev/ttyDOESNOTEXIST")

    assert result.returncode == 1
    assert "cannot open serial port /dev/ttyDOESNOTEXIST: the port does not exist" in result.stderr


def test_a_config_baud_rate_the_servos_cannot_take_fails_before_any_motor_is_touched():
    result = run_cli("setup-motors", "--robot", "so100", "--sim", "--set", "followers.0.baudrate=4800")

    assert result.returncode == 1
    assert "an STS3215 cannot be set to 4800 baud" in result.stderr
    assert "connect ONLY" not in result.stderr
