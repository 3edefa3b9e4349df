"""The live half of recording video: while an episode records, each camera's frames go through a bounded
queue to one thread that encodes the near-lossless H.264 intermediate (recorders/video.py has the
settings, the final encode and the files). `put()` only queues a reference, so the tick never waits."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from recorders.video import ENCODERS, VideoError, VideoOutput, VideoSettings, remove_file

STATS_TARGET_PX = 150
STATS_MIN_SAMPLES = 100
"""LeRobot's image statistics: frames strided down towards 150 px, at least 100 of them (or all)."""
ABORT_WAIT_S = 5.0


@dataclass(frozen=True, eq=False)
class EpisodeVideo:
    """One camera's finished intermediate for one episode."""

    path: Path
    frames: int
    """Frames in the file: one per row of the episode."""
    repeated: int
    """Frames filled in by repeating the previous image (queue overflow, or rows that got no image)."""
    samples: np.ndarray
    """uint8 (n, h, w, 3) RGB, for image statistics as LeRobot samples them: evenly spaced rows (all of a
    short episode, 100 to 199 of a long one), strided to about 150 px (640x480 -> 160x120), as put."""


def _stats_sample(image: np.ndarray) -> np.ndarray:
    """LeRobot's `auto_downsample_height_width`: images 300 px or more stride down to about 150 px."""
    longest = max(image.shape[:2])
    step = 1 if longest < 2 * STATS_TARGET_PX else longest // STATS_TARGET_PX
    return np.ascontiguousarray(image[::step, ::step])


class _Sampler:
    """Keeps every `stride`-th row, doubling the stride and dropping every other kept row whenever twice
    the target is reached: memory stays bounded however long the episode, and the rows span it evenly."""

    def __init__(self) -> None:
        self._stride = 1
        self._kept: list[tuple[int, np.ndarray]] = []

    def offer(self, index: int, image: np.ndarray) -> None:
        if index % self._stride:
            return
        self._kept.append((index, _stats_sample(image)))
        if len(self._kept) >= 2 * STATS_MIN_SAMPLES:
            self._stride *= 2
            self._kept = [(row, sample) for row, sample in self._kept if row % self._stride == 0]

    def samples(self) -> np.ndarray:
        return np.stack([sample for _, sample in self._kept])


class _Stop:
    """The worker's last item after abort(): end without closing the episode."""


_STOP = _Stop()
_Item = tuple[int, np.ndarray] | int | _Stop
"""A frame (index, image), finish(frames), or stop."""


class LiveVideoWriter:
    """One camera, one episode: put() from the control tick never blocks.

    The file is opened and the encoder started in __init__ (~3 ms), so an unwritable path raises
    VideoError there. A failure in the worker later (disk full) raises VideoError from the next put() or finish().
    Call put() from one thread. Images are kept by reference until encoded: never write to them.
    """

    def __init__(self, path: Path, settings: VideoSettings, queue_frames: int = 30) -> None:
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be at least 1 (got {queue_frames})")
        self.path = path
        self.settings = settings
        self._shape = (settings.height, settings.width, 3)
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_frames)
        self._overflowed = 0
        self._last_index = -1
        self._closed = False
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        # Worker-only state.
        self._output = VideoOutput(path, settings, ENCODERS["h264"], settings.live_options, settings.live_threads)
        self._sampler = _Sampler()
        self._previous: np.ndarray | None = None
        self._repeated = 0
        self._result: EpisodeVideo | None = None
        self._thread = threading.Thread(target=self._run, name=f"video {path.name}")
        self._thread.start()

    @property
    def overflowed(self) -> int:
        return self._overflowed

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def put(self, frame_index: int, image: np.ndarray) -> bool:
        """Queue the image of row `frame_index` (rows increase; skipped rows repeat the previous image).

        False if the queue is full: the frame is dropped, counted in `overflowed`, and its row repeats the
        previous image, so the video still has one frame per row.
        """
        if self._error is not None:
            raise self._video_error(self._error)
        if self._closed:
            raise VideoError(f"{self.path}: put() after finish() or abort()")
        if image.shape != self._shape or image.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected a uint8 {self._shape} RGB image, got {image.dtype} {image.shape}")
        if frame_index <= self._last_index:
            raise ValueError(f"{self.path}: frame index {frame_index} after {self._last_index}; rows must increase")
        self._last_index = frame_index
        try:
            self._queue.put_nowait((frame_index, image))
        except queue.Full:
            self._overflowed += 1
            return False
        return True

    def finish(self, frames: int, timeout_s: float | None = None) -> EpisodeVideo:
        """Encode what is queued, fill rows up to `frames` by repetition, close and fsync the file."""
        if self._closed:
            raise VideoError(f"{self.path}: finish() after finish() or abort()")
        if frames <= self._last_index:
            raise ValueError(f"{self.path}: the episode has {frames} rows but frame index {self._last_index} was put")
        self._closed = True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            self._queue.put(frames, timeout=timeout_s)  # the worker drains the queue even after a failure
        except queue.Full:
            raise VideoError(
                f"{self.path}: the encoder took no frame for {timeout_s} s; check that the disk is not stalled"
            ) from None
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            raise VideoError(f"{self.path}: the encoder did not finish within {timeout_s} s; check that the disk is not stalled")
        if self._error is not None:
            raise self._video_error(self._error)
        assert self._result is not None
        return self._result

    def abort(self) -> None:
        """Stop the worker (waiting at most ABORT_WAIT_S) and delete the file; safe to repeat."""
        self._closed = True
        self._stopping.set()
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=ABORT_WAIT_S)
            self._thread.join(ABORT_WAIT_S)
        remove_file(self.path)

    def _video_error(self, error: BaseException) -> VideoError:
        if isinstance(error, VideoError):
            return error
        return VideoError(f"{self.path}: the encoder thread failed: {error!r}")

    def _run(self) -> None:
        # After a failure or abort the loop keeps draining, so put() never blocks and finish() is heard.
        while not isinstance(item := self._next_item(), _Stop):
            healthy = self._error is None and not self._stopping.is_set()
            if isinstance(item, int):
                if healthy:
                    self._guarded(self._close_episode, item)
                break
            if healthy:
                self._guarded(self._encode, *item)
        if self._result is None:
            self._output.discard()

    def _guarded(self, step: Callable[..., None], *args: object) -> None:
        try:
            step(*args)
        except BaseException as error:  # reported by put() and finish()
            self._error = error

    def _next_item(self) -> _Item:
        """The next queued item; stops the worker if the program ended without finish() or abort()."""
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not threading.main_thread().is_alive():
                    return _STOP

    def _encode(self, index: int, image: np.ndarray) -> None:
        fill = image if self._previous is None else self._previous  # rows before the first image repeat it
        for row in range(self._output.frames, index):
            self._write(row, fill)
            self._repeated += 1
        self._write(index, image)
        self._previous = image

    def _write(self, row: int, image: np.ndarray) -> None:
        self._output.write(av.VideoFrame.from_ndarray(image, format="rgb24"))
        self._sampler.offer(row, image)

    def _close_episode(self, frames: int) -> None:
        if self._previous is None:
            raise VideoError(f"{self.path}: no image was put for this episode; check that the camera delivered frames")
        for row in range(self._output.frames, frames):
            self._write(row, self._previous)
            self._repeated += 1
        self._output.close()
        self._result = EpisodeVideo(self.path, frames, self._repeated, self._sampler.samples())


