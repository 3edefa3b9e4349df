"""Giving an STS3215 the id and baud rate of its place in an arm, one motor on the cable at a time.

New servos all answer as id 1 (at 1 Mbaud, or another rate when reused), so a motor is found by a
broadcast ping at every rate the servos support, then its ID and Baud_Rate are written and read back.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence

from drivers.feetech.bus import BusError, FeetechBus, Motor
from drivers.feetech.control_table import BAUD_RATE_CODES, STS3215_MODEL_NUMBER
from robot_runtime.family_tools import FoundMotor, MotorSetup, MotorSetupError

SERVO_BAUD_RATES_BPS = tuple(BAUD_RATE_CODES.values())
"""Every rate an STS3215 can be set to, scanned in this order (the factory 1 Mbaud first)."""
_RATES_TEXT = ", ".join(map(str, SERVO_BAUD_RATES_BPS))

MODEL_NAMES = {STS3215_MODEL_NUMBER: "STS3215"}


def setup_order(motors: Sequence[Motor], names: Sequence[str] | None = None) -> list[Motor]:
    """The motors to set up, gripper first, from the far end of the chain as LeRobot's setup goes, so its
    instructions and ours match. `names` restricts to some (a replaced servo)."""
    known = {m.name for m in motors}
    unknown = [n for n in names or () if n not in known]
    if unknown:
        names_text = ", ".join(map(repr, unknown))
        raise ValueError(f"no motor named {names_text} on this arm (motors: {', '.join(m.name for m in motors)})")
    return [m for m in reversed(motors) if names is None or m.name in names]


def baud_code(baud_bps: int) -> int:
    """The Baud_Rate register value for a line speed."""
    for code, bps in BAUD_RATE_CODES.items():
        if bps == baud_bps:
            return code
    raise MotorSetupError(
        f"an STS3215 cannot be set to {baud_bps} baud (it supports {_RATES_TEXT}): change the arm's baudrate in the robot config"
    )


def find_single_motor(bus: FeetechBus, name: str) -> FoundMotor:
    """Broadcast-ping at every servo baud rate and require exactly one answer, from the motor `name`
    the operator connected; the bus is left at that motor's rate. Every rate is scanned, also after an
    answer, so a second motor left on the cable at another rate is caught before anything is written."""
    scans = []
    for baud_bps in SERVO_BAUD_RATES_BPS:
        bus.set_baudrate(baud_bps)
        scans.append(bus.broadcast_ping())
    answers = [(scan.baud_bps, motor_id) for scan in scans for motor_id in scan.ids]
    garbled = [scan.baud_bps for scan in scans if scan.garbled]
    if len(answers) > 1 or garbled:
        seen = [_answered(motor_id, baud_bps, count) for (baud_bps, motor_id), count in collections.Counter(answers).items()]
        seen += [f"garbled replies at {baud_bps} baud (motors answering at once, or a loose cable)" for baud_bps in garbled]
        raise MotorSetupError(
            f"more than one motor answered on {bus.port} ({'; '.join(seen)}): connect ONLY the '{name}' motor "
            "to the controller board, unplug every other motor, and try again"
        )
    if not answers:
        raise MotorSetupError(
            f"no motor answered on {bus.port} at any baud rate ({_RATES_TEXT}): check that the '{name}' motor is connected "
            "to the controller board with a 3-pin cable and is the only one, that the board's power supply is on, "
            f"and that {bus.port} is the controller board's port (ls /dev/serial/by-id/)"
        )
    baud_bps, motor_id = answers[0]
    bus.set_baudrate(baud_bps)
    with _naming(name):
        return FoundMotor(baud_bps, motor_id, bus.read_by_id("Model_Number", motor_id))


def assign(bus: FeetechBus, motor: Motor, found: FoundMotor, baud_bps: int) -> MotorSetup:
    """Give the found motor `motor.id` and `baud_bps`, check by reading ID, Baud_Rate and Model_Number
    back at the new id and rate, and lock its EEPROM again."""
    code = baud_code(baud_bps)
    if found.model_number != motor.model_number:
        raise MotorSetupError(
            f"{motor.name}: the motor found (id {found.id} at {found.baud_bps} baud) is {_model(found.model_number)}, "
            f"not {_model(motor.model_number)}: check that the '{motor.name}' motor is the one connected"
        )
    with _naming(motor.name):
        bus.set_baudrate(found.baud_bps)
        bus.write_by_id("Torque_Enable", found.id, 0)
        bus.write_by_id("Lock", found.id, 0)
        bus.write_by_id("ID", found.id, motor.id)  # answered from the old id; the new one holds after
        bus.write_by_id("Baud_Rate", motor.id, code)  # answered at the old rate
        bus.set_baudrate(baud_bps)
        if bus.silent([motor.id]):
            raise MotorSetupError(
                f"{motor.name}: no answer as id {motor.id} at {baud_bps} baud after writing ID and Baud_Rate: the motor "
                "did not take them (EEPROM still locked?) or the cable moved; run setup again for this motor"
            )
        _verify(bus, motor, {"ID": motor.id, "Baud_Rate": code, "Model_Number": motor.model_number})
        bus.write_by_id("Lock", motor.id, 1)
        _verify(bus, motor, {"Lock": 1})
    return MotorSetup(motor.name, found, motor.id, baud_bps)


def _answered(motor_id: int, baud_bps: int, count: int) -> str:
    who = f"id {motor_id}" if count == 1 else f"{count} motors with id {motor_id}"
    return f"{who} at {baud_bps} baud"


def _verify(bus: FeetechBus, motor: Motor, expected: dict[str, int]) -> None:
    for register, value in expected.items():
        actual = bus.read_by_id(register, motor.id)
        if actual != value:
            what = (
                f"{_model(actual)}, expected {_model(value)}"
                if register == "Model_Number"
                else f"{actual}, expected {value}"
            )
            raise MotorSetupError(f"{motor.name}: {register} reads {what} (id {motor.id} at {bus.baudrate} baud)")


def _model(model_number: int) -> str:
    name = MODEL_NAMES.get(model_number)
    return f"model {model_number} ({name})" if name else f"model {model_number}"


@contextlib.contextmanager
def _naming(motor_name: str) -> Iterator[None]:
    """Bus errors during setup say which motor was being set up."""
    try:
        yield
    except BusError as exc:
        raise MotorSetupError(f"{motor_name}: {exc}") from exc
