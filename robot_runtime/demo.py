"""A scripted demonstration for simulated leader arms: smooth moves through waypoints, looped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScriptedDemo:
    """Position at time t: hold the start pose for `hold_s`, then visit each waypoint in `segment_s`
    with a cosine blend (zero velocity at every waypoint), back to the start, and repeat."""

    start: np.ndarray
    waypoints: np.ndarray
    hold_s: float
    segment_s: float
    t0_s: float

    def __call__(self, t_s: float) -> np.ndarray:
        t = t_s - self.t0_s - self.hold_s
        if t <= 0:
            return self.start.copy()
        path = np.vstack([self.start, self.waypoints, self.start])
        segments = len(path) - 1
        k, within = divmod(t / self.segment_s, 1.0)
        k = int(k) % segments
        blend = 0.5 - 0.5 * np.cos(np.pi * within)
        return path[k] + blend * (path[k + 1] - path[k])

    @property
    def peak_speed_per_s(self) -> np.ndarray:
        """Largest joint speed of the script (units/s): a cosine blend peaks at pi/2 x the mean speed."""
        path = np.vstack([self.start, self.waypoints, self.start])
        return np.abs(np.diff(path, axis=0)).max(axis=0) * np.pi / (2 * self.segment_s)


def pose_vector(pose: dict[str, float], joints: Sequence[str], what: str) -> np.ndarray:
    """A {joint: value} mapping as a vector in joint order; every joint must be given."""
    missing = [j for j in joints if j not in pose]
    unknown = [j for j in pose if j not in joints]
    if missing or unknown:
        raise ValueError(f"{what}: missing joints {missing}, unknown joints {unknown} (joints: {list(joints)})")
    return np.array([pose[j] for j in joints], dtype=np.float64)
