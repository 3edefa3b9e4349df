"""Rotations as the runtime stores and moves them. A rotation vector (axis * angle, radians) is how
datasets and policies store an orientation; it is never used for arithmetic: near pi two rotations
0.02 rad apart have rotation vectors 6.26 rad apart. Steps, blends and averages go through quaternions
(scipy's Rotation), and quaternions handed to an SDK are scalar-first [w, x, y, z], kept in the
hemisphere of a reference so the controller never sees a sign flip as a full turn."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def canonical_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """The same rotation with its angle in [0, pi]: one storage form for every orientation."""
    return Rotation.from_rotvec(rotvec).as_rotvec()


def geodesic_rad(a: np.ndarray, b: np.ndarray) -> float:
    """The angle of the rotation taking rotation vector `a` to `b`, in [0, pi]."""
    return float((Rotation.from_rotvec(a).inv() * Rotation.from_rotvec(b)).magnitude())


def slerp(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """The rotation `fraction` of the way from `a` to `b` along the shortest arc, as a rotation vector."""
    start = Rotation.from_rotvec(a)
    relative = start.inv() * Rotation.from_rotvec(b)
    return (start * Rotation.from_rotvec(relative.as_rotvec() * fraction)).as_rotvec()


def step_toward(previous: np.ndarray, target: np.ndarray, max_rad: float) -> tuple[np.ndarray, bool]:
    """`target`, or the rotation `max_rad` along the shortest arc from `previous` toward it when it is
    further; True when it was limited."""
    angle = geodesic_rad(previous, target)
    if angle <= max_rad:
        return canonical_rotvec(target), False
    return slerp(previous, target, max_rad / angle), True


def average(rotvecs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean rotation (the quaternion mean of Markley et al.), as a rotation vector."""
    return Rotation.from_rotvec(rotvecs).mean(weights=weights).as_rotvec()


def to_quat_wxyz(rotvec: np.ndarray, reference_wxyz: np.ndarray | None = None) -> np.ndarray:
    """Scalar-first unit quaternion [w, x, y, z]; with a reference, the sign that lies in its hemisphere."""
    quat = Rotation.from_rotvec(rotvec).as_quat(scalar_first=True)
    if reference_wxyz is not None and float(np.dot(quat, reference_wxyz)) < 0:
        quat = -quat
    return quat


def from_quat_wxyz(quat_wxyz: np.ndarray) -> np.ndarray:
    """A scalar-first quaternion (any norm but zero) as a canonical rotation vector."""
    return Rotation.from_quat(quat_wxyz, scalar_first=True).as_rotvec()
