"""Replaying recorded actions on the follower: a soft approach from wherever the arm is to the first
recorded action, then one action per tick, every one through the safety filter."""

from __future__ import annotations

import numpy as np

from robot_runtime.config import SafetyConfig
from robot_runtime.loop import Tick
from robot_runtime.rig import Rig
from robot_runtime.safety import SafetyFilter


class Replay:
    def __init__(self, follower: Rig, actions: np.ndarray, safety: SafetyConfig, fps: float) -> None:
        if actions.ndim != 2 or actions.shape[1] != len(follower.joints) or not len(actions):
            raise ValueError(f"recorded actions have shape {actions.shape}; the follower has {len(follower.joints)} joints")
        self.follower = follower
        self.actions = actions.astype(np.float64)
        self.filter = SafetyFilter.for_rig(follower, safety, fps)
        self.approach_ticks = max(1, round(safety.ramp_s * fps))
        self._origin: np.ndarray | None = None
        self._sent: np.ndarray | None = None
        self.played = 0
        self.tracking_labels = [f"{d.label} ({d.unit})" for d in follower.space.distances(self.actions[0], self.actions[0])]
        self.tracking_error: list[np.ndarray] = []
        """Per replayed action: how far the follower was from the action after the tick, per joint (in
        its unit) and per pose (position in metres, rotation in radians), as `tracking_labels` name them."""

    @property
    def done(self) -> bool:
        return self.played >= len(self.actions)

    def start(self) -> None:
        self._origin = self._sent = self.follower.read().position

    def tick(self, tick: Tick) -> None:
        if self._origin is None or self._sent is None:
            raise RuntimeError("call start() before tick()")
        step = tick.index - self.approach_ticks
        if step < 0:
            ramp = (tick.index + 1) / self.approach_ticks
            target = self.follower.space.interpolate(self._origin, self.actions[0], ramp)
        else:
            target = self.actions[min(step, len(self.actions) - 1)]
        self._sent = self.follower.write(self.filter(target, self._sent)).sent
        position = self.follower.read().position
        if step >= 0:
            self.tracking_error.append(np.array([d.value for d in self.follower.space.distances(position, target)]))
            self.played += 1
