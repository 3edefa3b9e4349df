"""A rig composes several arms into one joint vector, LeRobot-style: `left_` / `right_` prefixes for bimanual."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from robot_runtime.robot import Arm, ArmError, JointState, StopReport, WriteResult

log = logging.getLogger(__name__)


def feature_name(prefix: str, joint: str) -> str:
    """LeRobot feature name of a joint position: `shoulder_pan.pos` or `left_shoulder_pan.pos`."""
    return f"{prefix}_{joint}.pos" if prefix else f"{joint}.pos"


class Rig(Arm):
    """Several arms behind the Arm interface: vectors are the arms' vectors concatenated in insertion order."""

    def __init__(self, arms: dict[str, Arm], name: str = "rig") -> None:
        if not arms:
            raise ValueError("a rig needs at least one arm")
        if "" in arms and len(arms) > 1:
            raise ValueError("only a single-arm rig may use the empty prefix")
        self.name = name
        self.arms = dict(arms)
        self.joints = tuple(
            replace(j, name=f"{prefix}_{j.name}" if prefix else j.name) for prefix, arm in arms.items() for j in arm.joints
        )
        self._slices: dict[str, slice] = {}
        start = 0
        for prefix, arm in arms.items():
            self._slices[prefix] = slice(start, start + len(arm.joints))
            start += len(arm.joints)

    @property
    def park_position(self) -> np.ndarray:  # arms learn theirs when they connect
        return np.concatenate([arm.park_position for arm in self.arms.values()])

    @property
    def feature_names(self) -> list[str]:
        return [feature_name(p, j.name) for p, arm in self.arms.items() for j in arm.joints]

    @property
    def is_connected(self) -> bool:
        return all(arm.is_connected for arm in self.arms.values())

    def connect(self, *, observe_only: bool = False) -> None:
        for arm in self.arms.values():
            arm.connect(observe_only=observe_only)

    def read(self) -> JointState:
        states = [arm.read() for arm in self.arms.values()]
        return JointState(
            timestamp_s=max(s.timestamp_s for s in states),
            position=np.concatenate([s.position for s in states]),
            velocity=_concat_optional([s.velocity for s in states]),
            effort=_concat_optional([s.effort for s in states]),
        )

    def write(self, targets: np.ndarray) -> WriteResult:
        checked = self.clip(targets)  # validates shape and finiteness before any arm moves
        results = [arm.write(checked.sent[self._slices[p]]) for p, arm in self.arms.items()]
        return WriteResult(
            sent=np.concatenate([r.sent for r in results]),
            clipped=checked.clipped | np.concatenate([r.clipped for r in results]),
        )

    def set_torque(self, enabled: bool) -> None:
        for arm in self.arms.values():
            arm.set_torque(enabled)

    def safe_stop(self) -> list[StopReport]:
        """Stop every arm even if one fails; an arm whose stop raised is reported as not torque-safe."""
        reports: list[StopReport] = []
        for arm in self.arms.values():
            try:
                reports.extend(arm.safe_stop())
            except Exception as exc:  # one arm's failure must never keep the others from stopping
                log.error("%s: %s", arm.name, exc)
                reports.append(StopReport(arm.name, parked=False, torque_safe=False, detail=str(exc)))
        return reports

    def disconnect(self) -> None:
        for arm in self.arms.values():
            try:
                arm.disconnect()
            except (ArmError, OSError) as exc:
                log.error("%s: %s", arm.name, exc)

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        return {p: vector[s] for p, s in self._slices.items()}


def _concat_optional(parts: list[np.ndarray | None]) -> np.ndarray | None:
    return None if any(p is None for p in parts) else np.concatenate(parts)
