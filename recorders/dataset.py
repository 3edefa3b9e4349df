"""A LeRobot v3.0 dataset on disk, grown one committed episode at a time.

Episodes are recorded into `.staging/episode-NNNNNN/` and committed in order: the final videos are
encoded and appended, the data and metadata files rewritten beside their targets, and all of it renamed
into place through a journal (recorders/atomic.py). Opening a dataset finishes an interrupted commit,
commits episodes that were recorded but not yet committed, and discards an interrupted recording."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorders.atomic import Journal, remove_temporaries, temporary_for, write_json_atomic
from recorders.episode import StagedEpisode
from recorders.layout import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILES_SIZE_MB,
    DATA_PATH,
    VIDEO_FILE_MAX_S,
    VIDEO_FILES_SIZE_MB,
    VIDEO_PATH,
    DatasetSpec,
    FileIndex,
    Layout,
    image_key,
)
from recorders.stats import STAT_NAMES, FeatureStats, aggregate, vector_stats
from recorders.video import EncodeStopped, VideoSettings, append_video, encode_final

log = logging.getLogger(__name__)

EPISODES_FILE = FileIndex(0, 0)
"""All episode metadata lives in one file: it is small and rewritten whole on every commit."""


class DatasetError(RuntimeError):
    """The dataset cannot be written or resumed; the message names the path and what to do."""


class CommitStopped(Exception):
    """A commit was stopped on request before its renames began: the dataset is as it was before it,
    and the episode stays staged for the next resume."""


@dataclass(frozen=True)
class Recovery:
    """What opening an existing dataset found and repaired."""

    finished_commit: bool
    """A commit was interrupted mid-rename and has been completed."""
    removed_temporaries: int
    discarded: tuple[str, ...]
    """Staging directories of recordings that were interrupted or already committed: thrown away."""
    staged: tuple[StagedEpisode, ...]
    """Episodes recorded but not yet committed: commit them before recording more."""


class DatasetWriter:
    def __init__(self, root: Path, spec: DatasetSpec, videos: Mapping[str, VideoSettings], *, resume: bool) -> None:
        self.layout = Layout(root)
        self.spec = spec
        self.videos = dict(videos)
        self.journal = Journal(root)
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict[str, Any]] = []
        self._finished_commit = False
        self.written: set[Path] = set()
        """Files this writer created or replaced, for the run's manifest."""
        self.loop_running = threading.Event()
        """Set while a control loop runs beside the commits: their final encodes then yield it the CPU."""
        self._prepare(resume)
        self.recovery = self._recover()
        if not self.layout.info.exists():
            self._write_metadata_now()

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def total_frames(self) -> int:
        return sum(e["length"] for e in self.episodes)

    def _prepare(self, resume: bool) -> None:
        root = self.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise DatasetError(f"cannot write the dataset at {root}: {_reason(exc)}") from exc
        if self.layout.info.exists():
            if not resume:
                raise DatasetError(
                    f"{root} already holds a dataset: pass --resume to add episodes to it, or choose another --dataset path"
                )
            self._finished_commit = bool(self.journal.recover())  # before anything is read
            self._load()
        elif any(p.name != self.layout.staging.name for p in root.iterdir()):
            raise DatasetError(
                f"{root} is not empty and holds no dataset (no meta/info.json): choose an empty or new --dataset path"
            )

    def _load(self) -> None:
        info = _read_json(self.layout.info)
        problems = self.spec.mismatches(info)
        if problems:
            raise DatasetError(
                f"cannot resume {self.root}: it was recorded differently:\n  - "
                + "\n  - ".join(problems)
                + "\nrecord into a new --dataset path, or run with the settings it was recorded with"
            )
        if self.layout.tasks.exists():
            tasks = pd.read_parquet(self.layout.tasks)
            self.tasks = {str(task): int(index) for task, index in zip(tasks.index, tasks["task_index"], strict=True)}
        episodes_file = self.layout.episodes(EPISODES_FILE)
        if episodes_file.exists():
            self.episodes = pq.read_table(episodes_file).to_pylist()
        if len(self.episodes) != info.get("total_episodes"):
            raise DatasetError(
                f"{self.layout.info}: total_episodes is {info.get('total_episodes')} but the episodes metadata lists "
                f"{len(self.episodes)}"
            )

    def _recover(self) -> Recovery:
        finished = self._finished_commit
        removed = len(remove_temporaries(self.root))
        discarded, staged = [], []
        staging = self.layout.staging
        for directory in sorted(staging.iterdir()) if staging.exists() else ():
            episode = StagedEpisode.load(directory)
            if episode is None or episode.index < len(self.episodes):  # interrupted, or committed just before a crash
                discarded.append(directory.name)
                shutil.rmtree(directory, ignore_errors=True)
            else:
                staged.append(episode)
        return Recovery(finished, removed, tuple(discarded), tuple(sorted(staged, key=lambda e: e.index)))

    def staging_dir(self, index: int) -> Path:
        """A new directory for each take: a discarded take is deleted in the background while the next records."""
        return self.layout.staging / f"episode-{index:06d}-{uuid.uuid4().hex[:8]}"

    # ---- commit -------------------------------------------------------------------------------

    def commit(self, staged: StagedEpisode, stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Make a staged episode part of the dataset; returns its episodes-metadata row.

        `stop()` is asked during the final encodes and between the steps that write temporary files;
        once it is true the commit is abandoned (CommitStopped). Once the journal is written the renames
        always complete: they take milliseconds, and stopping there would leave a commit to finish."""
        index = len(self.episodes)
        if staged.index != index:
            raise DatasetError(f"episode {staged.index} cannot be committed before episode {index}")
        try:
            targets, row, tasks = self._stage_commit(staged, stop)
            if stop():
                raise CommitStopped(f"the commit of episode {index} was stopped before its renames")
            self.journal.commit(targets)
            self.written.update(targets)
        except (CommitStopped, EncodeStopped) as exc:
            remove_temporaries(self.root)
            raise CommitStopped(str(exc)) from exc
        except OSError as exc:
            remove_temporaries(self.root)
            raise DatasetError(
                f"could not commit episode {index} to {self.root}: {_reason(exc)}; it stays staged and is committed when you "
                "resume"
            ) from exc
        self.episodes.append(row)
        self.tasks = tasks
        staged.remove()
        return row

    def _stage_commit(
        self, staged: StagedEpisode, stop: Callable[[], bool] = lambda: False
    ) -> tuple[list[Path], dict[str, Any], dict[str, int]]:
        """Write every file the commit replaces under its temporary name; return them and the new row."""
        index = len(self.episodes)
        last = self.episodes[-1] if self.episodes else None
        task_index = self.tasks.get(staged.task, len(self.tasks))
        tasks = {**self.tasks, staged.task: task_index}
        row: dict[str, Any] = {"episode_index": index, "tasks": [staged.task], "length": staged.frames}
        targets: list[Path] = []
        for camera in self.spec.cameras:
            targets.append(self._stage_video(staged, camera, last, row, stop))
        if stop():
            raise CommitStopped(f"the commit of episode {index} was stopped after its videos")
        rows = self._rows(staged, task_index, first_index=self.total_frames)
        targets.append(self._stage_data(rows, last, row))
        row["dataset_from_index"] = self.total_frames
        row["dataset_to_index"] = self.total_frames + staged.frames
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = EPISODES_FILE.chunk, EPISODES_FILE.file
        episode_stats = self._episode_stats(rows, staged)
        for feature, feature_stats in episode_stats.items():
            for name in STAT_NAMES:
                row[f"stats/{feature}/{name}"] = feature_stats[name].tolist()
        row.update({f"recording/{key}": value for key, value in _recording(staged).items()})
        episodes = [*self.episodes, row]
        tasks_frame = pd.DataFrame({"task_index": list(tasks.values())}, index=pd.Index(list(tasks), name="task"))
        targets.append(self._stage_parquet(self.layout.tasks, pa.Table.from_pandas(tasks_frame)))
        targets.append(self._stage_parquet(self.layout.episodes(EPISODES_FILE), pa.Table.from_pylist(episodes)))
        stats = aggregate([_stats_of(e) for e in episodes])
        targets.append(self._stage_json(self.layout.stats, {k: {n: v.tolist() for n, v in s.items()} for k, s in stats.items()}))
        targets.append(self._stage_json(self.layout.info, self._info(episodes, tasks)))  # last: LeRobot sizes the dataset by it
        return targets, row, tasks

    def _stage_video(
        self, staged: StagedEpisode, camera: str, last: dict[str, Any] | None, row: dict[str, Any], stop: Callable[[], bool]
    ) -> Path:
        key, fps = image_key(camera), self.spec.fps
        final = staged.directory / f"{camera}.final.mp4"
        if not final.exists():  # kept across a crash or a stop: a resumed commit does not encode again
            encode_final(
                staged.video(camera), temporary_for(final), self.videos[camera], loop_running=self.loop_running, stop=stop
            )
            os.replace(temporary_for(final), final)
        file, keep = FileIndex(), 0
        if last is not None:
            file = FileIndex(last[f"videos/{key}/chunk_index"], last[f"videos/{key}/file_index"])
            keep = round(last[f"videos/{key}/to_timestamp"] * fps)
            too_big = self.layout.video(key, file).stat().st_size + final.stat().st_size > VIDEO_FILES_SIZE_MB * 1e6
            if too_big or (keep + staged.frames) / fps > VIDEO_FILE_MAX_S:
                file, keep = file.next(), 0
        target = self.layout.video(key, file)
        target.parent.mkdir(parents=True, exist_ok=True)
        start = append_video(target if keep else None, keep, final, temporary_for(target), fps)
        row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"] = file.chunk, file.file
        row[f"videos/{key}/from_timestamp"] = start / fps
        row[f"videos/{key}/to_timestamp"] = (start + staged.frames) / fps
        return target

    def _stage_data(self, rows: pa.Table, last: dict[str, Any] | None, row: dict[str, Any]) -> Path:
        file = FileIndex() if last is None else FileIndex(last["data/chunk_index"], last["data/file_index"])
        target = self.layout.data(file)
        if last is not None and target.stat().st_size > DATA_FILES_SIZE_MB * 1e6:
            file = file.next()
            target = self.layout.data(file)
        if target.exists():
            existing = pq.read_table(target)
            committed = pc.less(existing["episode_index"], row["episode_index"])
            rows = pa.concat_tables([existing.filter(committed), rows])
        row["data/chunk_index"], row["data/file_index"] = file.chunk, file.file
        return self._stage_parquet(target, rows)

    def _stage_parquet(self, target: Path, table: pa.Table) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, temporary_for(target))
        return target

    def _stage_json(self, target: Path, value: object) -> Path:
        write_json_atomic(temporary_for(target), value)
        return target

    def _rows(self, staged: StagedEpisode, task_index: int, first_index: int) -> pa.Table:
        """The staged rows plus LeRobot's bookkeeping columns, in the order of the features."""
        table = staged.rows()
        n, fps = staged.frames, self.spec.fps
        frame_index = np.arange(n, dtype=np.int64)
        extra = {
            "timestamp": pa.array((frame_index / fps).astype(np.float32)),
            "frame_index": pa.array(frame_index),
            "episode_index": pa.array(np.full(n, staged.index, dtype=np.int64)),
            "index": pa.array(first_index + frame_index),
            "task_index": pa.array(np.full(n, task_index, dtype=np.int64)),
        }
        columns = [k for k, f in self.spec.features.items() if f["dtype"] != "video"]
        return pa.table({k: extra[k] if k in extra else table[k] for k in columns})

    def _episode_stats(self, rows: pa.Table, staged: StagedEpisode) -> dict[str, FeatureStats]:
        stats: dict[str, FeatureStats] = {}
        for key, feature in self.spec.features.items():
            if feature["dtype"] == "video":
                stats[key] = staged.image_stats[key.removeprefix("observation.images.")]
            else:
                column = rows[key]
                values = (
                    np.stack(column.to_numpy(zero_copy_only=False))
                    if pa.types.is_fixed_size_list(column.type)
                    else column.to_numpy()
                )
                stats[key] = vector_stats(values)
        return stats

    # ---- metadata ---------------------------------------------------------------------------

    def _info(self, episodes: list[dict[str, Any]], tasks: Mapping[str, int]) -> dict[str, Any]:
        total = len(episodes)
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.spec.robot_type,
            "total_episodes": total,
            "total_frames": sum(e["length"] for e in episodes),
            "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILES_SIZE_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_MB,
            "fps": self.spec.fps,
            "splits": {"train": f"0:{total}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.spec.cameras else None,
            "features": self.spec.features,
        }

    def _write_metadata_now(self) -> None:
        """A new dataset gets its info.json at once, so a resume can check it even before the first commit."""
        write_json_atomic(self.layout.info, self._info([], {}))
        self.written.add(self.layout.info)


def _stats_of(row: Mapping[str, Any]) -> dict[str, FeatureStats]:
    out: dict[str, FeatureStats] = {}
    for column, value in row.items():
        if column.startswith("stats/"):
            feature, _, name = column.removeprefix("stats/").rpartition("/")
            out.setdefault(feature, {})[name] = np.asarray(value, dtype=np.float64)
    return out


def _recording(staged: StagedEpisode) -> dict[str, Any]:
    out: dict[str, Any] = {"started_at": staged.started_at}
    out.update(staged.recording)
    for camera, repeated in staged.repeated_frames.items():
        out[f"{camera}/repeated_frames"] = repeated
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read it ({exc})") from exc


def _reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full{where}; free some space"
    if exc.errno == errno.ENOTDIR:
        return f"part of the path is a file, not a directory{where}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}; choose a path you can write to"
    return str(exc)
