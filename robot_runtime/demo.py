"""A scripted demonstration for simulated leader arms: smooth moves through waypoints, looped, started
when mirroring starts (after the start check), so a slow start-up cannot move the leader away first."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from robot_runtime.config import SimConfig


@dataclass(frozen=True)
class ScriptedDemo:
    """Position `elapsed_s` after the demonstration started: hold the start pose for `hold_s`, then visit
    each waypoint in `segment_s` with a cosine blend (zero velocity at every waypoint), back to the start,
    and repeat."""

    start: np.ndarray
    waypoints: np.ndarray
    hold_s: float
    segment_s: float

    @classmethod
    def from_config(cls, sim: SimConfig, joints: Sequence[str]) -> ScriptedDemo:
        """The robot config's `sim` section as vectors in the arm's joint order; without a demo, the start pose held."""
        start = pose_vector(sim.start_pose, joints, "sim.start_pose")
        if sim.demo is None:  # a setup without leaders: its arms hold their start pose
            return cls(start, start[np.newaxis], hold_s=0.0, segment_s=1.0)
        waypoints = np.array([pose_vector(w, joints, f"sim.demo.waypoints[{i}]") for i, w in enumerate(sim.demo.waypoints)])
        return cls(start, waypoints, hold_s=sim.demo.hold_s, segment_s=sim.demo.segment_s)

    def __call__(self, elapsed_s: float) -> np.ndarray:
        t = elapsed_s - self.hold_s
        if t <= 0:
            return self.start.copy()
        path = np.vstack([self.start, self.waypoints, self.start])
        segments = len(path) - 1
        k, within = divmod(t / self.segment_s, 1.0)
        k = int(k) % segments
        blend = 0.5 - 0.5 * np.cos(np.pi * within)
        return path[k] + blend * (path[k + 1] - path[k])


class Demonstration:
    """A simulated leader playing a script: it holds the start pose until `start()`, then plays. A second
    `start()` changes nothing, so a leader already moving never jumps back to the start."""

    def __init__(self, script: ScriptedDemo, clock: Callable[[], float] = time.monotonic) -> None:
        self.script = script
        self._clock = clock
        self._t0_s: float | None = None

    @property
    def started(self) -> bool:
        return self._t0_s is not None

    def start(self) -> None:
        if self._t0_s is None:
            self._t0_s = self._clock()

    def __call__(self, now_s: float) -> np.ndarray:
        """Where the leader is at `now_s` (on `clock`)."""
        t0_s = self._t0_s
        return self.script.start.copy() if t0_s is None else self.script(now_s - t0_s)


def pose_vector(pose: dict[str, float], joints: Sequence[str], what: str) -> np.ndarray:
    """A {joint: value} mapping as a vector in joint order; every joint must be given."""
    missing = [j for j in joints if j not in pose]
    unknown = [j for j in pose if j not in joints]
    if missing or unknown:
        raise ValueError(f"{what}: missing joints {missing}, unknown joints {unknown} (joints: {list(joints)})")
    return np.array([pose[j] for j in joints], dtype=np.float64)
