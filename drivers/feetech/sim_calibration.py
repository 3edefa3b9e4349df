"""`calibrate --sim`: an SO arm fresh from assembly on a simulated bus (ids set, offsets and limits at
factory values) and the operator's hands: hold every joint mid-range, or sweep each through its travel."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.feetech.bus import Motor
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import SimServo
from drivers.feetech.sim_setup import SIM_CALIBRATION

FULL_TURN_SWEEP_TICKS = 1500
"""How far either way the simulated hand turns a free joint (its range is the whole turn anyway)."""


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


@dataclass(frozen=True)
class CalibrationBench:
    """The simulated arm's servos and what an operator's hands do with them (torque must be off)."""

    port: str
    servos: dict[str, SimServo]
    travels: dict[str, Travel]

    def hold_mid_range(self) -> None:
        for motor, servo in self.servos.items():
            servo.set_physical_position(self.travels[motor].mid)

    def move(self, motor: str, fraction: float) -> None:
        """Put one joint at a fraction of its travel: 0 at one end stop, 1 at the other."""
        self.servos[motor].set_physical_position(self.travels[motor].at(fraction))

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
    servos = {m.name: SimServo(m.id, physical_ticks=travels[m.name].mid) for m in motors}
    bus = FeetechBusSimulator(servos.values())
    stack.enter_context(bus)
    return CalibrationBench(bus.port_path, servos, travels)
