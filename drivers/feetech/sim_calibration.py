"""An SO arm fresh from assembly on a simulated bus (ids set, offsets and limits at factory values) and the
operator's hands: hold every joint mid-range, put one at a point of its travel, or sweep them all.
`calibrate --sim` holds it in the command's process with a simulated hand that follows the steps;
`python -m drivers.feetech.sim_calibration` serves it as a device of its own, the hands taking commands
on stdin, for `calibrate` pointed at its port as at a real arm."""

from __future__ import annotations

import argparse
import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from calibration.procedure import Step
from drivers.feetech.bus import Motor
from drivers.feetech.control_table import REGISTERS
from drivers.feetech.models import MODELS
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import SimServo
from drivers.feetech.sim_setup import SIM_CALIBRATION
from robot_runtime.sim_console import Command, serve

FULL_TURN_SWEEP_TICKS = 1500
"""How far either way the simulated hand turns a free joint (its range is the whole turn anyway)."""

SEEN_TIMEOUT_S = 30.0
"""How long a joint is held where it was put, waiting for the client to read it there."""

_PRESENT_POSITION = REGISTERS["Present_Position"].address


@dataclass(frozen=True)
class Travel:
    """A joint's mechanical travel in shaft ticks, where the arm's end stops are."""

    low: float
    high: float

    @property
    def mid(self) -> float:
        return (self.low + self.high) / 2

    def at(self, fraction: float) -> float:
        return self.low + fraction * (self.high - self.low)


def travel(motor: str) -> Travel:
    """The simulated arm's end stops: those of the calibrated simulated arm (`--sim`), in shaft ticks."""
    offset, low, high = SIM_CALIBRATION[motor]
    if high - low >= 4000:  # a free joint: the hand turns it some way around mid
        return Travel(2047 + offset - FULL_TURN_SWEEP_TICKS, 2047 + offset + FULL_TURN_SWEEP_TICKS)
    return Travel(low + offset, high + offset)


class WatchedServo(SimServo):
    """A servo that counts the reads of its position, so the hand holding its joint knows when the
    client has seen it there."""

    def __init__(self, servo_id: int, *, physical_ticks: float) -> None:
        super().__init__(servo_id, physical_ticks=physical_ticks)
        self._seen = threading.Condition()
        self.position_reads = 0

    def read(self, address: int, length: int) -> bytes:
        data = super().read(address, length)
        if address <= _PRESENT_POSITION < address + length:
            with self._seen:
                self.position_reads += 1
                self._seen.notify_all()
        return data

    def wait_reads(self, count: int, after: int, timeout_s: float) -> bool:
        """True once the position has been read `count` times since the counter stood at `after`."""
        with self._seen:
            return self._seen.wait_for(lambda: self.position_reads >= after + count, timeout_s)


@dataclass(frozen=True)
class CalibrationBench:
    """The simulated arm's servos and what an operator's hands do with them (torque must be off)."""

    port: str
    servos: dict[str, WatchedServo]
    travels: dict[str, Travel]

    def hold_mid_range(self) -> None:
        for motor, servo in self.servos.items():
            servo.set_physical_position(self.travels[motor].mid)

    def move(self, motor: str, fraction: float) -> None:
        """Put one joint at a fraction of its travel: 0 at one end stop, 1 at the other."""
        self.servos[motor].set_physical_position(self.travels[motor].at(fraction))

    def hold_until_seen(self, motor: str, fraction: float, timeout_s: float = SEEN_TIMEOUT_S) -> None:
        """Move one joint and hold it there until the client has read its position twice: the second
        read shows the first one, at the new position, was answered."""
        servo = self.servos[motor]
        reads = servo.position_reads
        self.move(motor, fraction)
        if not servo.wait_reads(2, reads, timeout_s):
            raise TimeoutError(f"nothing read {motor}'s position within {timeout_s:g} s: is a client connected to {self.port}?")

    def sweep(self, period_s: float = 4.0) -> None:
        """Every joint swings from mid-range to both end stops and back, each at its own pace."""
        t0_s = time.monotonic()
        for index, (motor, servo) in enumerate(self.servos.items()):
            span, period = self.travels[motor], period_s * (1 + 0.15 * index)

            def shaft(t: float, span: Travel = span, period: float = period) -> float:
                return span.mid + (span.high - span.mid) * math.sin(2 * math.pi * (t - t0_s) / period)

            servo.follow(shaft, physical=True)


def uncalibrated_arm(motors: Sequence[Motor], stack: contextlib.ExitStack) -> CalibrationBench:
    """The arm's servos at factory offsets and limits, resting mid-range, served on a pty until the stack closes."""
    travels = {m.name: travel(m.name) for m in motors}
    servos = {m.name: WatchedServo(m.id, physical_ticks=travels[m.name].mid) for m in motors}
    bus = FeetechBusSimulator(servos.values())
    stack.enter_context(bus)
    return CalibrationBench(bus.port_path, servos, travels)


def sim_operator(bench: CalibrationBench) -> Callable[[Step], None]:
    """The simulated hand of `calibrate --sim`: joints rest mid-range for homing and sweep their travel while ranges record."""

    def on_step(step: Step) -> None:
        if step is Step.RANGES:
            bench.sweep()
        elif step in (Step.HOMING, Step.REVIEW):
            bench.hold_mid_range()

    return on_step


def operator_commands(bench: CalibrationBench) -> dict[str, Command]:
    def move(motor: str, fraction: str) -> None:
        if motor not in bench.servos:
            raise ValueError(f"no joint {motor!r} (joints: {', '.join(bench.servos)})")
        bench.hold_until_seen(motor, _fraction(fraction))

    return {
        "hold-mid": Command(bench.hold_mid_range, "every joint to the middle of its travel (the gripper half open)"),
        "move": Command(
            move, "one joint to a point of its travel (0 and 1: its end stops); answered once read there", ("JOINT", "FRACTION")
        ),
        "sweep": Command(bench.sweep, "every joint swings between its end stops until the next command"),
    }


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise ValueError(f"{text} is outside 0..1 (0 and 1 are the end stops)")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A never calibrated SO arm on a simulated Feetech bus (pty), its joints moved by commands on stdin."
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="so100_follower", help="the arm (default: %(default)s)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        bench = uncalibrated_arm(MODELS[args.model].motors, stack)
        serve(bench.port, operator_commands(bench))


if __name__ == "__main__":
    main()
