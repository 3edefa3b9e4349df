"""Simulated Feetech arms: a bus simulator per arm, calibrated like a real arm, leaders playing the demo
once told to. `robot-runtime sim feetech` and `--sim` run these in a simulator process of their own."""

from __future__ import annotations

import collections
import contextlib
import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calibration.normalization import Normalizer
from calibration.store import MotorCalibration, save_calibration
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.control_table import REGISTERS, RESOLUTION_TICKS, to_wire
from drivers.feetech.models import norm_modes
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import Fault, SimServo
from robot_runtime.config import ArmSpec, SimConfig
from robot_runtime.demo import Demonstration, ScriptedDemo
from robot_runtime.family import SimulatedArm

SIM_CALIBRATION: dict[str, tuple[int, int, int]] = {
    # motor: (homing_offset, range_min, range_max), as a LeRobot calibration of a real arm looks:
    # offsets of both signs, ranges not centred on 2047, wrist_roll over the full turn.
    "shoulder_pan": (-1024, 760, 3290),
    "shoulder_lift": (837, 820, 3200),
    "elbow_flex": (-412, 860, 3100),
    "wrist_flex": (250, 850, 3250),
    "wrist_roll": (-33, 0, RESOLUTION_TICKS - 1),
    "gripper": (1500, 2000, 3400),
}

SIMULATED_REPLY_TIMEOUT_MS = 100.0
"""A servo answers within microseconds; a simulated one answers from a process that shares this computer's
cores with the command and whatever else runs. Beside two CPU hogs and a test session, a high-priority
process saw this whole machine pause for up to 0.4 s, and a simulated bus left 5 ms tries unanswered for
0.26 s. The pointed config allows the longest wait the driver accepts, as it would for a slow adapter:
a missing motor is then named after about a second instead of 0.2 s."""


def simulate(arms: Sequence[ArmSpec], sim: SimConfig, stack: contextlib.ExitStack) -> list[SimulatedArm]:
    """One simulator per arm, its servos holding a calibration that is also written as LeRobot JSON."""
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="robot-runtime-sim-calibration-")))
    return [_simulate_arm(spec, sim, stack, root / spec.label) for spec in arms]


def _simulate_arm(spec: ArmSpec, sim: SimConfig, stack: contextlib.ExitStack, calibration_dir: Path) -> SimulatedArm:
    config: FeetechArmConfig = spec.config  # type: ignore[assignment]
    motors = config.arm_model.motors
    names = [m.name for m in motors]
    calibration = {m.name: MotorCalibration(m.id, 0, *SIM_CALIBRATION[m.name]) for m in motors}
    save_calibration(calibration_dir / f"{config.id}.json", calibration)
    norm = Normalizer.from_calibration(calibration, norm_modes(names, config.body_norm), RESOLUTION_TICKS)
    script = ScriptedDemo.from_config(sim, names)
    start_raw = norm.to_raw(script.start)
    servos = [
        _calibrated_servo(m.id, calibration[m.name], float(raw) + calibration[m.name].homing_offset)
        for m, raw in zip(motors, start_raw, strict=True)
    ]
    demo = Demonstration(script)
    if spec.role == "leader":
        for index, servo in enumerate(servos):
            servo.follow(functools.partial(_joint_of, norm, demo, index))
    bus = FeetechBusSimulator(servos)
    path = bus.start()
    stack.callback(bus.stop)
    by_name = dict(zip(names, servos, strict=True))

    def inject(joint: str, fault: str) -> None:
        if joint not in by_name:
            raise ValueError(f"{spec.label} has no joint {joint!r} (joints: {names})")
        by_name[joint].inject(Fault(fault))

    return SimulatedArm(
        config=config.model_copy(
            update={
                "port": path,
                "calibration_dir": calibration_dir,
                "reply_timeout_ms": max(config.reply_timeout_ms, SIMULATED_REPLY_TIMEOUT_MS),
            }
        ),
        address=path,
        inject=inject,
        faults=tuple(f.value for f in Fault),
        joint_names=tuple(names),
        pose=lambda: norm.to_units(np.array([servo.present_ticks() for servo in servos])),
        writes=lambda: sum((servo.writes for servo in servos), collections.Counter()),
        start_demonstration=demo.start,
    )


def _joint_of(norm: Normalizer, demo: Demonstration, index: int, now_s: float) -> float:
    """Where the demonstration has one servo at `now_s`, in its raw ticks."""
    return float(norm.to_raw(demo(now_s))[index])


def _calibrated_servo(servo_id: int, cal: MotorCalibration, physical_ticks: float) -> SimServo:
    """A servo whose EEPROM holds the calibration, as after LeRobot's calibration wrote it."""
    servo = SimServo(servo_id, physical_ticks=physical_ticks)
    servo.write(REGISTERS["Lock"].address, b"\x00")
    eeprom = {"Homing_Offset": cal.homing_offset, "Min_Position_Limit": cal.range_min, "Max_Position_Limit": cal.range_max}
    for register, value in eeprom.items():
        reg = REGISTERS[register]
        servo.write(reg.address, to_wire(reg, value).to_bytes(reg.size, "little"))
    servo.write(REGISTERS["Lock"].address, b"\x01")
    servo.write(REGISTERS["Goal_Position"].address, servo.read(REGISTERS["Present_Position"].address, 2))
    return servo
