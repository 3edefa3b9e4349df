"""`dataset check`: everything a loader relies on, verified file by file, with one line per problem."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from recorders.layout import CODEBASE_VERSION, FileIndex
from recorders.manifest import verify
from recorders.reader import DatasetReader, DatasetReadError, read_parquet
from recorders.stats import STAT_NAMES
from recorders.video import VideoError, decode_frames

TOLERANCE_S = 1e-4
"""LeRobot's tolerance between a requested timestamp and the decoded frame's."""


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
        _check_episodes(reader, report)
        _check_data(reader, report)
        _check_stats(reader, report)
        _check_videos(reader, report, decode, progress)
    except (DatasetReadError, KeyError) as exc:
        report.problems.append(f"{exc}" if not isinstance(exc, KeyError) else f"missing key {exc}")
        return report
    if (root / "meta" / "commit.json").exists():
        report.problems.append("meta/commit.json: a commit was interrupted; `record --resume` finishes it")
    staged = sorted((root / ".staging").glob("episode-*")) if (root / ".staging").exists() else []
    if staged:
        report.notes.append(f"{len(staged)} episode(s) recorded but not committed in .staging: `record --resume` commits them")
    progress("checking sha256 against the run manifests")
    report.problems.extend(verify(reader.layout))
    return report


def _check_info(reader: DatasetReader, report: CheckReport) -> None:
    info = reader.info
    if info.get("codebase_version") != CODEBASE_VERSION:
        report.problems.append(f"meta/info.json: codebase_version {info.get('codebase_version')!r}, expected {CODEBASE_VERSION!r}")
    for key in ("robot_type", "fps", "total_episodes", "total_frames", "total_tasks", "data_path", "features", "splits"):
        if key not in info:
            report.problems.append(f"meta/info.json: missing {key!r}")


def _check_episodes(reader: DatasetReader, report: CheckReport) -> None:
    episodes, info = reader.episodes, reader.info
    report.episodes = len(episodes)
    report.frames = sum(e["length"] for e in episodes)
    if [e["episode_index"] for e in episodes] != list(range(len(episodes))):
        report.problems.append("meta/episodes: episode_index is not 0..N-1 in order")
    if len(episodes) != info["total_episodes"]:
        report.problems.append(f"meta/info.json: total_episodes {info['total_episodes']}, episodes metadata lists {len(episodes)}")
    if report.frames != info["total_frames"]:
        report.problems.append(f"meta/info.json: total_frames {info['total_frames']}, episode lengths sum to {report.frames}")
    start = 0
    for e in episodes:
        if (e["dataset_from_index"], e["dataset_to_index"]) != (start, start + e["length"]):
            report.problems.append(f"episode {e['episode_index']}: dataset_from/to_index {e['dataset_from_index']}..{e['dataset_to_index']}, expected {start}..{start + e['length']}")
        start += e["length"]
    tasks = set(reader.tasks.values())
    if len(tasks) != info["total_tasks"]:
        report.problems.append(f"meta/info.json: total_tasks {info['total_tasks']}, tasks.parquet lists {len(tasks)}")
    for e in episodes:
        if not set(e["tasks"]) <= tasks:
            report.problems.append(f"episode {e['episode_index']}: task {e['tasks']} is not in meta/tasks.parquet")


def _check_data(reader: DatasetReader, report: CheckReport) -> None:
    features = {k: f for k, f in reader.info["features"].items() if f["dtype"] != "video"}
    fps, episodes = reader.fps, reader.episodes
    seen = collections.Counter()
    indexes = []
    for path in reader.data_files():
        table = read_parquet(path)
        name = path.relative_to(reader.root)
        missing = sorted(set(features) - set(table.column_names))
        if missing:
            report.problems.append(f"{name}: missing columns {missing}")
            continue
        for key, feature in features.items():
            width = table[key].type.list_size if pa.types.is_fixed_size_list(table[key].type) else 1
            if width != feature["shape"][0]:
                report.problems.append(f"{name}: column {key!r} has {width} values per row, the feature says {feature['shape'][0]}")
        indexes.append(table["index"].to_numpy())
        for ep in np.unique(table["episode_index"].to_numpy()):
            rows = table.filter(pa.compute.equal(table["episode_index"], int(ep)))
            seen[int(ep)] += len(rows)
            _check_episode_rows(int(ep), rows, fps, episodes, path, reader, report)
    index = np.sort(np.concatenate(indexes)) if indexes else np.zeros(0, np.int64)
    if not np.array_equal(index, np.arange(report.frames)):
        report.problems.append(f"data: index is not contiguous 0..{report.frames - 1} ({len(index)} rows)")
    for e in episodes:
        if seen[e["episode_index"]] != e["length"]:
            report.problems.append(f"episode {e['episode_index']}: {seen[e['episode_index']]} data rows, metadata says {e['length']}")


def _check_episode_rows(ep: int, rows: pa.Table, fps: int, episodes: list[dict], path: Path, reader: DatasetReader, report: CheckReport) -> None:
    if ep >= len(episodes):
        report.problems.append(f"{path.relative_to(reader.root)}: rows of episode {ep}, which the episodes metadata does not list")
        return
    meta = episodes[ep]
    if reader.layout.data(FileIndex(meta["data/chunk_index"], meta["data/file_index"])) != path:
        report.problems.append(f"episode {ep}: rows in {path.relative_to(reader.root)}, metadata points elsewhere")
    frame_index = rows["frame_index"].to_numpy()
    if not np.array_equal(frame_index, np.arange(len(rows))):
        report.problems.append(f"episode {ep}: frame_index is not 0..{len(rows) - 1} in order")
    timestamps = rows["timestamp"].to_numpy()
    if len(timestamps) and np.abs(timestamps - np.arange(len(rows)) / fps).max() > TOLERANCE_S:
        report.problems.append(f"episode {ep}: timestamp is not frame_index / fps")
    if not np.isin(rows["task_index"].to_numpy(), list(reader.tasks)).all():
        report.problems.append(f"episode {ep}: task_index not in meta/tasks.parquet")
    for key in (k for k, f in reader.info["features"].items() if f["dtype"].startswith("float")):
        values = rows[key].combine_chunks()
        flat = values.flatten() if pa.types.is_fixed_size_list(values.type) else values
        if not np.isfinite(flat.to_numpy(zero_copy_only=False)).all():
            report.problems.append(f"episode {ep}: {key} has NaN or infinite values")


def _check_stats(reader: DatasetReader, report: CheckReport) -> None:
    path = reader.layout.stats
    if not path.exists():
        report.problems.append("meta/stats.json: missing")
        return
    stats = json.loads(path.read_text())
    for key, feature in reader.info["features"].items():
        if key not in stats:
            report.problems.append(f"meta/stats.json: no statistics for {key!r}")
            continue
        absent = [n for n in STAT_NAMES if n not in stats[key]]
        if absent:
            report.problems.append(f"meta/stats.json: {key!r} lacks {absent}")
        expected = (3, 1, 1) if feature["dtype"] == "video" else tuple(feature["shape"])
        if "mean" in stats[key] and np.shape(stats[key]["mean"]) != expected:
            report.problems.append(f"meta/stats.json: {key!r} mean has shape {np.shape(stats[key]['mean'])}, expected {expected}")


def _check_videos(reader: DatasetReader, report: CheckReport, decode: bool, progress: Callable[[str], None]) -> None:
    fps = reader.fps
    for key in reader.video_keys:
        height, width, _ = reader.info["features"][key]["shape"]
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
                    report.problems.append(f"{name}: episode {e['episode_index']} spans {e[f'videos/{key}/from_timestamp']}..{e[f'videos/{key}/to_timestamp']} s, expected to start at frame {expected} and last {e['length']} frames")
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
                report.problems.append(f"{name}: frames are {image.shape[1]}x{image.shape[0]}, the feature says {size[1]}x{size[0]}")
                return
            frames += 1
    except VideoError as exc:
        report.problems.append(f"{name}: cannot be decoded after {frames} frames ({exc})")
        return
    report.videos_decoded += 1
    report.frames_decoded += frames
    if frames != expected:
        report.problems.append(f"{name}: {frames} frames, the episodes need {expected}")
