"""Reading a LeRobot v3.0 dataset the way LeRobot does: info.json, the episodes metadata, data rows by
episode, and an episode's video frames at `from_timestamp + frame_index / fps`."""

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
import pyarrow.parquet as pq

from recorders.layout import ACTION, STATE, FileIndex, Layout
from recorders.video import decode_frames


class DatasetReadError(ValueError):
    """The dataset is missing a file or a file cannot be read; the message names it."""


@dataclass(frozen=True)
class EpisodeData:
    index: int
    task: str
    rows: pa.Table

    @property
    def actions(self) -> np.ndarray:
        return _matrix(self.rows[ACTION])

    @property
    def states(self) -> np.ndarray:
        return _matrix(self.rows[STATE])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    return np.stack(column.to_numpy(zero_copy_only=False)).astype(np.float32) if len(column) else np.zeros((0, 0), np.float32)


class DatasetReader:
    def __init__(self, root: Path | str) -> None:
        self.layout = Layout(Path(root))
        if not self.layout.info.exists():
            raise DatasetReadError(f"{root} holds no dataset: {self.layout.info} is missing")
        try:
            self.info: dict[str, Any] = json.loads(self.layout.info.read_text())
        except ValueError as exc:
            raise DatasetReadError(f"{self.layout.info}: not valid JSON ({exc})") from exc

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.info["features"].items() if f["dtype"] == "video"]

    @cached_property
    def episodes(self) -> list[dict[str, Any]]:
        files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        return [row for path in files for row in read_parquet(path).to_pylist()]

    @cached_property
    def tasks(self) -> dict[int, str]:
        frame = pd.read_parquet(self.layout.tasks)
        return {int(i): str(task) for task, i in zip(frame.index, frame["task_index"], strict=True)}

    def data_files(self) -> list[Path]:
        return sorted((self.root / "data").glob("*/*.parquet"))

    def episode(self, index: int) -> EpisodeData:
        if not 0 <= index < len(self.episodes):
            raise DatasetReadError(f"{self.root} has episodes 0..{len(self.episodes) - 1}, not {index}")
        meta = self.episodes[index]
        path = self.layout.data(FileIndex(meta["data/chunk_index"], meta["data/file_index"]))
        table = read_parquet(path)
        rows = table.filter(pa.compute.equal(table["episode_index"], index))
        return EpisodeData(index, meta["tasks"][0], rows)

    def video_path(self, index: int, key: str) -> Path:
        meta = self.episodes[index]
        return self.layout.video(key, FileIndex(meta[f"videos/{key}/chunk_index"], meta[f"videos/{key}/file_index"]))

    def frames(self, index: int, key: str) -> Iterator[tuple[float, np.ndarray]]:
        """(timestamp within the episode, RGB image) for every frame of an episode's video."""
        meta = self.episodes[index]
        start = round(meta[f"videos/{key}/from_timestamp"] * self.fps)
        for pts_s, image in decode_frames(self.video_path(index, key), start, meta["length"]):
            yield pts_s - meta[f"videos/{key}/from_timestamp"], image


def read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetReadError(f"{path}: cannot read it ({exc})") from exc
