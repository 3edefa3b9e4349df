"""The per-arm tools a family may offer beside driving an arm: calibrate, setup-motors, find-port. The
commands parse their options, pick the arm and run the steps every bus family shares (the calibration
TUI, one motor at a time, the unplug-and-replug watch); the family hook gives them the family's side:
its bus, its registers, its simulated bench. A new bus family adds its hooks without touching apps/."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from calibration.normalization import NormMode
from calibration.procedure import CalibrationBus, Step
from robot_runtime.ports import SerialPort
from robot_runtime.robot import ArmError


class NamedMotor(Protocol):
    """A motor as the commands speak of it: its name in the arm and its id on the bus."""

    @property
    def name(self) -> str: ...

    @property
    def id(self) -> int: ...


# -- calibrate -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrateRequest:
    port: str | None
    """--port; None: the arm's configured port."""
    calibration_dir: Path | None
    """--calibration-dir; None: the config's folder, else LeRobot's location for this arm."""
    simulate: bool
    """--sim: a never calibrated simulated arm whose joints a simulated hand moves."""


@dataclass(frozen=True)
class CalibrationTarget:
    """What calibrating one arm needs from its family."""

    bus: CalibrationBus
    """Open; closed by the exit stack given to the hook."""
    path: Path
    """Where the calibration file goes."""
    full_turn: frozenset[str]
    """Joints that turn freely: calibrated over the whole encoder turn."""
    modes: tuple[NormMode, ...]
    """How each motor's position is shown in joint units, in bus order."""
    identity: str
    """The arm's model and calibration id for the title, e.g. "so100_follower, id 'my_arm'"."""
    on_step: Callable[[Step], None] | None = None
    """The simulated hand under --sim: moves the joints as each step asks."""


Calibrate = Callable[[BaseModel, CalibrateRequest, contextlib.ExitStack], CalibrationTarget]
"""(arm config, request, exit stack that closes what was opened) -> the arm ready to calibrate."""


# -- setup-motors ----------------------------------------------------------------------------------


class MotorSetupError(ArmError):
    """Finding or setting up a motor failed; the message names the motor and what to check."""


@dataclass(frozen=True)
class FoundMotor:
    """The one motor on the cable, as it answered before setup."""

    baud_bps: int
    id: int
    model_number: int


@dataclass(frozen=True)
class MotorSetup:
    """What setup did to one motor, verified by reading the registers back."""

    name: str
    found: FoundMotor
    id: int
    baud_bps: int


@dataclass(frozen=True)
class MotorSetupRequest:
    motors: Sequence[str] | None
    """--motor: only these (a replaced servo); None: every motor of the arm."""
    port: str | None
    """--port; None: the arm's configured port."""
    simulate: bool
    """--sim: a simulated bench of factory-fresh motors whose simulated operator connects each one."""


@dataclass(frozen=True)
class SimulatedOperator:
    """The hands at a simulated bench: they connect only the motor asked for."""

    description: str
    """What is on the bench, said once before the first motor."""
    connect_only: Callable[[str], None]
    """(motor name) -> that motor alone is on the cable."""


@dataclass(frozen=True)
class MotorSetupBench:
    """A controller board's port, open, and the family's way to set up the one motor on its cable."""

    port: str
    model: str
    """The arm's model, for messages."""
    baud_bps: int
    """The rate every motor is set to: the arm's configured one."""
    factory_id: int
    """The id every new motor of the family answers as."""
    motors: tuple[NamedMotor, ...]
    """The motors to set up, in the order to connect them."""
    set_up: Callable[[NamedMotor], MotorSetup]
    """Find the one motor on the cable, give it its id and the arm's rate, verify; ArmError names what to check."""
    simulated: SimulatedOperator | None = None


SetupMotors = Callable[[BaseModel, MotorSetupRequest, contextlib.ExitStack], MotorSetupBench]
"""(arm config, request, exit stack) -> the open bench; a bad request (unknown motor, a baud rate the
motors cannot take) fails here, before any motor is touched."""


# -- find-port -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotorCheck:
    """Which of the arm's motors answered on a port, and the bus's own words for what is wrong."""

    port: str
    baud_bps: int
    answering: tuple[NamedMotor, ...]
    missing: tuple[NamedMotor, ...]
    problem: str | None


class UsbBench(Protocol):
    """A simulated USB bench: its serial ports, and an operator who unplugs and replugs the arm's cable
    a moment after being asked."""

    def ports(self) -> list[SerialPort]: ...

    def unplug_soon(self) -> None: ...

    def plug_in_soon(self) -> None: ...


@dataclass(frozen=True)
class FindPortRequest:
    simulate: bool
    """--sim: a simulated USB bench with this arm's motors behind its adapter."""


@dataclass(frozen=True)
class ArmPorts:
    """find-port's side of one arm: pinging its motors on a port, and under --sim the bench it is on."""

    check: Callable[[str], MotorCheck]
    """(port) -> every motor of the arm pinged there at its configured rate, models checked."""
    bench: UsbBench | None = None


FindPort = Callable[[BaseModel, FindPortRequest, contextlib.ExitStack], ArmPorts]


# -- the hooks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyTools:
    """The tool commands a family supports; None where it has no such step (an IP arm has no motor ids)."""

    calibrate: Calibrate | None = None
    setup_motors: SetupMotors | None = None
    find_port: FindPort | None = None

    @property
    def commands(self) -> tuple[str, ...]:
        """The commands, as typed on the command line, this family supports."""
        hooks = {"calibrate": self.calibrate, "setup-motors": self.setup_motors, "find-port": self.find_port}
        return tuple(command for command, hook in hooks.items() if hook is not None)
