"""Simulated Rizon arms: kinematic Rizon 4 controllers (drivers.flexiv.sim_controller) served in this process
on one loopback address, one serial per arm, reached through the RDK stand-in. `robot-runtime sim flexiv`
and `--sim` run them in a simulator process of their own."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from drivers.flexiv.config import GRIPPER_NAME, JOINT_NAMES, TCP_NAMES, FlexivArmConfig
from drivers.flexiv.model import HOME_Q_RAD, RizonKinematics
from drivers.flexiv.sim_controller import INJECTIONS, RizonSimSpec, SimulatedRizon, SimulatedRizons
from robot_runtime.config import ArmSpec, SimConfig
from robot_runtime.demo import pose_vector
from robot_runtime.family import SimulatedArm
from robot_runtime.robot import ArmError
from robot_runtime.rotations import from_quat_wxyz, to_quat_wxyz

HOST = "127.0.0.1"
SIM_SERIAL = "Rizon4-9{index:05d}"
"""Serials for arms whose configs share one (a copied entry): each simulated robot needs its own."""


def simulate(arms: Sequence[ArmSpec], sim: SimConfig, stack: contextlib.ExitStack) -> list[SimulatedArm]:
    """One SimulatedRizons serving every arm, stopped by the exit stack; each arm starts at the sim section's
    start pose (its TCP pose, reached by inverse kinematics from Flexiv's home pose)."""
    configs: list[FlexivArmConfig] = [spec.config for spec in arms]  # type: ignore[misc]
    serials = [c.serial_number for c in configs]
    if len(set(serials)) != len(serials):
        serials = [SIM_SERIAL.format(index=i + 1) for i in range(len(configs))]
    specs = {serial: _sim_spec(config, sim) for serial, config in zip(serials, configs, strict=True)}
    sims = stack.enter_context(SimulatedRizons(specs, host=HOST))
    return [_simulated_arm(sims, serial, config) for serial, config in zip(serials, configs, strict=True)]


def _sim_spec(config: FlexivArmConfig, sim: SimConfig) -> RizonSimSpec:
    names = _value_names(config)
    start = pose_vector(sim.start_pose, names, "sim.start_pose")
    if config.control == "cartesian":
        pose = np.concatenate([start[:3], to_quat_wxyz(start[3:6])])
        q, reached = RizonKinematics().inverse(pose, HOME_Q_RAD, iterations=500)
        if not reached:
            raise ArmError(f"sim.start_pose {dict(zip(names, start.tolist(), strict=True))} is out of a Rizon 4's reach")
    else:
        q = start[:7]
    width = float(start[-1]) if config.gripper is not None else 0.1
    return RizonSimSpec(q_start_rad=tuple(float(v) for v in q), gripper_width_m=width)


def _simulated_arm(sims: SimulatedRizons, serial: str, config: FlexivArmConfig) -> SimulatedArm:
    robot = sims[serial]
    names = _value_names(config)

    def inject(joint: str, fault: str) -> None:
        """Faults belong to the whole robot: `joint` may be any of its value names, or `arm`."""
        if joint not in (*names, "arm"):
            raise ValueError(f"Rizon {serial} has no value {joint!r} (values: arm, {', '.join(names)})")
        robot.inject(fault)

    return SimulatedArm(
        config=config.model_copy(update={"serial_number": serial, "sdk": "standin", "standin_address": sims.address}),
        address=sims.address,
        inject=inject,
        faults=INJECTIONS,
        joint_names=names,
        pose=lambda: _vector(robot, config),
        writes=robot.command_counts,
        start_demonstration=lambda: None,  # no Flexiv leaders
    )


def _vector(robot: SimulatedRizon, config: FlexivArmConfig) -> np.ndarray:
    """The arm's vector as the simulator has it: TCP pose (canonical rotation vector) or joints, and the gripper."""
    if config.control == "cartesian":
        pose = robot.tcp_pose()
        arm = np.concatenate([pose[:3], from_quat_wxyz(pose[3:])])
    else:
        arm = robot.q()
    return np.concatenate([arm, [robot.gripper_width()] if config.gripper is not None else []])


def _value_names(config: FlexivArmConfig) -> tuple[str, ...]:
    arm = TCP_NAMES if config.control == "cartesian" else JOINT_NAMES
    return (*arm, GRIPPER_NAME) if config.gripper is not None else arm
