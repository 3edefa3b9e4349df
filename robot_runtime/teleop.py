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
from robot_runtime.safety import SafetyFilter


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
        lead = self.leader.read().position
        follow = self.follower.read().position
        gap = np.abs(lead - follow)
        too_far = np.flatnonzero(gap > self.safety.max_start_gap)
        if len(too_far):
            detail = ", ".join(
                f"{self.follower.joints[i].name} leader {lead[i]:.1f} follower {follow[i]:.1f} {self.follower.joints[i].unit}"
                for i in too_far
            )
            raise StartRefused(
                f"leader and follower differ by more than {self.safety.max_start_gap:g} on {detail}: "
                "move the leader close to the follower's pose and start again"
            )
        self._origin = follow
        self._sent = follow

    def tick(self, tick: Tick) -> TeleopStep:
        if self._origin is None or self._sent is None:
            raise RuntimeError("call start() before tick()")
        leader = self.leader.read()
        ramp = 1.0 if self.safety.ramp_s == 0 else min(1.0, tick.elapsed_s / self.safety.ramp_s)
        target = self._origin + ramp * (leader.position - self._origin)
        action = self.follower.write(self.filter(target, self._sent)).sent
        self._sent = action
        follower = self.follower.read()
        frames = self.cameras.frames_at(follower.timestamp_s)
        self.last = TeleopStep(tick=tick, leader=leader, action=action, follower=follower, frames=frames)
        return self.last
