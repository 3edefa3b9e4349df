"""Which action of which chunk each control tick executes, and when to ask for the next chunk.

Time is counted in ticks. A chunk answers an observation taken at tick `obs_tick`; its step i is the
action for tick `obs_tick + i`. A chunk that arrives late is aligned: the steps whose ticks have passed
are skipped, so the arm never replays the past.

Synchronous scheduling asks for the next chunk only when `actions_per_chunk` steps are used up and the
loop waits for it (openpi's ActionChunkBroker): every chunk boundary stalls for a whole inference.
Asynchronous scheduling asks early enough, from the latencies seen so far, that the reply lands
before the steps run out; until it does, the current chunk keeps going up to its horizon.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_runtime.spaces import weighted_mean


class Scheduling(enum.Enum):
    SYNC = "sync"
    ASYNC = "async"


@dataclass(frozen=True)
class Chunk:
    id: int
    actions: np.ndarray
    """[horizon, joints] in joint units."""
    obs_tick: int
    """The tick whose observation the policy answered."""
    arrived_tick: int
    latency_s: float
    """Observation snapshot to mapped actions: image preparation, encoding, the round trip, decoding."""

    @property
    def horizon(self) -> int:
        return len(self.actions)


@dataclass(frozen=True)
class Scheduled:
    """The action for one tick and where it came from (for the action log and the status line)."""

    action: np.ndarray
    chunk_id: int
    step: int
    age_ticks: int
    """Ticks since the observation this action answers."""
    latency_s: float
    """Inference latency of the chunk."""
    blended: int = 1
    """Chunks averaged into it (temporal ensembling), 1 otherwise."""


class ChunkScheduler:
    def __init__(
        self,
        scheduling: Scheduling,
        actions_per_chunk: int | None = None,
        *,
        ensemble_m: float | None = None,
        average: Callable[[np.ndarray, np.ndarray], np.ndarray] = weighted_mean,
        margin_ticks: int = 2,
        latency_window: int = 8,
    ) -> None:
        """`actions_per_chunk` None executes whole chunks; `ensemble_m` averages every chunk covering a
        tick with weights exp(-m*i), i = 0 for the oldest (ACT's temporal ensembling), with `average`
        (the follower's `space.average` blends rotations on quaternions)."""
        if actions_per_chunk is not None and actions_per_chunk < 1:
            raise ValueError(f"actions per chunk must be at least 1, got {actions_per_chunk}")
        self.scheduling = scheduling
        self.actions_per_chunk = actions_per_chunk
        self.ensemble_m = ensemble_m
        self.average = average
        self.margin_ticks = margin_ticks
        self.current: Chunk | None = None
        self._recent: collections.deque[Chunk] = collections.deque()
        self._delays: collections.deque[int] = collections.deque(maxlen=latency_window)
        self.skipped_steps = 0
        """Steps of late chunks whose ticks had already passed when they arrived."""
        self.unusable_chunks = 0
        """Chunks that arrived after their whole horizon had passed."""

    def budget(self, chunk: Chunk) -> int:
        return min(chunk.horizon, self.actions_per_chunk or chunk.horizon)

    def expected_delay_ticks(self) -> int:
        """Observation to usable chunk, in ticks: the worst of the recent ones, so jitter is covered."""
        return max(self._delays, default=0)

    def receive(self, chunk: Chunk) -> None:
        """A reply arrived (at `chunk.arrived_tick`): it takes over from the current chunk at once."""
        delay = chunk.arrived_tick - chunk.obs_tick
        self._delays.append(delay)
        if delay >= chunk.horizon:
            self.unusable_chunks += 1
            return
        self.skipped_steps += delay
        self.current = chunk
        self._recent.append(chunk)
        while self._recent and self._recent[0].obs_tick + self._recent[0].horizon <= chunk.arrived_tick:
            self._recent.popleft()

    def wants_request(self, tick: int) -> bool:
        """Whether to snapshot this tick's observation and ask for a chunk (none being in flight)."""
        chunk = self.current
        if chunk is None:
            return True
        step = tick - chunk.obs_tick
        if self.scheduling is Scheduling.SYNC:
            return step >= self.budget(chunk)
        return step >= self.budget(chunk) - self.expected_delay_ticks() - self.margin_ticks

    def action(self, tick: int) -> Scheduled | None:
        """The action for this tick, or None when every chunk is used up (the caller holds)."""
        chunk = self.current
        if chunk is None or not chunk.obs_tick <= tick < chunk.obs_tick + chunk.horizon:
            return None
        step = tick - chunk.obs_tick
        if self.ensemble_m is None:
            return Scheduled(chunk.actions[step], chunk.id, step, step, chunk.latency_s)
        covering = [c for c in self._recent if c.obs_tick <= tick < c.obs_tick + c.horizon]
        weights = np.exp(-self.ensemble_m * np.arange(len(covering)))
        stacked = np.stack([c.actions[tick - c.obs_tick] for c in covering])
        blended = self.average(stacked, weights)
        return Scheduled(blended, chunk.id, step, step, chunk.latency_s, blended=len(covering))
