"""A policy driving the follower, as one tick function: wait for the first chunk, move smoothly to its
first action, then execute scheduled actions, holding when none is fresh and stopping when the
watchdog trips. In test mode the same decisions are made and logged but nothing is written to the arm."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

import numpy as np

from cameras.base import Frame
from cameras.camera_set import CameraSet
from robot_runtime.config import SafetyConfig
from robot_runtime.loop import Tick, percentile_ms
from robot_runtime.policy.chunks import Chunk, ChunkScheduler, Scheduled, Scheduling
from robot_runtime.policy.client import PolicyProtocolError, PolicyServerError, PolicyUnreachable
from robot_runtime.policy.mapping import ActionWidthError
from robot_runtime.policy.worker import Failure, Inference, InferenceWorker, Result, Snapshot
from robot_runtime.rig import Rig
from robot_runtime.robot import JointState
from robot_runtime.safety import SafetyFilter, Watchdog, per_unit

log = logging.getLogger(__name__)

FATAL = (PolicyUnreachable, PolicyServerError, PolicyProtocolError, ActionWidthError)
"""Failures that end a run at once: the server is gone, its policy crashed, it breaks the protocol, or it
answers for another action space; none gets better by asking again. Timeouts, dropped connections and
single unusable chunks (non-finite, too few columns) are retried until the watchdog decides."""


class Phase(enum.Enum):
    FIRST_CHUNK = "first chunk"
    """Holding while the first inference runs (it may compile for many seconds)."""
    APPROACH = "approach"
    """A smooth move from the starting pose to the first chunk's first action."""
    POLICY = "policy"


class SafetyStop(RuntimeError):
    """The run stopped itself to stay safe (watchdog, first reply never came); the arm is parked next."""


@dataclass(frozen=True)
class PolicyStep:
    """One tick's decisions, for the action log, the dataset and the status line."""

    tick: Tick
    phase: Phase
    state: JointState
    frames: dict[str, Frame]
    scheduled: Scheduled | None
    """The policy's action for this tick, None while approaching or holding."""
    target: np.ndarray
    """What the tick aimed for before the safety filter (the held target when nothing was fresh)."""
    sent: np.ndarray
    """After the safety filter: sent to the arm in autonomous mode, what would have been sent in test mode."""


@dataclass
class PolicyStats:
    requests: int = 0
    chunks: int = 0
    rejected_replies: int = 0
    """Replies with non-finite actions or a shape that does not map onto the joints: never executed."""
    failed_requests: int = 0
    """Timeouts and dropped connections (retried)."""
    latencies_s: list[float] = field(default_factory=list)
    ages_ticks: list[int] = field(default_factory=list)
    """Per executed action: ticks since the observation it answers."""

    def as_dict(self, scheduler: ChunkScheduler, rate_hz: float) -> dict[str, float | int]:
        latencies = np.asarray(self.latencies_s)
        ages_s = np.asarray(self.ages_ticks) / rate_hz
        return {
            "requests": self.requests,
            "chunks": self.chunks,
            "rejected_replies": self.rejected_replies,
            "failed_requests": self.failed_requests,
            "inference_p50_ms": percentile_ms(latencies, 50),
            "inference_p99_ms": percentile_ms(latencies, 99),
            "inference_max_ms": float(latencies.max() * 1e3) if len(latencies) else float("nan"),
            "chunk_age_p50_ms": percentile_ms(ages_s, 50),
            "chunk_age_p99_ms": percentile_ms(ages_s, 99),
            "skipped_steps": scheduler.skipped_steps,
            "unusable_chunks": scheduler.unusable_chunks,
        }


class PolicyControl:
    def __init__(
        self,
        follower: Rig,
        worker: InferenceWorker,
        scheduler: ChunkScheduler,
        safety: SafetyConfig,
        rate_hz: float,
        *,
        move: bool,
        cameras: CameraSet | None = None,
        first_reply_s: float = 30.0,
        request_timeout_s: float = 5.0,
    ) -> None:
        self.follower = follower
        self.worker = worker
        self.scheduler = scheduler
        self.safety = safety
        self.rate_hz = rate_hz
        self.move = move
        self.cameras = cameras if cameras is not None else CameraSet({})
        self.first_reply_s = first_reply_s
        self.request_timeout_s = request_timeout_s
        self.filter = SafetyFilter.for_rig(follower, safety, rate_hz)
        self._approach_speed = per_unit(follower, safety.approach_speed, "safety.approach_speed")
        self.watchdog = Watchdog(safety.watchdog_s)
        self.stats = PolicyStats()
        self.phase = Phase.FIRST_CHUNK
        self.last: PolicyStep | None = None
        self._next_id = 0
        self._sent: np.ndarray | None = None
        self._origin: np.ndarray | None = None
        self._approach: tuple[int, int, np.ndarray] | None = None
        """(first tick, ticks, target) of the move to the first action."""
        self._prefetch_ticks = 0
        """Asynchronous scheduling asks for the policy's first chunk this many ticks before the approach
        ends, so that it is there when the approach is: the hand-over holds for no inference."""
        self._started_s: float | None = None
        self._last_failure: Exception | None = None
        """The latest failed request since the last good chunk: the likely reason a watchdog trips."""

    def start(self) -> None:
        """Ask for the first chunk from where the arm is now; nothing moves until it arrives."""
        state = self.follower.read()
        frames = self.cameras.frames_at(state.timestamp_s)
        self._origin = self._sent = state.position
        self._started_s = state.timestamp_s
        self._submit(0, state, frames, self.first_reply_s)

    def tick(self, tick: Tick) -> PolicyStep:
        if self._sent is None:
            raise RuntimeError("call start() before tick()")
        state = self.follower.read()
        frames = self.cameras.frames_at(state.timestamp_s)
        for result in self.worker.results():
            self._accept(result, tick.index)
        scheduled: Scheduled | None = None
        phase = self.phase
        if phase is Phase.FIRST_CHUNK:
            self._check_first_reply(state.timestamp_s)
            if not self.worker.busy:  # the last attempt failed: ask again from here
                self._submit(tick.index, state, frames, self._first_reply_left_s(state.timestamp_s))
            target = self._sent
        elif phase is Phase.APPROACH:
            target = self._approach_target(tick)
            if self._prefetch_due(tick.index):
                self._submit(tick.index, state, frames)
        else:
            if self.scheduler.wants_request(tick.index) and not self.worker.busy:
                self._submit(tick.index, state, frames)
                if self.scheduler.scheduling is Scheduling.SYNC:
                    self._wait_for_reply(tick.index)
            scheduled = self.scheduler.action(tick.index)
            target = self._sent if scheduled is None else scheduled.action
        if phase is Phase.POLICY and scheduled is None:
            sent = self._hold(tick)
        else:
            if scheduled is not None:
                self.watchdog.feed(tick.start_s)
            sent = self.filter(target, self._sent)
        if self.move:
            sent = self.follower.write(sent).sent
        self._sent = sent
        if scheduled is not None:
            self.stats.ages_ticks.append(scheduled.age_ticks)
        self.last = PolicyStep(tick, phase, state, frames, scheduled, target, sent)
        return self.last

    # -- internals ---------------------------------------------------------------------------

    def _hold(self, tick: Tick) -> np.ndarray:
        """No fresh action: hold the last target, until the watchdog says the policy is gone."""
        assert self._sent is not None
        if self.watchdog.expired(tick.start_s) and not self.filter.estopped:
            waiting = self.worker.in_flight_s()
            if waiting is not None:
                cause = f"; the request in flight has waited {waiting:.2f} s"
            elif self._last_failure is not None:
                cause = f"; last failure: {self._last_failure}"
            else:
                cause = ""
            raise SafetyStop(
                f"watchdog: no fresh action from the policy for {self.watchdog.starved_s(tick.start_s):.2f} s "
                f"(safety.watchdog_s is {self.watchdog.timeout_s:g} s){cause}"
            )
        return self.filter.hold(self._sent)

    def _submit(self, tick: int, state: JointState, frames: dict[str, Frame], timeout_s: float | None = None) -> None:
        images = {name: frame.image for name, frame in frames.items()}
        self.worker.submit(Snapshot(tick, state.position.copy(), images, state.timestamp_s, timeout_s))
        self.stats.requests += 1

    def _wait_for_reply(self, tick: int) -> None:
        """Synchronous scheduling: the tick blocks until the reply (or the request timeout)."""
        result = self.worker.wait(self.request_timeout_s + 1.0)
        if result is not None:
            self._accept(result, tick)

    def _accept(self, result: Result, tick: int) -> None:
        if isinstance(result, Failure):
            self._failed(result)
            return
        assert isinstance(result, Inference)
        if not np.isfinite(result.actions).all():
            self.stats.rejected_replies += 1
            self._last_failure = ValueError(f"the reply to the observation of tick {result.obs_tick} held non-finite actions")
            log.warning("rejected a chunk with non-finite actions (observation of tick %d): holding", result.obs_tick)
            return
        self._last_failure = None
        chunk = Chunk(self._next_id, result.actions, result.obs_tick, tick, result.latency_s)
        self._next_id += 1
        self.stats.chunks += 1
        self.stats.latencies_s.append(result.latency_s)
        if self.phase is Phase.FIRST_CHUNK:
            self._begin_approach(chunk, tick)
        else:
            self.scheduler.receive(chunk)

    def _failed(self, failure: Failure) -> None:
        if isinstance(failure.error, FATAL):
            raise failure.error
        self._last_failure = failure.error
        if isinstance(failure.error, (ValueError, PolicyProtocolError)):  # a reply that is not a usable chunk
            self.stats.rejected_replies += 1
        else:
            self.stats.failed_requests += 1
        log.warning("policy request for tick %d failed: %s", failure.obs_tick, failure.error)

    def _first_reply_left_s(self, now_s: float) -> float:
        assert self._started_s is not None
        return self.first_reply_s - (now_s - self._started_s)

    def _check_first_reply(self, now_s: float) -> None:
        if self._first_reply_left_s(now_s) < 0:
            raise SafetyStop(f"the policy server gave no usable first reply within {self.first_reply_s:g} s (--first-reply-s)")

    def _begin_approach(self, chunk: Chunk, tick: int) -> None:
        assert self._sent is not None
        target = chunk.actions[0]
        distances = self.follower.space.distances(target, self._sent)
        seconds = max([self.safety.ramp_s] + [d.value / self._approach_speed[d.unit] for d in distances])
        self._origin = self._sent
        self._approach = (tick, max(1, round(seconds * self.rate_hz)), target)
        # the first reply may include a compile
        self._prefetch_ticks = min(tick - chunk.obs_tick, chunk.horizon // 2) + self.scheduler.margin_ticks
        self.phase = Phase.APPROACH

    def _prefetch_due(self, tick: int) -> bool:
        assert self._approach is not None
        if self.scheduler.scheduling is not Scheduling.ASYNC or self.worker.busy or self.scheduler.current is not None:
            return False
        first, ticks, _ = self._approach
        return first + ticks - 1 - tick <= self._prefetch_ticks

    def _approach_target(self, tick: Tick) -> np.ndarray:
        """A cosine blend: zero velocity at both ends, so the arm neither jerks off nor overshoots.
        The policy takes over on the next tick, asking afresh from the pose reached."""
        assert self._approach is not None and self._origin is not None
        first, ticks, target = self._approach
        s = min(1.0, (tick.index - first + 1) / ticks)
        if s >= 1.0:
            self.phase = Phase.POLICY
            self.watchdog.feed(tick.start_s)
        blend = 0.5 - 0.5 * np.cos(np.pi * s)
        return self.follower.space.interpolate(self._origin, target, blend)
