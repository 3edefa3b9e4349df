"""`dataset check`: everything a loader relies on, verified file by file, with one line per problem."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorders.episode import StagedEpisode
from recorders.layout import CODEBASE_VERSION, VIDEO_DTYPES, DatasetFileError, Feature, FileIndex, Layout
from recorders.manifest import verify
from recorders.reader import DatasetReader, read_json, read_parquet
from recorders.stats import STAT_NAMES
from recorders.video import VideoError, decode_frames

TOLERANCE_S = 1e-4
"""LeRobot's tolerance between a requested timestamp and the decoded frame's."""
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""LeRobot's own columns, in every data file; the row checks read them."""
SHOWN_ROWS = 5
"""Rows named in a problem before the rest are only counted."""


@dataclass
class CheckReport:
    root: Path
    episodes: int = 0
    frames: int = 0
    videos_decoded: int = 0
    frames_decoded: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(root: Path | str, *, decode: bool = True, progress: Callable[[str], None] = lambda _: None) -> CheckReport:
    root = Path(root)
    report = CheckReport(root)
    try:
        reader = DatasetReader(root)
        _check_info(reader, report)
        tasks = _read_tasks(reader, report)
        _check_episodes(reader, tasks, report)
        _check_data(reader, tasks, report)
        _check_stats(reader, report)
        _check_videos(reader, report, decode, progress)
    except DatasetFileError as exc:
        report.problems.extend(exc.problems)
        return report
    if (root / "meta" / "commit.json").exists():
        report.problems.append("meta/commit.json: a commit was interrupted; `record --resume` finishes it")
    if not reader.episodes and reader.meta.total_episodes == 0:
        report.notes.append("no episodes yet: the dataset was created, but no episode was committed to it")
    _note_staging(reader.layout, len(reader.episodes), report)
    progress("checking sha256 against the run manifests")
    report.problems.extend(verify(reader.layout))
    return report


def _check_info(reader: DatasetReader, report: CheckReport) -> None:
    """The reader validated the shape of info.json; what remains is what LeRobot expects in it."""
    meta = reader.meta
    if meta.codebase_version != CODEBASE_VERSION:
        report.problems.append(f"meta/info.json: codebase_version {meta.codebase_version!r}, expected {CODEBASE_VERSION!r}")
    for key in BOOKKEEPING:
        if key not in meta.features:
            report.problems.append(f"meta/info.json: features lack LeRobot's {key!r}")


def _read_tasks(reader: DatasetReader, report: CheckReport) -> dict[int, str]:
    """Task index -> task. A dataset gets its tasks.parquet with its first committed episode."""
    if not reader.layout.tasks.exists():
        if reader.episodes:
            report.problems.append(
                f"meta/tasks.parquet: missing, while the episodes metadata lists {len(reader.episodes)} episode(s)"
            )
        return {}
    try:
        return reader.tasks
    except DatasetFileError as exc:
        report.problems.extend(exc.problems)
        return {}


def _check_episodes(reader: DatasetReader, tasks_by_index: dict[int, str], report: CheckReport) -> None:
    episodes, info = reader.episodes, reader.meta
    report.episodes = len(episodes)
    report.frames = sum(e["length"] for e in episodes)
    if [e["episode_index"] for e in episodes] != list(range(len(episodes))):
        report.problems.append("meta/episodes: episode_index is not 0..N-1 in order")
    if len(episodes) != info.total_episodes:
        report.problems.append(f"meta/info.json: total_episodes {info.total_episodes}, episodes metadata lists {len(episodes)}")
    if report.frames != info.total_frames:
        report.problems.append(f"meta/info.json: total_frames {info.total_frames}, episode lengths sum to {report.frames}")
    start = 0
    for e in episodes:
        if (e["dataset_from_index"], e["dataset_to_index"]) != (start, start + e["length"]):
            report.problems.append(
                f"episode {e['episode_index']}: dataset_from/to_index {e['dataset_from_index']}..{e['dataset_to_index']}, "
                f"expected {start}..{start + e['length']}"
            )
        start += e["length"]
    tasks = set(tasks_by_index.values())
    if len(tasks) != info.total_tasks:
        report.problems.append(f"meta/info.json: total_tasks {info.total_tasks}, tasks.parquet lists {len(tasks)}")
    for e in episodes:
        if not set(e["tasks"]) <= tasks:
            report.problems.append(f"episode {e['episode_index']}: task {e['tasks']} is not in meta/tasks.parquet")


@dataclass(frozen=True)
class _Numbers:
    """A numeric column of a data file, whichever Arrow type holds it."""

    row: np.ndarray
    """For each value, the file row it belongs to."""
    values: np.ndarray
    rows: int

    @property
    def lengths(self) -> np.ndarray:
        return np.bincount(self.row, minlength=self.rows)

    def nonfinite_rows(self) -> np.ndarray:
        bad = np.zeros(self.rows, bool)
        bad[self.row[~np.isfinite(self.values)]] = True
        return bad


def _numbers(column: pa.ChunkedArray) -> _Numbers | None:
    """LeRobot writes a vector as a fixed_size_list (its recorder, and ours), a list or large_list (a merge by
    `lerobot-edit-dataset`, which goes through pandas), of float32 or float64; a one-value feature as a scalar
    or a list of one. All of these are numbers per row; None when the column holds something else."""
    array = column.combine_chunks()
    row = np.arange(len(array))
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        row = row[pc.list_parent_indices(array).to_numpy()]  # a null list has no values: its row has too few
        array = pc.list_flatten(array)
    if not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)):
        return None
    return _Numbers(row, array.to_numpy(zero_copy_only=False), len(column))


def _is_numeric(feature: Feature) -> bool:
    return feature.dtype.startswith(("float", "int", "uint", "bool"))


def _check_data(reader: DatasetReader, tasks: dict[int, str], report: CheckReport) -> None:
    features = {k: f for k, f in reader.meta.features.items() if f.dtype not in VIDEO_DTYPES}
    fps, episodes = reader.fps, reader.episodes
    seen: collections.Counter[int] = collections.Counter()
    indexes = []
    for path in reader.data_files():
        table = read_parquet(path)
        name = path.relative_to(reader.root)
        missing = sorted(set(features) - set(table.column_names))
        if missing:
            report.problems.append(f"{name}: missing columns {missing}")
            continue
        columns = {}
        for key, feature in features.items():
            if not _is_numeric(feature):
                continue
            numbers = _numbers(table[key])
            if numbers is None:
                report.problems.append(f"{name}: column {key!r} holds {table[key].type}, the feature says {feature.dtype}")
                continue
            width = int(np.prod(feature.shape))
            wrong = np.flatnonzero(numbers.lengths != width)
            if wrong.size:
                counts = sorted(set(numbers.lengths[wrong].tolist()))
                report.problems.append(
                    f"{name}: column {key!r} has {' or '.join(map(str, counts))} values in {_rows(wrong)}, "
                    f"the feature says {width}"
                )
                continue
            columns[key] = numbers
        if not all(key in columns for key in BOOKKEEPING):
            continue  # each unusable column is reported above
        indexes.append(columns["index"].values)
        episode_index = columns["episode_index"].values
        for ep in np.unique(episode_index):
            rows = episode_index == ep
            seen[int(ep)] += int(rows.sum())
            _check_episode_rows(int(ep), rows, columns, fps, tasks, path, reader, report)
    index = np.sort(np.concatenate(indexes)) if indexes else np.zeros(0, np.int64)
    if not np.array_equal(index, np.arange(report.frames)):
        report.problems.append(f"data: index is not contiguous 0..{report.frames - 1} ({len(index)} rows)")
    for e in episodes:
        if seen[e["episode_index"]] != e["length"]:
            report.problems.append(
                f"episode {e['episode_index']}: {seen[e['episode_index']]} data rows, metadata says {e['length']}"
            )


def _check_episode_rows(
    ep: int,
    rows: np.ndarray,
    columns: dict[str, _Numbers],
    fps: int,
    tasks: dict[int, str],
    path: Path,
    reader: DatasetReader,
    report: CheckReport,
) -> None:
    """`rows`: which rows of the file `path` belong to episode `ep`."""
    episodes = reader.episodes
    if ep >= len(episodes):
        report.problems.append(
            f"{path.relative_to(reader.root)}: rows of episode {ep}, which the episodes metadata does not list"
        )
        return
    meta = episodes[ep]
    if reader.layout.data(FileIndex(meta["data/chunk_index"], meta["data/file_index"])) != path:
        report.problems.append(f"episode {ep}: rows in {path.relative_to(reader.root)}, metadata points elsewhere")
    frame_index = columns["frame_index"].values[rows]
    if not np.array_equal(frame_index, np.arange(len(frame_index))):
        report.problems.append(f"episode {ep}: frame_index is not 0..{len(frame_index) - 1} in order")
    timestamps = columns["timestamp"].values[rows]
    if len(timestamps) and np.abs(timestamps - np.arange(len(timestamps)) / fps).max() > TOLERANCE_S:
        report.problems.append(f"episode {ep}: timestamp is not frame_index / fps")
    if not np.isin(columns["task_index"].values[rows], list(tasks)).all():
        report.problems.append(f"episode {ep}: task_index not in meta/tasks.parquet")
    for key, numbers in columns.items():
        bad = numbers.nonfinite_rows()[rows]
        if bad.any():
            report.problems.append(f"episode {ep}: {key} has NaN or infinite values at frame_index {_listed(frame_index[bad])}")


def _rows(rows: np.ndarray) -> str:
    return f"{len(rows)} row(s) ({_listed(rows)})"


def _listed(numbers: np.ndarray) -> str:
    shown = ", ".join(str(int(n)) for n in numbers[:SHOWN_ROWS])
    return shown + (f" and {len(numbers) - SHOWN_ROWS} more" if len(numbers) > SHOWN_ROWS else "")


def _check_stats(reader: DatasetReader, report: CheckReport) -> None:
    path = reader.layout.stats
    if not path.exists():
        if reader.episodes:  # written with the first committed episode
            report.problems.append("meta/stats.json: missing")
        return
    try:
        stats = read_json(path)
    except DatasetFileError as exc:
        report.problems.extend(exc.problems)
        return
    if not isinstance(stats, dict):
        report.problems.append(f"meta/stats.json: expected a mapping of feature -> statistics, got {type(stats).__name__}")
        return
    for key, feature in reader.meta.features.items():
        if key not in stats:
            report.problems.append(f"meta/stats.json: no statistics for {key!r}")
            continue
        if not isinstance(stats[key], dict):
            report.problems.append(f"meta/stats.json: key {key!r}: expected a mapping of statistic -> values")
            continue
        absent = [n for n in STAT_NAMES if n not in stats[key]]
        if absent:
            report.problems.append(f"meta/stats.json: {key!r} lacks {absent}")
        expected = (3, 1, 1) if feature.dtype in VIDEO_DTYPES else tuple(feature.shape)
        for name in STAT_NAMES:
            if name not in stats[key]:
                continue
            shape = _numeric_shape(stats[key][name])
            if shape is None:
                report.problems.append(f"meta/stats.json: key '{key}.{name}': not an array of numbers")
            elif name == "mean" and shape != expected:
                report.problems.append(f"meta/stats.json: {key!r} mean has shape {shape}, expected {expected}")


def _numeric_shape(value: object) -> tuple[int, ...] | None:
    """The shape of a JSON number or (nested, rectangular) list of numbers; None for anything else."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged lists
        return None
    return array.shape if array.dtype.kind in "biuf" else None


def _check_videos(reader: DatasetReader, report: CheckReport, decode: bool, progress: Callable[[str], None]) -> None:
    fps = reader.fps
    for key in reader.video_keys:
        height, width, _ = reader.meta.features[key].shape
        files: dict[Path, list[dict]] = collections.defaultdict(list)
        for e in reader.episodes:
            files[reader.video_path(e["episode_index"], key)].append(e)
        for path, episodes in files.items():
            name = path.relative_to(reader.root)
            if not path.exists():
                report.problems.append(f"{name}: missing (episodes {[e['episode_index'] for e in episodes]})")
                continue
            expected = 0
            for e in episodes:
                start = round(e[f"videos/{key}/from_timestamp"] * fps)
                if start != expected or abs(e[f"videos/{key}/to_timestamp"] - (start + e["length"]) / fps) > TOLERANCE_S:
                    report.problems.append(
                        f"{name}: episode {e['episode_index']} spans "
                        f"{e[f'videos/{key}/from_timestamp']}..{e[f'videos/{key}/to_timestamp']} s, "
                        f"expected to start at frame {expected} and last {e['length']} frames"
                    )
                expected = start + e["length"]
            if decode:
                progress(f"decoding {name}")
                _decode(path, name, expected, fps, (height, width), report)


def _decode(path: Path, name: Path, expected: int, fps: int, size: tuple[int, int], report: CheckReport) -> None:
    frames = 0
    try:
        for i, (pts_s, image) in enumerate(decode_frames(path)):
            if abs(pts_s - i / fps) > TOLERANCE_S:
                report.problems.append(f"{name}: frame {i} is at {pts_s:.6f} s, expected {i / fps:.6f} s")
                return
            if image.shape[:2] != size:
                report.problems.append(
                    f"{name}: frames are {image.shape[1]}x{image.shape[0]}, the feature says {size[1]}x{size[0]}"
                )
                return
            frames += 1
    except VideoError as exc:
        report.problems.append(f"{name}: cannot be decoded after {frames} frames ({exc})")
        return
    report.videos_decoded += 1
    report.frames_decoded += frames
    if frames != expected:
        report.problems.append(f"{name}: {frames} frames, the episodes need {expected}")


def _note_staging(layout: Layout, committed: int, report: CheckReport) -> None:
    """What `record --resume` will do with the takes left in .staging (recorders/dataset.py, `_recover`)."""
    waiting: list[int] = []
    leftover = 0
    for directory in sorted(layout.staging.iterdir()) if layout.staging.exists() else ():
        try:
            staged = StagedEpisode.load(directory)
        except (OSError, ValueError, KeyError) as exc:
            report.problems.append(f".staging/{directory.name}: cannot read it ({exc})")
            continue
        if staged is None or staged.index < committed:  # its recording was cut short, or it was committed just before a crash
            leftover += 1
        else:
            waiting.append(staged.index)
    if waiting:
        episodes = ", ".join(map(str, sorted(waiting)))
        report.notes.append(
            f"episode(s) {episodes} recorded but not committed, in .staging: `record --resume` commits them before recording more"
        )
    if leftover:
        report.notes.append(f"{leftover} unfinished or already committed take(s) in .staging: `record --resume` deletes them")
