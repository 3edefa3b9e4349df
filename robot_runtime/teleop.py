"""Leader-follower teleoperation as one tick function: read the leader, filter, command the follower,
then observe the follower and the cameras."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cameras.base import Frame
from cameras.camera_set import CameraSet
from robot_runtime.config import SafetyConfig
from robot_runtime.loop import Tick
from robot_runtime.rig import Rig
from robot_runtime.robot import ArmError, JointState
from robot_runtime.safety import SafetyFilter, per_unit
from robot_runtime.spaces import Distance


class StartRefused(ArmError):
    """Leader and follower are too far apart to start mirroring without a lurch."""


@dataclass(frozen=True)
class TeleopStep:
    """One tick's result, for whatever consumes it (status line, recorder)."""

    tick: Tick
    leader: JointState
    action: np.ndarray
    """What was sent to the follower after the soft start and the safety filter."""
    follower: JointState
    frames: dict[str, Frame] = field(default_factory=dict)
    """One frame per camera, chosen for the moment the follower was read."""


class Teleop:
    def __init__(
        self, leader: Rig, follower: Rig, safety: SafetyConfig, rate_hz: float, cameras: CameraSet | None = None
    ) -> None:
        if leader.feature_names != follower.feature_names:
            raise ValueError(f"leader joints {leader.feature_names} do not match follower joints {follower.feature_names}")
        self.leader = leader
        self.follower = follower
        self.safety = safety
        self.cameras = cameras if cameras is not None else CameraSet({})
        self.filter = SafetyFilter.for_rig(follower, safety, rate_hz)
        self._origin: np.ndarray | None = None
        self._sent: np.ndarray | None = None
        self.last: TeleopStep | None = None

    def start(self) -> None:
        """Check the gap before the first motion (GELLO's rule): a large one means the operator must
        first bring the leader near the follower's pose."""
        limits = per_unit(self.follower, self.safety.max_start_gap, "safety.max_start_gap")
        lead = self.leader.read().position
        follow = self.follower.read().position
        too_far = [d for d in self.follower.space.distances(lead, follow) if d.value > limits[d.unit]]
        if too_far:
            detail = "; ".join(_gap(d, lead, follow, self.follower, limits[d.unit]) for d in too_far)
            raise StartRefused(
                f"leader and follower differ too much to start on {detail}: "
                "move the leader close to the follower's pose and start again"
            )
        self._origin = follow
        self._sent = follow

    def tick(self, tick: Tick) -> TeleopStep:
        if self._origin is None or self._sent is None:
            raise RuntimeError("call start() before tick()")
        leader = self.leader.read()
        ramp = 1.0 if self.safety.ramp_s == 0 else min(1.0, tick.elapsed_s / self.safety.ramp_s)
        target = self.follower.space.interpolate(self._origin, leader.position, ramp)
        action = self.follower.write(self.filter(target, self._sent)).sent
        self._sent = action
        follower = self.follower.read()
        frames = self.cameras.frames_at(follower.timestamp_s)
        self.last = TeleopStep(tick=tick, leader=leader, action=action, follower=follower, frames=frames)
        return self.last


def _gap(distance: Distance, lead: np.ndarray, follow: np.ndarray, follower: Rig, limit: float) -> str:
    """`shoulder_lift leader -95.0 follower -55.0 deg (more than 25)`; a pose's gap as one distance."""
    names = [j.name for j in follower.joints]
    if distance.label in names:
        i = names.index(distance.label)
        return f"{distance.label} leader {lead[i]:.1f} follower {follow[i]:.1f} {distance.unit} (more than {limit:g})"
    return f"{distance.label} {distance.value:.3g} {distance.unit} apart (more than {limit:g})"
