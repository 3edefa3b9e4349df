"""What a hardware family (one folder under drivers/) offers the runtime: its config schema, how to
build an arm, and how to stand in for its hardware with a simulator."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from robot_runtime.family_tools import FamilyTools
from robot_runtime.robot import Arm

if TYPE_CHECKING:
    from robot_runtime.config import ArmSpec, SimConfig


@dataclass(frozen=True)
class SimulatedArm:
    """An arm config rewritten to point at a running simulator, where a client can reach it, and a
    way to break one of its joints on purpose (for tests and demonstrations of the stop path). A family
    returns these for simulators it runs in the calling process; robot_runtime.sim_client returns them
    for a simulator process (`robot-runtime sim`), with the same meaning."""

    config: BaseModel
    address: str
    inject: Callable[[str, str], None]
    """(joint name, fault name) -> None."""
    faults: tuple[str, ...]
    joint_names: tuple[str, ...]
    pose: Callable[[], np.ndarray]
    """Where the simulated joints are now, in joint units, read from the simulator itself (not over the
    wire), so a simulated camera can draw the arm without competing with the control loop for the bus."""
    writes: Callable[[], Mapping[str, int]]
    """Register (or command) name -> writes the simulated hardware received: what a client commanded."""
    start_demonstration: Callable[[], None]
    """Let a simulated leader play the robot config's scripted demonstration from now on (until then it
    holds its start pose); nothing for a follower or a demonstration already playing."""


@dataclass(frozen=True)
class ArmFamily:
    name: str
    config_model: type[BaseModel]
    build: Callable[[BaseModel, str], Arm]
    """(validated config, arm name) -> an unconnected Arm."""
    simulate: Callable[[Sequence[ArmSpec], SimConfig, contextlib.ExitStack], list[SimulatedArm]]
    """Start simulators for these arms in this process (their servers may be child processes), stopped by
    the exit stack, and return configs pointing at them. `robot-runtime sim` serves them to other
    processes; `--sim` starts that (robot_runtime.sim_client)."""
    role_of: Callable[[BaseModel], str]
    """The role ("leader" or "follower") the configured model can play."""
    describe: Callable[[BaseModel], str]
    """Where the configured arm is, for messages: "/dev/ttyACM0", "controller 192.168.1.2"."""
    tools: FamilyTools = field(default_factory=FamilyTools)
    """The per-arm tool commands (calibrate, setup-motors, find-port) the family supports, as hooks."""

    def check_role(self, config: BaseModel, role: str) -> None:
        if self.role_of(config) != role:
            raise ValueError(f"a {self.role_of(config)} arm cannot be listed as a {role}")
