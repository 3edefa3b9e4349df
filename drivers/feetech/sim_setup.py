"""`--sim` for Feetech arms: a bus simulator per arm, calibrated like a real arm, leaders playing the demo."""

from __future__ import annotations

import collections
import contextlib
import tempfile
import time
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
from robot_runtime.demo import ScriptedDemo, pose_vector
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

SIM_REPLY_TIMEOUT_MS = 25.0
"""The simulated servos answer from a thread of the client's own process, which waits for the GIL behind
camera and control threads (Python hands it over every 5 ms): a real bus's 5 ms timeout would read
that wait as a missing motor."""


def simulate(arms: Sequence[ArmSpec], sim: SimConfig, stack: contextlib.ExitStack) -> list[SimulatedArm]:
    """One simulator per arm, its servos holding a calibration that is also written as LeRobot JSON."""
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="robot-runtime-sim-calibration-")))
    t0_s = time.monotonic()
    return [_simulate_arm(spec, sim, stack, root / spec.label, t0_s) for spec in arms]


def _simulate_arm(spec: ArmSpec, sim: SimConfig, stack: contextlib.ExitStack, calibration_dir: Path, t0_s: float) -> SimulatedArm:
    config: FeetechArmConfig = spec.config  # type: ignore[assignment]
    motors = config.arm_model.motors
    names = [m.name for m in motors]
    calibration = {m.name: MotorCalibration(m.id, 0, *SIM_CALIBRATION[m.name]) for m in motors}
    save_calibration(calibration_dir / f"{config.id}.json", calibration)
    norm = Normalizer.from_calibration(calibration, norm_modes(names, config.body_norm), RESOLUTION_TICKS)
    start = pose_vector(sim.start_pose, names, "sim.start_pose")
    start_raw = norm.to_raw(start)
    servos = [
        _calibrated_servo(m.id, calibration[m.name], float(raw) + calibration[m.name].homing_offset)
        for m, raw in zip(motors, start_raw)
    ]
    if spec.role == "leader":
        waypoints = np.array([pose_vector(w, names, f"sim.demo.waypoints[{i}]") for i, w in enumerate(sim.demo.waypoints)])
        demo = ScriptedDemo(start, waypoints, hold_s=sim.demo.hold_s, segment_s=sim.demo.segment_s, t0_s=t0_s)
        for index, servo in enumerate(servos):
            servo.follow(lambda t, i=index: float(norm.to_raw(demo(t))[i]))
    bus = FeetechBusSimulator(servos)
    path = bus.start()
    stack.callback(bus.stop)
    by_name = dict(zip(names, servos))

    def inject(joint: str, fault: str) -> None:
        if joint not in by_name:
            raise ValueError(f"{spec.label} has no joint {joint!r} (joints: {names})")
        by_name[joint].inject(Fault(fault))

    return SimulatedArm(
        config=config.model_copy(update={"port": path, "calibration_dir": calibration_dir, "reply_timeout_ms": max(config.reply_timeout_ms, SIM_REPLY_TIMEOUT_MS)}),
        address=path,
        inject=inject,
        faults=tuple(f.value for f in Fault),
        joint_names=tuple(names),
        pose=lambda: norm.to_units(np.array([servo.present_ticks() for servo in servos])),
        writes=lambda: sum((servo.writes for servo in servos), collections.Counter()),
    )


def _calibrated_servo(servo_id: int, cal: MotorCalibration, physical_ticks: float) -> SimServo:
    """A servo whose EEPROM holds the calibration, as after LeRobot's calibration wrote it."""
    servo = SimServo(servo_id, physical_ticks=physical_ticks)
    servo.write(REGISTERS["Lock"].address, b"\x00")
    for register, value in (("Homing_Offset", cal.homing_offset), ("Min_Position_Limit", cal.range_min), ("Max_Position_Limit", cal.range_max)):
        reg = REGISTERS[register]
        servo.write(reg.address, to_wire(reg, value).to_bytes(reg.size, "little"))
    servo.write(REGISTERS["Lock"].address, b"\x01")
    servo.write(REGISTERS["Goal_Position"].address, servo.read(REGISTERS["Present_Position"].address, 2))
    return servo
