"""Episodes leave the control loop here. Finishing an episode (draining its video queues, writing its
rows) and committing it (the final encode, appending, metadata) run on two background threads, each in
episode order, so the loop goes on to the next episode at once. The committing thread runs at a lower
CPU priority (its final encodes in processes of their own on idle scheduling while the loop runs): when
they compete for the cores, the control loop and the live recording win. Once the loop has ended, the
encodes left run at a low nice value instead, so other busy programs cannot starve them.

A stop (`stop()`, or the program ending without `close()`) never cuts a commit in half: the commit under
way is abandoned before its renames, and every episode not yet committed stays staged, so the dataset,
its staging area and the run manifest written after `close()` always agree."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

from recorders.dataset import CommitStopped, DatasetWriter
from recorders.episode import EpisodeRecorder, StagedEpisode
from recorders.video import nice_at_least

log = logging.getLogger(__name__)

POLL_S = 0.2
"""How often `close()` looks for a stop request while it waits, and a worker whether the program ended."""


@dataclass(frozen=True)
class EpisodeTimes:
    index: int
    frames: int
    staged_after_s: float
    """From the episode's end to its rows and videos being safe on disk (it survives a crash from then on)."""
    committed_after_s: float | None = None
    """From the episode's end to its commit into the dataset (final encode included)."""


class _Worker:
    """One thread running jobs in order. Unlike a ThreadPoolExecutor, whose threads the interpreter joins
    at exit only after running every queued job, it ends once the program has ended, after the job under
    way (which sees the ended program as a stop)."""

    def __init__(self, name: str, initializer: Callable[[], None] = lambda: None) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(initializer,), name=name)
        self._thread.start()

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future

    def shutdown(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self, initializer: Callable[[], None]) -> None:
        initializer()
        while True:
            try:
                item = self._jobs.get(timeout=POLL_S)
            except queue.Empty:
                if not threading.main_thread().is_alive():
                    return
                continue
            if item is None:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # the job reported it; the future carries it to whoever waits
                future.set_exception(exc)


class Pipeline:
    """Made when the control loop starts; `close()` when it has ended."""

    def __init__(self, writer: DatasetWriter, on_event: Callable[[str], None] = log.info) -> None:
        self.writer = writer
        writer.loop_running.set()
        self.on_event = on_event
        self._finisher = _Worker("episode-finish")
        self._committer = _Worker("episode-commit", initializer=nice_at_least)
        self._lock = threading.Lock()
        self._futures: list[Future[Any]] = []
        self._commits: list[Future[Any]] = []
        self._stop_requests = 0
        """Plain counter, no lock: `stop()` is called from signal handlers."""
        self.times: dict[int, EpisodeTimes] = {}
        self.errors: list[BaseException] = []
        self.left_staged: list[int] = []
        """Episodes a stop left staged, for `record --resume` to commit."""

    @property
    def pending(self) -> int:
        """Episodes handed over (or found staged) and not yet committed or left staged."""
        with self._lock:
            return sum(not f.done() for f in self._commits)

    @property
    def stopping(self) -> bool:
        return self._stop_requests > 0

    def stop(self) -> None:
        """Commit nothing more: the commit under way is abandoned at its next step, before its renames,
        and every episode not yet committed stays staged. Episodes still being saved are saved first.
        Safe to call from a signal handler (it takes no lock) and to repeat; `close()` reports it."""
        self._stop_requests += 1

    def submit(self, recorder: EpisodeRecorder, recording: Mapping[str, Any]) -> None:
        """Hand over an ended episode; returns at once."""
        ended_s = time.monotonic()
        finished = self._finisher.submit(lambda: self._finish(recorder, recording, ended_s))
        self._track(finished)
        self._track(self._committer.submit(lambda: self._commit_after(finished, ended_s)), commit=True)

    def commit_staged(self, staged: StagedEpisode) -> None:
        """Commit an episode a previous run recorded but did not commit."""
        done: Future[StagedEpisode] = Future()
        done.set_result(staged)
        self._track(self._committer.submit(lambda: self._commit_after(done, time.monotonic())), commit=True)

    def discard(self, recorder: EpisodeRecorder) -> None:
        self._track(self._finisher.submit(recorder.discard))

    def close(self) -> bool:
        """Wait for every handed-over episode, their final encodes no longer yielding to the ended loop,
        and say so at once when a stop is asked meanwhile; True when all were committed."""
        self.writer.loop_running.clear()
        with self._lock:
            futures = list(self._futures)
        announced = 0
        while wait(futures, timeout=POLL_S).not_done:
            announced = self._announce_stop(announced)
        self._announce_stop(announced)
        self._finisher.shutdown()
        self._committer.shutdown()
        if self.left_staged:
            listed = ", ".join(map(str, sorted(self.left_staged)))
            self.on_event(f"episode(s) {listed} stay staged in {self.writer.layout.staging}: `record --resume` commits them")
        return not self.errors and not self.left_staged

    def _announce_stop(self, announced: int) -> int:
        requests = self._stop_requests
        if requests > announced:
            self.on_event(
                "stopping the commits: the one under way is abandoned before it changes the dataset, "
                "episodes not yet committed stay staged"
                if announced == 0
                else "already stopping: waiting for the commit under way to let go of the dataset"
            )
        return requests

    def _track(self, future: Future[Any], commit: bool = False) -> None:
        with self._lock:
            self._futures.append(future)
            if commit:
                self._commits.append(future)

    def _stopped(self) -> bool:
        """A stop was asked, or the program ended without closing the pipeline (an exception went past it)."""
        return self.stopping or not threading.main_thread().is_alive()

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
        if self._stopped():
            self.left_staged.append(staged.index)
            return
        try:
            self.writer.commit(staged, stop=self._stopped)
        except CommitStopped:
            self.left_staged.append(staged.index)
            return
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
