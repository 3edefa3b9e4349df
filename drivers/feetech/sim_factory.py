"""A simulated motor-setup bench: a box of STS3215s as they come from the factory (all id 1 at 1 Mbaud,
one reused at another rate) and a controller board's cable that holds whichever of them the operator
connects. `setup-motors --sim` holds it in the command's process with an operator who connects the motor
asked for; `python -m drivers.feetech.sim_factory` serves it as a device of its own, the operator taking
commands on stdin, for `setup-motors --port` pointed at its port as at a real board."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from drivers.feetech.control_table import REGISTERS
from drivers.feetech.models import MODELS
from drivers.feetech.setup import baud_code
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import SimServo
from robot_runtime.sim_console import Command, serve

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

    @property
    def description(self) -> str:
        reused = f"the {REUSED_MOTOR} one reused at {REUSED_BAUD_BPS} baud"
        return f"factory-fresh motors (id {FACTORY_ID}, {FACTORY_BAUD_BPS} baud), {reused}"

    def connect_only(self, name: str) -> None:
        """Unplug whatever is on the cable and plug in the servo for motor `name`."""
        if name not in self.box:
            raise ValueError(f"no motor {name!r} in the box (motors: {', '.join(self.box)})")
        self.disconnect()
        self.simulator.attach(self.box[name])

    def disconnect(self) -> None:
        """Nothing on the cable."""
        for servo in self.simulator.servos:
            self.simulator.detach(servo)

    def assemble(self) -> None:
        """Every motor of the box on the cable, daisy-chained, as in the assembled arm."""
        self.disconnect()
        for servo in self.box.values():
            self.simulator.attach(servo)

    def operator_commands(self) -> dict[str, Command]:
        return {
            "connect": Command(self.connect_only, "only this motor on the controller board's cable", ("MOTOR",)),
            "disconnect": Command(self.disconnect, "nothing on the cable"),
            "assemble": Command(self.assemble, "every motor on the cable, daisy-chained as in the arm"),
        }

    def __enter__(self) -> Self:
        self.simulator.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.simulator.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A controller board (pty) and a box of factory-fresh STS3215s; commands on stdin connect them."
    )
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="so100_follower",
        help="the arm whose motors are in the box (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    with FactoryBench([m.name for m in MODELS[args.model].motors]) as bench:
        serve(bench.simulator.port_path, bench.operator_commands())


if __name__ == "__main__":
    main()
