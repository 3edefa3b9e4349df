"""Policies served without a model, for dry runs of the whole policy path: a recorded episode replayed
on the server's clock, and a smooth scripted motion around the robot's first state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recorders.layout import ACTION
from recorders.reader import DatasetReader

Clock = Callable[[], float]

STATE_KEYS = ("state", "observation/state", "observation.state")
"""Where openpi's ALOHA and LIBERO clients and LeRobot put the state vector."""
SPLIT_STATE_KEYS = ("observation/joint_position", "observation/gripper_position")
"""DROID's state, in two parts."""


class _Stopwatch:
    """Seconds since the first reading, shared by every connection: a client that reconnects carries on."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._start_s: float | None = None
        self._lock = threading.Lock()

    def elapsed_s(self) -> float:
        with self._lock:
            now_s = self._clock()
            if self._start_s is None:
                self._start_s = now_s
            return now_s - self._start_s


class EpisodePolicy:
    """Replays recorded actions: a request t seconds after the server's first request gets the `horizon`
    actions from frame round(t * fps) on, the last action repeated past the end of the episode."""

    def __init__(
        self, actions: np.ndarray, fps: float, horizon: int = 50, metadata: dict | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        if actions.ndim != 2 or not actions.size:
            raise ValueError(f"an episode needs a [frames, action_dim] array of actions, not shape {actions.shape}")
        if fps <= 0 or horizon < 1:
            raise ValueError(f"fps ({fps}) must be positive and horizon ({horizon}) at least 1")
        self.actions = actions.copy()
        self.fps = fps
        self.horizon = horizon
        self.metadata = {"source": "episode", "fps": fps, "length": len(actions), **(metadata or {})}
        self._stopwatch = _Stopwatch(clock)

    @classmethod
    def from_dataset(cls, path: Path | str, episode: int, horizon: int = 50, *, clock: Clock = time.monotonic) -> EpisodePolicy:
        reader = DatasetReader(path)
        metadata = {"dataset": str(path), "episode": episode, "action_names": reader.info["features"][ACTION]["names"]}
        return cls(reader.episode(episode).actions, reader.fps, horizon, metadata, clock=clock)

    def infer(self, obs: dict) -> dict:
        first = round(self._stopwatch.elapsed_s() * self.fps)
        frames = np.minimum(np.arange(first, first + self.horizon), len(self.actions) - 1)
        return {"actions": self.actions[frames]}


class ScriptedPolicy:
    """Every dimension swings `amplitude` (in the state's own units) around the first state the policy
    saw, with period `period_s`: motion that is smooth, bounded and easy to recognise on a real arm."""

    def __init__(
        self,
        horizon: int = 50,
        fps: float = 30.0,
        amplitude: float = 5.0,
        period_s: float = 4.0,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if horizon < 1 or fps <= 0 or period_s <= 0:
            raise ValueError(f"horizon ({horizon}) must be at least 1, fps ({fps}) and period_s ({period_s}) positive")
        self.horizon = horizon
        self.fps = fps
        self.amplitude = amplitude
        self.period_s = period_s
        self.metadata = {"source": "script", "horizon": horizon, "fps": fps, "amplitude": amplitude, "period_s": period_s}
        self._stopwatch = _Stopwatch(clock)
        self._first_state: np.ndarray | None = None
        self._lock = threading.Lock()

    def infer(self, obs: dict) -> dict:
        with self._lock:
            if self._first_state is None:
                self._first_state = find_state(obs)
            first_state = self._first_state
        times_s = self._stopwatch.elapsed_s() + np.arange(self.horizon) / self.fps
        swing = self.amplitude * np.sin(2 * np.pi * times_s / self.period_s)
        return {"actions": first_state + swing[:, np.newaxis]}


def find_state(obs: dict) -> np.ndarray:
    """The flat state vector of an observation laid out as openpi's example clients or LeRobot do."""
    for key in STATE_KEYS:
        if key in obs:
            return np.asarray(obs[key], dtype=np.float64).ravel()
    if all(key in obs for key in SPLIT_STATE_KEYS):
        return np.concatenate([np.asarray(obs[key], dtype=np.float64).ravel() for key in SPLIT_STATE_KEYS])
    raise ValueError(
        f"no state in the observation: expected one of {', '.join(STATE_KEYS)} or both of {' + '.join(SPLIT_STATE_KEYS)}; "
        f"got {', '.join(map(str, obs)) or 'no keys'}"
    )
