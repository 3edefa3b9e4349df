"""An arm's vector as what its values mean: independent joints (each in its unit) and Cartesian poses
(a position in metres and a rotation). Every generic operation on targets — clip, step limit,
interpolate, average, distance — goes through here, so a rotation is stepped by geodesic angle and
blended on quaternions, a position step is bounded in metres, and a limit in one unit is never applied
to values in another."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from robot_runtime import rotations

if TYPE_CHECKING:
    from robot_runtime.robot import JointSpec, PoseSpec

MAX_ROTATION_VECTOR_RAD = 2 * math.pi
"""Longer rotation vectors are refused, not wrapped: they are no orientation a policy or a dataset
means (their angle is lost to rounding long before it gets large), so they signal a broken source."""


class UnitError(ValueError):
    """A per-unit setting that does not fit the arm's units; the message says which unit and why."""


@dataclass(frozen=True)
class Distance:
    """How far apart two vectors are on one segment, in that segment's unit."""

    label: str
    """A joint's name, or `<pose> position` / `<pose> rotation`."""
    value: float
    unit: str


@dataclass(frozen=True)
class StepLimits:
    """The largest change of a target in one tick: per independent value (in its unit), the Euclidean
    distance of a pose's position (metres) and the geodesic angle of its rotation (radians)."""

    per_value: np.ndarray
    linear_m: float
    angular_rad: float


def weighted_mean(stacked: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows of independent values averaged value by value."""
    return np.asarray(weights @ stacked / weights.sum(), dtype=np.float64)


class Space:
    """The segments of a vector: `poses` claim six values each, every other value is an independent joint."""

    def __init__(self, joints: Sequence[JointSpec], poses: Sequence[PoseSpec] = ()) -> None:
        self.joints = tuple(joints)
        self.poses = tuple(poses)
        claimed = np.zeros(len(self.joints), dtype=bool)
        for pose in self.poses:
            if pose.start < 0 or pose.start + 6 > len(self.joints) or claimed[pose.start : pose.start + 6].any():
                raise ValueError(f"a pose at value {pose.start} does not fit {len(self.joints)} values or overlaps another")
            claimed[pose.start : pose.start + 6] = True
        self.independent = np.flatnonzero(~claimed)
        """Joints and grippers: every operation treats them one by one."""
        rotation = np.zeros(len(self.joints), dtype=bool)
        for pose in self.poses:
            rotation[pose.rotation] = True
        self._boxed = np.flatnonzero(~rotation)
        """Every value with limits of its own: independent values and pose positions (the workspace box)."""
        self.units = tuple(j.unit for j in self.joints)

    def __len__(self) -> int:
        return len(self.joints)

    def unusable_rotations(self, target: np.ndarray) -> list[str]:
        """The poses (by their first value's name) whose rotation vector is longer than MAX_ROTATION_VECTOR_RAD."""
        return [
            self.joints[pose.start].name
            for pose in self.poses
            if not np.linalg.norm(target[pose.rotation]) <= MAX_ROTATION_VECTOR_RAD
        ]

    def unit_values(self, values: float | Mapping[str, float], key: str) -> dict[str, float]:
        """A per-unit setting (`max_step: {rad: 0.1, m: 0.005}`) for this vector's units. A single number
        is one setting for every unit, which cannot be right when metres sit beside angles (0.1 m per
        tick would leave a 0.044 m gripper unlimited): that must be given per unit."""
        units = set(self.units)
        if isinstance(values, Mapping):
            missing = sorted(units - set(values))
            if missing:
                raise UnitError(f"{key}: no value for {', '.join(missing)} (this robot's units: {', '.join(sorted(units))})")
            return {unit: float(values[unit]) for unit in units}
        if "m" in units and units & {"rad", "deg"}:
            angles = sorted(units - {"m", "percent"})
            example = ", ".join(f"{unit}: {values:g}" for unit in angles)
            raise UnitError(
                f"{key}: one number ({values:g}) cannot limit both metres and {' and '.join(angles)}; give one per unit, "
                f"e.g. {{{example}, m: 0.005}}"
            )
        return dict.fromkeys(units, float(values))

    def step_limits(self, per_unit: Mapping[str, float]) -> StepLimits:
        return StepLimits(
            per_value=np.array([per_unit[unit] for unit in self.units], dtype=np.float64),
            linear_m=per_unit.get("m", np.inf),
            angular_rad=per_unit.get("rad", np.inf),
        )

    def clip(self, target: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Independent values and pose positions (the workspace box) into their limits; rotations into
        their one canonical form (angle in [0, pi]), which no limit applies to. The mask marks the
        values a limit changed."""
        out = target.copy()
        box = self._boxed
        out[box] = np.clip(target[box], lower[box], upper[box])
        for pose in self.poses:
            out[pose.rotation] = rotations.canonical_rotvec(target[pose.rotation])
        changed = np.zeros(len(target), dtype=bool)
        changed[box] = out[box] != target[box]
        return out, changed

    def step(self, target: np.ndarray, previous: np.ndarray, limits: StepLimits) -> tuple[np.ndarray, bool]:
        """`target`, moved back toward `previous` where it is more than one step away: independent values
        one by one, a pose's position along the straight line, its rotation along the shortest arc."""
        out = target.copy()
        i = self.independent
        out[i] = np.clip(target[i], previous[i] - limits.per_value[i], previous[i] + limits.per_value[i])
        limited = bool((out[i] != target[i]).any())
        for pose in self.poses:
            move = target[pose.position] - previous[pose.position]
            length = float(np.linalg.norm(move))
            if length > limits.linear_m:
                out[pose.position] = previous[pose.position] + move * (limits.linear_m / length)
                limited = True
            out[pose.rotation], turned = rotations.step_toward(previous[pose.rotation], target[pose.rotation], limits.angular_rad)
            limited |= turned
        return out, limited

    def interpolate(self, start: np.ndarray, end: np.ndarray, fraction: float) -> np.ndarray:
        """The point `fraction` (0..1) of the way from `start` to `end`; rotations by slerp."""
        out = start + fraction * (end - start)
        for pose in self.poses:
            out[pose.rotation] = rotations.slerp(start[pose.rotation], end[pose.rotation], fraction)
        return out

    def average(self, stacked: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The weighted mean of rows of `stacked`; rotations by the quaternion mean."""
        out = weighted_mean(stacked, weights)
        for pose in self.poses:
            out[pose.rotation] = rotations.average(stacked[:, pose.rotation], weights)
        return out

    def distances(self, a: np.ndarray, b: np.ndarray, names: Sequence[str] | None = None) -> list[Distance]:
        """How far `a` is from `b` on every segment: per joint in its unit, per pose the position
        distance in metres and the geodesic angle in radians. `names` label values (default joint names)."""
        names = names if names is not None else [j.name for j in self.joints]
        out = [Distance(names[i], float(abs(a[i] - b[i])), self.units[i]) for i in self.independent]
        for pose in self.poses:
            label = names[pose.start].rsplit("_", 1)[0] if "_" in names[pose.start] else names[pose.start]
            out.append(Distance(f"{label} position", float(np.linalg.norm(a[pose.position] - b[pose.position])), "m"))
            out.append(Distance(f"{label} rotation", rotations.geodesic_rad(a[pose.rotation], b[pose.rotation]), "rad"))
        return out
