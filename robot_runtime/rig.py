"""A rig composes several arms into one joint vector, LeRobot-style: `left_` / `right_` prefixes for bimanual."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from robot_runtime.robot import Arm, ArmError, JointState, PoseSpec, StopReport

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
        poses: list[PoseSpec] = []
        start = 0
        for prefix, arm in arms.items():
            self._slices[prefix] = slice(start, start + len(arm.joints))
            poses.extend(replace(pose, start=start + pose.start) for pose in arm.poses)
            start += len(arm.joints)
        self.poses = tuple(poses)
        self._gather_park_position()

    def _gather_park_position(self) -> None:
        """The arms' park positions concatenated; gathered again on connect, where arms learn theirs."""
        self.park_position = np.concatenate([arm.park_position for arm in self.arms.values()])

    @property
    def feature_names(self) -> list[str]:
        return [feature_name(p, j.name) for p, arm in self.arms.items() for j in arm.joints]

    @property
    def is_connected(self) -> bool:
        return all(arm.is_connected for arm in self.arms.values())

    def _connect(self, *, observe_only: bool) -> None:
        for arm in self.arms.values():
            arm.connect(observe_only=observe_only)
        self._gather_park_position()

    def read(self) -> JointState:
        states = [arm.read() for arm in self.arms.values()]
        return JointState(
            timestamp_s=max(s.timestamp_s for s in states),
            position=np.concatenate([s.position for s in states]),
            velocity=_concat_optional([s.velocity for s in states]),
            effort=_concat_optional([s.effort for s in states]),
        )

    def _send(self, targets: np.ndarray) -> np.ndarray:
        """The rig's limits are its arms' limits, so each arm's own clip finds nothing left to clip."""
        return np.concatenate([arm.write(targets[self._slices[p]]).sent for p, arm in self.arms.items()])

    def _set_torque(self, enabled: bool) -> None:
        for arm in self.arms.values():
            arm.set_torque(enabled)

    def safe_stop(self) -> list[StopReport]:
        """Each arm knows whether it is connected or only observed: a half-connected rig still stops the
        arms that did connect."""
        return self._safe_stop()

    def _safe_stop(self) -> list[StopReport]:
        return stop_arms(list(self.arms.values()))

    def disconnect(self) -> None:
        for arm in self.arms.values():
            try:
                arm.disconnect()
            except (ArmError, OSError) as exc:
                log.error("%s: %s", arm.name, exc)

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        return {p: vector[s] for p, s in self._slices.items()}


def stop_rigs(rigs: Iterable[Rig]) -> list[StopReport]:
    """Every arm of every rig stopped together (a leader rig parks while the followers do), reported rig by rig."""
    return stop_arms([arm for rig in rigs for arm in rig.arms.values()])


def stop_arms(arms: Sequence[Arm]) -> list[StopReport]:
    """Stop every arm even if one fails, and report each in the order given. Arms on separate transports
    (their own controller or bus) stop at the same time, so four arms park in the time of the slowest one;
    arms sharing a transport take turns on it. The calling thread only waits, so during the exit it still
    runs the signal handlers (a second Ctrl-C) while the arms park."""
    turns: dict[str, list[int]] = {}
    for i, arm in enumerate(arms):
        turns.setdefault(arm.transport, []).append(i)
    reports: list[list[StopReport]] = [[] for _ in arms]

    def stop_in_turn(indexes: list[int]) -> None:
        for i in indexes:
            reports[i] = _stop(arms[i])

    with ThreadPoolExecutor(max_workers=max(len(turns), 1), thread_name_prefix="safe-stop") as pool:
        for future in [pool.submit(stop_in_turn, indexes) for indexes in turns.values()]:
            future.result()
    return [report for arm_reports in reports for report in arm_reports]


def _stop(arm: Arm) -> list[StopReport]:
    """An arm whose stop raised is reported as not torque-safe."""
    try:
        return arm.safe_stop()
    except Exception as exc:  # one arm's failure must never keep the others from stopping
        log.error("%s: %s", arm.name, exc)
        return [StopReport(arm.name, parked=False, torque_safe=False, detail=str(exc))]


def _concat_optional(parts: list[np.ndarray | None]) -> np.ndarray | None:
    present = [p for p in parts if p is not None]
    return np.concatenate(present) if len(present) == len(parts) else None
