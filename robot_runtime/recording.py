"""A recording run on the control tick: teleoperate throughout, record an episode, let the operator reset
the scene, repeat. Everything slow happens in the recorder pipeline; the tick only appends a row."""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from recorders.dataset import DatasetError, DatasetWriter
from recorders.episode import EpisodeRecorder
from recorders.pipeline import Pipeline
from recorders.video import VideoSettings
from robot_runtime.keys import ESTOP, NEXT, RERECORD, STOP
from robot_runtime.loop import Tick
from robot_runtime.teleop import Teleop


class Phase(enum.Enum):
    RECORDING = "recording"
    RESET = "reset"
    DONE = "done"


@dataclass(frozen=True)
class RecordPlan:
    episodes: int
    episode_s: float
    reset_s: float
    task: str


@dataclass(frozen=True)
class Status:
    """What the live status line shows."""

    phase: Phase
    episode: int
    """Episodes recorded in this run, counting the current one."""
    episodes: int
    time_left_s: float
    queued_frames: int
    overflowed_frames: int
    pending_commits: int


class RecordingRun:
    def __init__(
        self,
        teleop: Teleop,
        writer: DatasetWriter,
        pipeline: Pipeline,
        plan: RecordPlan,
        videos: dict[str, VideoSettings],
        keys: Callable[[], list[str]],
        announce: Callable[[str], None],
        first_index: int,
    ) -> None:
        self.teleop = teleop
        self.writer = writer
        self.pipeline = pipeline
        self.plan = plan
        self.videos = videos
        self.keys = keys
        self.announce = announce
        self.phase = Phase.RECORDING
        self.next_index = first_index
        self.recorded = 0
        self.rerecorded = 0
        self.recorder: EpisodeRecorder | None = None
        self._phase_t0_s: float | None = None
        self._episode_late = 0

    def tick(self, tick: Tick) -> None:
        if self.pipeline.errors:  # a full disk or a failed write: stop before more is lost
            raise DatasetError(f"recording stopped: {self.pipeline.errors[0]}")
        step = self.teleop.tick(tick)
        now = tick.deadline_s
        if self._phase_t0_s is None:
            self._enter(self.phase, now)
        for key in self.keys():
            self._on_key(key, now)
        assert self._phase_t0_s is not None  # every phase change goes through _enter
        elapsed = now - self._phase_t0_s + 1e-9  # deadlines are sums of periods: k/30 - j/30 may fall short of (k-j)/30
        if self.phase is Phase.RECORDING and elapsed >= self.plan.episode_s:
            self._end_episode(now)
        elif self.phase is Phase.RESET and elapsed >= self.plan.reset_s:
            self._enter(Phase.RECORDING, now)
        if self.phase is Phase.RECORDING:  # a phase that began on this tick records this tick's row
            assert self.recorder is not None
            if tick.lateness_s > 0.1 * self.period_s:  # the loop's own "late" threshold
                self._episode_late += 1
            self.recorder.add(tick.start_s, step.follower.timestamp_s, step.follower.position, step.action, step.frames)

    @property
    def period_s(self) -> float:
        return 1.0 / self.writer.spec.fps

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def status(self, now_s: float | None = None) -> Status:
        now_s = time.monotonic() if now_s is None else now_s
        limit = self.plan.episode_s if self.phase is Phase.RECORDING else self.plan.reset_s
        left = max(0.0, limit - (now_s - self._phase_t0_s)) if self._phase_t0_s is not None else limit
        recorder = self.recorder
        return Status(
            phase=self.phase,
            episode=self.recorded + (1 if self.phase is Phase.RECORDING else 0),
            episodes=self.plan.episodes,
            time_left_s=left,
            queued_frames=recorder.queued if recorder else 0,
            overflowed_frames=sum(recorder.overflowed.values()) if recorder else 0,
            pending_commits=self.pipeline.pending,
        )

    def interrupt(self) -> None:
        """Ctrl-C or an error: the episode in progress is discarded, saved ones are kept."""
        if self.recorder is not None:
            self.announce(f"episode {self.recorder.index} interrupted after {self.recorder.frames} frames: discarded")
            self.pipeline.discard(self.recorder)
            self.recorder = None
        self.phase = Phase.DONE

    def _on_key(self, key: str, now_s: float) -> None:
        if self.phase is Phase.DONE:
            return
        if key == NEXT:
            if self.phase is Phase.RECORDING:
                self._end_episode(now_s)
            else:
                self._enter(Phase.RECORDING, now_s)
        elif key == RERECORD and self.recorder is not None:
            self.announce(f"re-recording episode {self.recorder.index}: the take is discarded")
            self.pipeline.discard(self.recorder)
            self.recorder = None
            self.rerecorded += 1
            self._enter(Phase.RESET if self.plan.reset_s > 0 else Phase.RECORDING, now_s)
        elif key == STOP:
            if self.phase is Phase.RECORDING:
                self._end_episode(now_s, last=True)
            self.phase = Phase.DONE
        elif key == ESTOP:  # the follower holds from this tick; the take is discarded and the arm parks
            self.teleop.filter.engage_estop("space pressed")
            self.interrupt()

    def _enter(self, phase: Phase, now_s: float) -> None:
        """Begin a phase on this tick's deadline."""
        self.phase = phase
        self._phase_t0_s = now_s
        if phase is Phase.RESET:
            self.announce(f"reset the scene ({self.plan.reset_s:g} s; → or n to start the next episode)")
        elif phase is Phase.RECORDING:
            self._start_episode(now_s)

    def _start_episode(self, t0_s: float) -> None:
        index = self.next_index
        self.recorder = EpisodeRecorder(
            self.writer.staging_dir(index), index, self.writer.spec, self.videos, self.plan.task, t0_s
        )
        self._episode_late = 0
        self.announce(
            f"recording episode {index} ({self.recorded + 1}/{self.plan.episodes}, {self.plan.episode_s:g} s): {self.plan.task}"
        )

    def _end_episode(self, now_s: float, last: bool = False) -> None:
        recorder = self.recorder
        assert recorder is not None
        self.recorder = None
        if recorder.frames == 0:  # ended before its first row: nothing to keep, the episode starts again
            self.pipeline.discard(recorder)
        else:
            self.pipeline.submit(
                recorder, {"late_ticks": self._episode_late, "overflowed_frames": sum(recorder.overflowed.values())}
            )
            self.next_index += 1
            self.recorded += 1
        if last or self.recorded >= self.plan.episodes:
            self.phase = Phase.DONE
        else:
            self._enter(Phase.RESET if self.plan.reset_s > 0 and recorder.frames else Phase.RECORDING, now_s)


@contextlib.contextmanager
def signals_stop_commits(pipeline: Pipeline) -> Iterator[None]:
    """From the end of the control loop until the run manifest is written, Ctrl-C and SIGTERM stop the
    commits (`Pipeline.stop`) instead of raising KeyboardInterrupt, however many arrive: an exception
    there would leave the commit thread committing after the manifest was written, so the dataset
    would no longer match it. Call from the main thread, where signal handlers run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, lambda *_: pipeline.stop()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
