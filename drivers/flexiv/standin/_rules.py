"""The checks the RDK makes on a streamed command before it leaves the computer, with the RDK's messages. The
stand-in runs them on its cached robot status and mode, so a refused SendCartesianMotionForce or
SendJointPosition raises at once although the command itself is not waited on; the simulated controller
runs the same checks on what arrives, since anything may connect to it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

CARTESIAN_MODES = ("NRT_CARTESIAN_MOTION_FORCE", "NRT_SUPER_PRIMITIVE")
JOINT_MODES = ("NRT_JOINT_IMPEDANCE", "NRT_JOINT_POSITION")
STATUS_TEXT = {
    # OperationalStatus -> the text the RDK appends to "Robot is not operational: " (its kOpStatusNames).
    "READY": "Ready",
    "ESTOP_NOT_RELEASED": "E-Stop not released",
    "NOT_ENABLED": "Not enabled",
    "RELEASING_BRAKE": "Releasing brakes",
    "MINOR_FAULT": "Minor fault occurred",
    "CRITICAL_FAULT": "Critical fault occurred",
    "IN_MANUAL_MODE": "In Manual mode",
}
CARTESIAN_LIMITS = ("max_linear_vel", "max_angular_vel", "max_linear_acc", "max_angular_acc")
JOINT_VECTORS = ("positions", "velocities", "max_vel", "max_acc")


class WireError(Exception):
    """A request the RDK or the controller refuses, as the RDK's C++ exception kind and message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def bad(where: str, message: str) -> WireError:
    return WireError("invalid_argument", f"[flexiv::rdk::{where}] {message}")


def require_mode(where: str, mode: str, modes: tuple[str, ...]) -> None:
    if mode not in modes:
        raise WireError("logic_error", f"[flexiv::rdk::Robot::{where}] Robot is not in an applicable control mode")


def require_operational(where: str, status: str, kind: str = "runtime_error") -> None:
    if status != "READY":
        raise WireError(kind, f"[flexiv::rdk::Robot::{where}] Robot is not operational: {STATUS_TEXT.get(status, status)}")


def require_finite(where: str, vectors: Mapping[str, Sequence[float]]) -> None:
    for key, values in vectors.items():
        if not all(math.isfinite(v) for v in values):
            raise bad(where, f"Input parameter [{key}] must hold finite numbers only")


def check_cartesian(vectors: Mapping[str, Sequence[float]], limits: Sequence[float], mode: str, status: str) -> None:
    """SendCartesianMotionForce's checks of `vectors` (pose, wrench, velocity) and the four limits, in the RDK's
    order: arguments, control mode, operational."""
    where = "Robot::SendCartesianMotionForce"
    require_finite(where, vectors)
    for name, value in zip(CARTESIAN_LIMITS, limits, strict=True):
        if not math.isfinite(value):
            raise bad(where, f"Input parameter [{name}] must be a finite number")
    if min(limits) <= 0:
        raise bad(where, f"Input parameters [{', '.join(CARTESIAN_LIMITS)}] must be greater than 0")
    pose = vectors["pose"]
    if math.sqrt(sum(v * v for v in pose[3:7])) < 1e-9:
        raise bad(where, "Input parameter [pose] has a zero quaternion")
    require_mode("SendCartesianMotionForce", mode, CARTESIAN_MODES)
    require_operational("SendCartesianMotionForce", status)


def check_joint(vectors: Mapping[str, Sequence[float]], dof: int, mode: str, status: str) -> None:
    """SendJointPosition's checks of `vectors` (positions, velocities, max_vel, max_acc), in the RDK's order:
    arguments, control mode, operational."""
    where = "Robot::SendJointPosition"
    require_finite(where, vectors)
    for key in JOINT_VECTORS:
        if len(vectors[key]) != dof:
            raise bad(where, f"Size of input vector [{key}] does not match robot DoF")
    if min(vectors["max_vel"]) <= 0 or min(vectors["max_acc"]) <= 0:
        raise bad(where, "Input parameters [max_vel] and [max_acc] must be greater than 0")
    require_mode("SendJointPosition", mode, JOINT_MODES)
    require_operational("SendJointPosition", status)
