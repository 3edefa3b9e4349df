"""One episode while it is recorded: rows kept in memory, frames handed to one live video writer per
camera, all inside the episode's own staging directory. Nothing under the dataset's real files changes
until the episode is committed, so a discarded take or a crash mid-episode leaves nothing behind."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recorders.atomic import fsync_dir, write_json_atomic
from recorders.layout import ACTION, STATE, STATE_S, TICK_S, DatasetSpec, capture_key, frame_number_key
from recorders.live_video import LiveVideoWriter
from recorders.stats import FeatureStats, image_stats
from recorders.video import VideoSettings

if TYPE_CHECKING:
    from cameras.base import Frame

READY = "episode.json"
"""Written last: a staged episode without it was interrupted and is discarded."""
ROWS = "rows.parquet"


@dataclass
class _Rows:
    tick_s: list[float] = field(default_factory=list)
    state_s: list[float] = field(default_factory=list)
    state: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    capture_s: dict[str, list[float]] = field(default_factory=dict)
    frame_number: dict[str, list[int]] = field(default_factory=dict)


class EpisodeRecorder:
    """Collects one episode. `add` runs on the control tick and never waits; `finish` (off the tick)
    drains the video writers and writes the staged episode."""

    def __init__(
        self,
        directory: Path,
        index: int,
        spec: DatasetSpec,
        videos: Mapping[str, VideoSettings],
        task: str,
        t0_s: float,
        queue_frames: int = 30,
    ) -> None:
        self.directory = directory
        self.index = index
        self.spec = spec
        self.task = task
        self.t0_s = t0_s
        """The episode's first tick deadline on the monotonic clock: row times are stored relative to it."""
        self.started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        directory.mkdir(parents=True)
        self._rows = _Rows(capture_s={c: [] for c in spec.cameras}, frame_number={c: [] for c in spec.cameras})
        self._writers: dict[str, LiveVideoWriter] = {}
        try:
            for camera in spec.cameras:
                self._writers[camera] = LiveVideoWriter(directory / f"{camera}.mp4", videos[camera], queue_frames)
        except BaseException:
            self.discard()
            raise

    @property
    def frames(self) -> int:
        return len(self._rows.tick_s)

    @property
    def overflowed(self) -> dict[str, int]:
        return {camera: writer.overflowed for camera, writer in self._writers.items()}

    @property
    def queued(self) -> int:
        """Frames waiting in the fullest camera queue."""
        return max((w.queued for w in self._writers.values()), default=0)

    def add(self, tick_s: float, state_s: float, state: np.ndarray, action: np.ndarray, frames: Mapping[str, Frame]) -> None:
        """One row: the tick's start and the follower's read time (monotonic s), joint state, action sent, one frame per "
        "camera."""
        index = self.frames
        rows = self._rows
        for camera, writer in self._writers.items():
            frame = frames[camera]
            writer.put(index, frame.image)
            rows.capture_s[camera].append(frame.capture_s - self.t0_s)
            rows.frame_number[camera].append(frame.number)
        rows.tick_s.append(tick_s - self.t0_s)
        rows.state_s.append(state_s - self.t0_s)
        rows.state.append(np.asarray(state, dtype=np.float32))
        rows.action.append(np.asarray(action, dtype=np.float32))

    def finish(self, recording: Mapping[str, Any] | None = None) -> StagedEpisode:
        """Close the videos, write the rows and mark the episode ready; on failure nothing is marked ready."""
        if self.frames == 0:
            self.discard()
            raise ValueError(f"episode {self.index} has no frames")
        videos = {camera: writer.finish(self.frames) for camera, writer in self._writers.items()}
        pq.write_table(self._table(), self.directory / ROWS)
        staged = StagedEpisode(
            directory=self.directory,
            index=self.index,
            task=self.task,
            frames=self.frames,
            started_at=self.started_at,
            repeated_frames={camera: video.repeated for camera, video in videos.items()},
            image_stats={camera: image_stats(video.samples) for camera, video in videos.items()},
            recording=dict(recording or {}),
        )
        staged.save()
        return staged

    def discard(self) -> None:
        """Throw the take away: its frames never reach the dataset."""
        for writer in self._writers.values():
            writer.abort()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _table(self) -> pa.Table:
        rows, width = self._rows, len(self.spec.joints)
        columns: dict[str, pa.Array] = {
            ACTION: _vectors(rows.action, width),
            STATE: _vectors(rows.state, width),
            TICK_S: pa.array(rows.tick_s, pa.float64()),
            STATE_S: pa.array(rows.state_s, pa.float64()),
        }
        for camera in self.spec.cameras:
            columns[capture_key(camera)] = pa.array(rows.capture_s[camera], pa.float64())
            columns[frame_number_key(camera)] = pa.array(rows.frame_number[camera], pa.int64())
        return pa.table(columns)


def _vectors(values: list[np.ndarray], width: int) -> pa.FixedSizeListArray:
    flat = np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), width)


@dataclass(frozen=True)
class StagedEpisode:
    """A recorded episode waiting in staging for its commit into the dataset."""

    directory: Path
    index: int
    task: str
    frames: int
    started_at: str
    repeated_frames: dict[str, int]
    """Per camera: frames repeated because its queue overflowed (counted, never silent)."""
    image_stats: dict[str, FeatureStats]
    recording: dict[str, Any]
    """How the recording went (loop timing, overflow), kept in the episode's metadata."""

    def video(self, camera: str) -> Path:
        return self.directory / f"{camera}.mp4"

    def rows(self) -> pa.Table:
        return pq.read_table(self.directory / ROWS)

    def save(self) -> None:
        state = {
            "index": self.index,
            "task": self.task,
            "frames": self.frames,
            "started_at": self.started_at,
            "repeated_frames": self.repeated_frames,
            "image_stats": self.image_stats,
            "recording": self.recording,
        }
        write_json_atomic(self.directory / READY, state)
        fsync_dir(self.directory)

    @classmethod
    def load(cls, directory: Path) -> StagedEpisode | None:
        """The staged episode in `directory`, or None when its recording never finished."""
        ready = directory / READY
        if not ready.exists():
            return None
        state = json.loads(ready.read_text())
        return cls(
            directory=directory,
            index=state["index"],
            task=state["task"],
            frames=state["frames"],
            started_at=state["started_at"],
            repeated_frames=state["repeated_frames"],
            image_stats={c: {k: np.asarray(v) for k, v in s.items()} for c, s in state["image_stats"].items()},
            recording=state["recording"],
        )

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
