"""A simulated motor-setup bench for `setup-motors --sim`: a box of STS3215s as they come from the
factory (all id 1 at 1 Mbaud, one reused at another rate) and an operator who connects only the motor
the command asks for."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from drivers.feetech.control_table import REGISTERS
from drivers.feetech.setup import baud_code
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import SimServo

FACTORY_ID = 1
FACTORY_BAUD_BPS = 1_000_000
REUSED_MOTOR = "wrist_flex"
REUSED_BAUD_BPS = 115_200
"""The box holds one servo taken from another project, left at this rate: the setup must scan for it."""


def boxed_servo(baud_bps: int = FACTORY_BAUD_BPS) -> SimServo:
    """A servo with the factory id, listening at `baud_bps`."""
    servo = SimServo(FACTORY_ID)
    for register, value in (("Lock", 0), ("Baud_Rate", baud_code(baud_bps)), ("Lock", 1)):
        servo.write(REGISTERS[register].address, bytes([value]))
    return servo


class FactoryBench:
    """An empty simulated bus and a box with one servo per motor name; `connect_only` swaps the servo on the cable."""

    def __init__(self, motor_names: Sequence[str]) -> None:
        self.box = {name: boxed_servo(REUSED_BAUD_BPS if name == REUSED_MOTOR else FACTORY_BAUD_BPS) for name in motor_names}
        self.simulator = FeetechBusSimulator([])

    def connect_only(self, name: str) -> None:
        """Unplug whatever is on the cable and plug in the servo for motor `name`."""
        for servo in self.simulator.servos:
            self.simulator.detach(servo)
        self.simulator.attach(self.box[name])

    def __enter__(self) -> FactoryBench:
        self.simulator.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.simulator.stop()
