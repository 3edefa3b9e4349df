"""Reading a LeRobot v3.0 dataset the way LeRobot does: info.json, the episodes metadata, data rows by
episode, and an episode's video frames at `from_timestamp + frame_index / fps`. Every metadata file is
validated as it is read: a file of the wrong shape is an error naming the file, the key and the reason,
never a crash deep inside a command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorders.layout import ACTION, STATE, DatasetFileError, DatasetInfo, FileIndex, Layout, check_episode_row, parse_info
from recorders.video import VideoError, count_frames, decode_frames


@dataclass(frozen=True)
class EpisodeData:
    index: int
    task: str
    rows: pa.Table
    source: Path
    """The data file the rows come from, for errors."""
    widths: dict[str, int]
    """Values per row of the action and state vectors, as info.json says."""

    @property
    def actions(self) -> np.ndarray:
        return self._matrix(ACTION)

    @property
    def states(self) -> np.ndarray:
        return self._matrix(STATE)

    def _matrix(self, key: str) -> np.ndarray:
        """[frames, width] float32; a missing column, a null row or a row of another width is an error."""
        if key not in self.rows.column_names or key not in self.widths:
            raise DatasetFileError(f"{self.source}: no column {key!r}")
        column = self.rows[key]
        if not len(column):
            return np.zeros((0, self.widths[key]), np.float32)
        try:
            matrix = np.stack(column.to_numpy(zero_copy_only=False)).astype(np.float32)
        except (TypeError, ValueError, pa.ArrowException) as exc:
            raise DatasetFileError(f"{self.source}: column {key!r} of episode {self.index} is not numbers ({exc})") from None
        if matrix.shape != (len(column), self.widths[key]):
            raise DatasetFileError(
                f"{self.source}: column {key!r} of episode {self.index} holds {matrix.shape[1:]} values per row, "
                f"info.json says {self.widths[key]}"
            )
        return matrix


class DatasetReader:
    def __init__(self, root: Path | str) -> None:
        self.layout = Layout(Path(root))
        if not self.layout.root.is_dir():
            raise DatasetFileError(f"{root}: no such dataset directory")
        if not self.layout.info.is_file():
            what = "is not a file" if self.layout.info.exists() else "is missing"
            raise DatasetFileError(f"{root} holds no dataset: {self.layout.info} {what}")
        self.info: dict[str, Any] = read_json(self.layout.info)
        """info.json as written, validated: every key `meta` holds has the type it says."""
        self.meta: DatasetInfo = parse_info(self.info, self.layout.info)

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def fps(self) -> int:
        return self.meta.fps

    @property
    def video_keys(self) -> list[str]:
        return self.meta.video_keys

    @property
    def action_names(self) -> list[str]:
        """The names of the action vector's values (joint features, e.g. `shoulder_pan.pos`)."""
        names = self.meta.features[ACTION].names
        if isinstance(names, dict) and len(names) == 1:  # LeRobot v2 kept them as {"motors": [...]}
            (names,) = names.values()
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetFileError(f"{self.layout.info}: key 'features.{ACTION}.names': a list of joint names is needed")
        return names

    @cached_property
    def episodes(self) -> list[dict[str, Any]]:
        rows = []
        for path in sorted((self.root / "meta" / "episodes").glob("*/*.parquet")):
            for number, row in enumerate(read_parquet(path).to_pylist()):
                check_episode_row(row, self.video_keys, f"{path} row {number}")
                rows.append(row)
        return rows

    @cached_property
    def tasks(self) -> dict[int, str]:
        """Task index -> task, from meta/tasks.parquet (tasks as its pandas index, as LeRobot writes it)."""
        path = self.layout.tasks
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DatasetFileError(f"{path}: cannot read it ({_arrow_problem(exc, path)})") from None
        if "task_index" not in frame.columns or not pd.api.types.is_integer_dtype(frame["task_index"]):
            raise DatasetFileError(f"{path}: key 'task_index': a column of integers is needed")
        if not all(isinstance(task, str) for task in frame.index):
            raise DatasetFileError(f"{path}: key 'task': the tasks (the table's index) must be text")
        return {int(i): task for task, i in zip(frame.index, frame["task_index"], strict=True)}

    def check_appendable(self) -> None:
        """Read and validate what a resumed recording builds on: the tasks, the episodes metadata and the
        data and video files its next episode is appended to. Raise DatasetFileError naming the first file
        that cannot be used, before any arm moves."""
        if self.layout.tasks.exists():
            _ = self.tasks
        if not self.episodes:
            return
        last = self.episodes[-1]
        data = self.layout.data(FileIndex(last["data/chunk_index"], last["data/file_index"]))
        if data.exists():
            try:
                pq.read_schema(data)
            except (OSError, pa.ArrowException) as exc:
                raise DatasetFileError(f"{data}: cannot read it ({_arrow_problem(exc, data)})") from None
        for key in self.video_keys:
            video = self.video_path(last["episode_index"], key)
            if video.exists():
                try:
                    count_frames(video)
                except VideoError as exc:
                    raise DatasetFileError(_one_line(exc)) from None

    def data_files(self) -> list[Path]:
        return sorted((self.root / "data").glob("*/*.parquet"))

    def episode(self, index: int) -> EpisodeData:
        if not 0 <= index < len(self.episodes):
            raise DatasetFileError(f"{self.root} has episodes 0..{len(self.episodes) - 1}, not {index}")
        meta = self.episodes[index]
        path = self.layout.data(FileIndex(meta["data/chunk_index"], meta["data/file_index"]))
        table = read_parquet(path)
        if "episode_index" not in table.column_names:
            raise DatasetFileError(f"{path}: no column 'episode_index'")
        try:
            rows = table.filter(pc.equal(table["episode_index"], index))
        except pa.ArrowException as exc:
            raise DatasetFileError(f"{path}: column 'episode_index' is not integers ({_one_line(exc)})") from None
        widths = {key: self.meta.features[key].shape[0] for key in (ACTION, STATE) if key in self.meta.features}
        return EpisodeData(index, meta["tasks"][0], rows, path, widths)

    def video_path(self, index: int, key: str) -> Path:
        meta = self.episodes[index]
        return self.layout.video(key, FileIndex(meta[f"videos/{key}/chunk_index"], meta[f"videos/{key}/file_index"]))

    def frames(self, index: int, key: str) -> Iterator[tuple[float, np.ndarray]]:
        """(timestamp within the episode, RGB image) for every frame of an episode's video; a video that cannot
        be decoded is a dataset file that cannot be read."""
        meta = self.episodes[index]
        start = round(meta[f"videos/{key}/from_timestamp"] * self.fps)
        try:
            for pts_s, image in decode_frames(self.video_path(index, key), start, meta["length"]):
                yield pts_s - meta[f"videos/{key}/from_timestamp"], image
        except VideoError as exc:
            raise DatasetFileError(_one_line(exc)) from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise DatasetFileError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:  # invalid JSON or not UTF-8
        raise DatasetFileError(f"{path}: not valid JSON ({_one_line(exc)})") from None


def read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetFileError(f"{path}: cannot read it ({_arrow_problem(exc, path)})") from None


def _arrow_problem(exc: Exception, path: Path) -> str:
    """Arrow's reason in a few words, without the path the message already names."""
    text = _one_line(exc)
    if "magic bytes not found" in text:
        return "not a Parquet file, or cut short: its footer is missing"
    return text.replace(f"'{path}'", "it").replace(str(path), "it")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
