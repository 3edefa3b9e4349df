"""Policies served without a model, for dry runs of the whole policy path: a recorded episode replayed,
and a smooth scripted motion around the robot's first state. Both keep their state per connection
(PerConnectionPolicy): every client replays from its own start and swings around its own first state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recorders.reader import DatasetReader

Clock = Callable[[], float]

STATE_KEYS = ("state", "observation/state", "observation.state")
"""Where openpi's ALOHA and LIBERO clients and LeRobot put the state vector."""
SPLIT_STATE_KEYS = ("observation/joint_position", "observation/gripper_position")
"""DROID's state, in two parts."""


class _Stopwatch:
    """Seconds since the first reading."""

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
    """Replays recorded actions: each connection replays from its own start, a request t seconds after
    that connection's first one getting the `horizon` actions from frame round(t * fps) on, the last
    action repeated past the end of the episode."""

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
        self._clock = clock

    @classmethod
    def from_dataset(cls, path: Path | str, episode: int, horizon: int = 50, *, clock: Clock = time.monotonic) -> EpisodePolicy:
        reader = DatasetReader(path)
        metadata = {"dataset": str(path), "episode": episode, "action_names": reader.action_names}
        return cls(reader.episode(episode).actions, reader.fps, horizon, metadata, clock=clock)

    def connection(self) -> _Replay:
        return _Replay(self, _Stopwatch(self._clock))


class _Replay:
    """One connection's replay of an episode, on its own clock."""

    def __init__(self, episode: EpisodePolicy, stopwatch: _Stopwatch) -> None:
        self.metadata = episode.metadata
        self._episode = episode
        self._stopwatch = stopwatch

    def infer(self, obs: dict) -> dict:
        episode = self._episode
        first = round(self._stopwatch.elapsed_s() * episode.fps)
        frames = np.minimum(np.arange(first, first + episode.horizon), len(episode.actions) - 1)
        return {"actions": episode.actions[frames]}


class ScriptedPolicy:
    """Every dimension swings `amplitude` (in the state's own units) around the first state its
    connection sent, with period `period_s`: motion that is smooth, bounded and easy to recognise on a
    real arm. Each connection has its own centre and clock, so one client's state never moves another's arm."""

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
        self._clock = clock

    def connection(self) -> _Swing:
        return _Swing(self, _Stopwatch(self._clock))


class _Swing:
    """One connection's swing, centred on the first state it sent."""

    def __init__(self, script: ScriptedPolicy, stopwatch: _Stopwatch) -> None:
        self.metadata = script.metadata
        self._script = script
        self._stopwatch = stopwatch
        self._centre: np.ndarray | None = None
        self._lock = threading.Lock()

    def infer(self, obs: dict) -> dict:
        script = self._script
        with self._lock:
            if self._centre is None:
                self._centre = find_state(obs)
            centre = self._centre
        times_s = self._stopwatch.elapsed_s() + np.arange(script.horizon) / script.fps
        swing = script.amplitude * np.sin(2 * np.pi * times_s / script.period_s)
        return {"actions": centre + swing[:, np.newaxis]}


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


def bool_mask(counts: list[int]) -> np.ndarray:
    """openpi's make_bool_mask: `[6, -1, 6, -1]` is six True, one False, six True, one False."""
    if not counts or 0 in counts:
        raise ValueError(f"a mask is a list of non-zero counts like 6,-1,6,-1, not {counts}")
    return np.concatenate([np.full(abs(n), n > 0) for n in counts])


class DeltaActions:
    """Another policy's absolute actions served as deltas from each observation's state on the values
    `mask` marks: what a policy trained with openpi's DeltaActions and served without its AbsoluteActions
    returns. The client adds the state back (`policy.actions` kind `delta`)."""

    def __init__(self, policy: EpisodePolicy | ScriptedPolicy, mask: np.ndarray) -> None:
        self.policy = policy
        self.mask = mask
        self.metadata = {**policy.metadata, "delta_mask": mask.tolist()}

    def connection(self) -> _Deltas:
        return _Deltas(self, self.policy.connection())


class _Deltas:
    def __init__(self, deltas: DeltaActions, absolute: _Replay | _Swing) -> None:
        self.metadata = deltas.metadata
        self._mask = deltas.mask
        self._absolute = absolute

    def infer(self, obs: dict) -> dict:
        state = find_state(obs)
        actions = self._absolute.infer(obs)["actions"]
        if not len(state) == actions.shape[1] == len(self._mask):
            raise ValueError(
                f"deltas need a state as wide as the actions and the mask: state {len(state)}, actions {actions.shape[1]}, "
                f"mask {len(self._mask)}"
            )
        return {"actions": actions - np.where(self._mask, state, 0.0)}
