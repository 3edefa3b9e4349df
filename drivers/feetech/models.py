"""SO-100 / SO-101 follower and leader definitions with LeRobot's motor names, ids, calibration
locations and configure registers, so calibrations and datasets made with LeRobot line up."""

from __future__ import annotations

from dataclasses import dataclass

from calibration.normalization import NormMode
from drivers.feetech.bus import Motor

SO_MOTORS = (
    Motor("shoulder_pan", 1),
    Motor("shoulder_lift", 2),
    Motor("elbow_flex", 3),
    Motor("wrist_flex", 4),
    Motor("wrist_roll", 5),
    Motor("gripper", 6),
)

GRIPPERS = frozenset({"gripper"})
"""Motors normalised to 0..100 (open fraction) instead of degrees."""

_FOLLOWER_REGISTERS: dict[str, int] = {
    "Return_Delay_Time": 0,
    "Maximum_Acceleration": 254,
    "Acceleration": 254,
    "Operating_Mode": 0,
    "P_Coefficient": 16,
    "I_Coefficient": 0,
    "D_Coefficient": 32,
}
_LEADER_REGISTERS: dict[str, int] = {
    "Return_Delay_Time": 0,
    "Maximum_Acceleration": 254,
    "Acceleration": 254,
    "Operating_Mode": 0,
}
_GRIPPER_PROTECTION: dict[str, int] = {"Max_Torque_Limit": 500, "Protection_Current": 250, "Overload_Torque": 25}
"""Keeps the gripper servo from burning out when it squeezes an object."""


@dataclass(frozen=True)
class ArmModel:
    name: str
    role: str
    """"follower" (torque on, driven) or "leader" (torque off, moved by hand)."""
    calibration_kind: str
    """LeRobot's calibration sub-folder: robots or teleoperators."""
    calibration_names: tuple[str, ...]
    """LeRobot class names whose calibration folders are searched, newest first."""
    motors: tuple[Motor, ...]
    registers: dict[str, int]
    gripper_registers: dict[str, int]
    full_turn: frozenset[str] = frozenset({"wrist_roll"})
    """Joints that turn freely: calibrated over the whole encoder turn, as LeRobot does."""

    def configure_values(self, motor: str) -> dict[str, int]:
        return self.registers | (self.gripper_registers if motor in GRIPPERS else {})


def _so(model: str, role: str) -> ArmModel:
    follower = role == "follower"
    return ArmModel(
        name=f"{model}_{role}",
        role=role,
        calibration_kind="robots" if follower else "teleoperators",
        calibration_names=("so_follower", f"{model}_follower") if follower else ("so_leader", f"{model}_leader"),
        motors=SO_MOTORS,
        registers=_FOLLOWER_REGISTERS if follower else _LEADER_REGISTERS,
        gripper_registers=_GRIPPER_PROTECTION if follower else {},
    )


MODELS: dict[str, ArmModel] = {m.name: m for m in (_so(n, r) for n in ("so100", "so101") for r in ("follower", "leader"))}


def norm_modes(motor_names: list[str], body_norm: str) -> tuple[NormMode, ...]:
    """Grippers in 0..100, body joints as configured (degrees or -100..100)."""
    return tuple(NormMode.RANGE_0_100 if n in GRIPPERS else NormMode(body_norm) for n in motor_names)
