"""`find-port --sim`: a simulated USB bench. The arm's adapter, described as the CH343 of a Feetech bus
servo board, is a real FeetechBusSimulator pty with SimServos behind it; an unrelated adapter (an Arduino)
sits beside it. Unplugging stops the simulator, so its pty path disappears; plugging back starts another
under a new path, as ttyACM0 comes back as ttyACM1. A temporary folder stands in for /dev/serial, and
its by-id link follows the adapter, as udev's does.

`find-port --sim` holds the bench in the command's process and lists its ports itself;
`python -m drivers.feetech.sim_usb` serves it as a process of its own, printing the folder standing in
for /dev/serial (for `find-port --serial-links`), its operator unplugging and replugging on stdin."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from drivers.feetech.models import MODELS
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import SimServo
from robot_runtime.ports import SerialPort, with_links
from robot_runtime.sim_console import Command, serve

OPERATOR_DELAY_S = 0.5
"""How long the simulated operator takes to act on a prompt."""

ARM_ADAPTER = SerialPort(
    device="",
    description="USB Single Serial (simulated)",
    manufacturer="QinHeng Electronics (simulated)",
    product="USB Single Serial",
    serial_number="SIM5A46083062",
    usb_id="1a86:55d3",
    location="1-2:1.0",
)
ARM_ADAPTER_BY_ID = "usb-1a86_USB_Single_Serial_SIM5A46083062-if00"

OTHER_ADAPTER = SerialPort(
    device="",
    description="Arduino Uno (simulated)",
    manufacturer="Arduino (www.arduino.cc) (simulated)",
    product="Arduino Uno",
    serial_number="SIM75935313",
    usb_id="2341:0043",
    location="1-3:1.0",
)
OTHER_ADAPTER_BY_ID = "usb-Arduino__www.arduino.cc__0043_SIM75935313-if00"


class SimulatedUsbBench:
    """The ports of a simulated bench (`ports` is a PortSource) and an operator who unplugs and plugs
    back the arm's cable when asked, a moment later, from a timer thread."""

    def __init__(self, servo_ids: Sequence[int]) -> None:
        self._servo_ids = tuple(servo_ids)
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._arm: FeetechBusSimulator | None = None
        self._next_arm: FeetechBusSimulator | None = None
        self._other_fds: tuple[int, int] | None = None
        self._other_path = ""
        self.links_root = Path(tempfile.mkdtemp(prefix="robot-runtime-sim-usb-"))
        """Stands in for /dev/serial: its by-id links exist only while the bench runs."""

    def start(self) -> SimulatedUsbBench:
        try:
            (self.links_root / "by-id").mkdir()
            self._other_fds = os.openpty()
            self._other_path = os.ttyname(self._other_fds[1])
            self._link(OTHER_ADAPTER_BY_ID, self._other_path)
            self.plug_in()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
            timer.join()
        with self._lock:
            for simulator in (self._arm, self._next_arm):
                if simulator is not None:
                    simulator.stop()
            self._arm = self._next_arm = None
        if self._other_fds is not None:
            for fd in self._other_fds:
                os.close(fd)
            self._other_fds = None
        shutil.rmtree(self.links_root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()

    def ports(self) -> list[SerialPort]:
        with self._lock:
            ports = [dataclasses.replace(OTHER_ADAPTER, device=self._other_path)]
            if self._arm is not None:
                ports.append(dataclasses.replace(ARM_ADAPTER, device=self._arm.port_path))
        return with_links(ports, self.links_root)

    def unplug(self) -> None:
        """The arm's pty disappears. Its replacement is started first, while the old pty number is still
        taken, so the kernel gives it another: the replugged adapter always comes back under a new name."""
        with self._lock:
            if self._arm is None:
                return
            self._next_arm = self._started_simulator()
            (self.links_root / "by-id" / ARM_ADAPTER_BY_ID).unlink()
            self._arm.stop()
            self._arm = None

    def plug_in(self) -> None:
        with self._lock:
            if self._arm is not None:
                return
            self._arm, self._next_arm = self._next_arm or self._started_simulator(), None
            self._link(ARM_ADAPTER_BY_ID, self._arm.port_path)

    def unplug_soon(self, after_s: float = OPERATOR_DELAY_S) -> None:
        self._later(after_s, self.unplug)

    def plug_in_soon(self, after_s: float = OPERATOR_DELAY_S) -> None:
        self._later(after_s, self.plug_in)

    def _later(self, after_s: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(after_s, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _started_simulator(self) -> FeetechBusSimulator:
        """Fresh servos, as after a power cycle of the board."""
        simulator = FeetechBusSimulator(SimServo(servo_id) for servo_id in self._servo_ids)
        simulator.start()
        return simulator

    def _link(self, name: str, target: str) -> None:
        (self.links_root / "by-id" / name).symlink_to(target)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A simulated USB bench: an SO arm's serial adapter (pty) and an unrelated one, linked by-id in a folder "
        "standing in for /dev/serial (printed); commands on stdin unplug and replug the arm's cable."
    )
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="so100_follower", help="the arm behind the adapter (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    with SimulatedUsbBench([m.id for m in MODELS[args.model].motors]) as bench:
        serve(
            str(bench.links_root),
            {
                "unplug": Command(bench.unplug, "pull the arm's USB cable: its port and by-id link disappear"),
                "plug-in": Command(bench.plug_in, "plug it back: a new port, the same by-id link"),
            },
        )


if __name__ == "__main__":
    main()
