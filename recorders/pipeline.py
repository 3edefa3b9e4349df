"""Episodes leave the control loop here. Finishing an episode (draining its video queues, writing its
rows) and committing it (the final encode, appending, metadata) run on two background threads, each in
episode order, so the loop goes on to the next episode at once. The committing thread runs at a lower
CPU priority (its final encodes in processes of their own on idle scheduling while the loop runs): when
they compete for the cores, the control loop and the live recording win. Once the loop has ended, the
encodes left run at a low nice value instead, so other busy programs cannot starve them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from recorders.dataset import DatasetWriter
from recorders.episode import EpisodeRecorder, StagedEpisode
from recorders.video import nice_at_least

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EpisodeTimes:
    index: int
    frames: int
    staged_after_s: float
    """From the episode's end to its rows and videos being safe on disk (it survives a crash from then on)."""
    committed_after_s: float | None = None
    """From the episode's end to its commit into the dataset (final encode included)."""


class Pipeline:
    """Made when the control loop starts; `close()` when it has ended."""

    def __init__(self, writer: DatasetWriter, on_event: Callable[[str], None] = log.info) -> None:
        self.writer = writer
        writer.loop_running.set()
        self.on_event = on_event
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="episode-finish")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="episode-commit", initializer=nice_at_least)
        self._lock = threading.Lock()
        self._futures: list[Future[Any]] = []
        self.times: dict[int, EpisodeTimes] = {}
        self.errors: list[BaseException] = []

    @property
    def pending(self) -> int:
        """Episodes ended but not yet committed."""
        with self._lock:
            return sum(not f.done() for f in self._futures)

    def submit(self, recorder: EpisodeRecorder, recording: Mapping[str, Any]) -> None:
        """Hand over an ended episode; returns at once."""
        ended_s = time.monotonic()
        finished = self._finisher.submit(self._finish, recorder, recording, ended_s)
        self._track(finished)
        self._track(self._committer.submit(self._commit_after, finished, ended_s))

    def commit_staged(self, staged: StagedEpisode) -> None:
        """Commit an episode a previous run recorded but did not commit."""
        done: Future[StagedEpisode] = Future()
        done.set_result(staged)
        self._track(self._committer.submit(self._commit_after, done, time.monotonic()))

    def discard(self, recorder: EpisodeRecorder) -> None:
        self._track(self._finisher.submit(recorder.discard))

    def close(self) -> bool:
        """Wait for every handed-over episode, their final encodes no longer yielding to the ended loop;
        True when all were committed."""
        self.writer.loop_running.clear()
        with self._lock:
            futures = list(self._futures)
        wait(futures)
        self._finisher.shutdown()
        self._committer.shutdown()
        return not self.errors

    def _track(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.append(future)

    def _finish(self, recorder: EpisodeRecorder, recording: Mapping[str, Any], ended_s: float) -> StagedEpisode:
        try:
            staged = recorder.finish(recording)
        except BaseException as exc:
            recorder.discard()
            self._fail(f"episode {recorder.index} could not be saved", exc)
            raise
        self.times[staged.index] = EpisodeTimes(staged.index, staged.frames, time.monotonic() - ended_s)
        self.on_event(f"episode {staged.index} saved ({staged.frames} frames); committing in the background")
        return staged

    def _commit_after(self, finished: Future[StagedEpisode], ended_s: float) -> None:
        try:
            staged = finished.result()
        except BaseException:
            return  # already reported by _finish
        if self.errors:
            self.on_event(f"episode {staged.index} stays staged after an earlier failure: --resume commits it")
            return
        try:
            self.writer.commit(staged)
        except BaseException as exc:
            self._fail(f"episode {staged.index} could not be committed", exc)
            raise
        times = self.times.get(staged.index, EpisodeTimes(staged.index, staged.frames, 0.0))
        self.times[staged.index] = EpisodeTimes(times.index, times.frames, times.staged_after_s, time.monotonic() - ended_s)
        self.on_event(f"episode {staged.index} committed to {self.writer.root}")

    def _fail(self, what: str, exc: BaseException) -> None:
        """Recorded for the run to stop on and report; logged in full only with -v."""
        self.errors.append(exc)
        log.debug("%s", what, exc_info=exc)
