"""`robot-runtime dataset check` accepts what `record` writes and names each kind of damage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from cli import run_cli

from recorders.check import check_dataset
from recorders.dataset import DatasetWriter
from recorders.episode import EpisodeRecorder
from recorders.layout import DatasetSpec


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tmp_path_factory.mktemp("recorded") / "demo"
    result = run_cli(
        "record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "stack",
        "--episodes", "2", "--episode-time", "0.5", "--reset-time", "0", "--video-codec", "h264", timeout_s=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dataset


def episode_lengths(dataset: Path) -> list[int]:
    """Frames per episode as recorded: a loaded machine may run fewer ticks than 0.5 s at 30 fps."""
    lengths = pq.read_table(dataset / "meta/episodes/chunk-000/file-000.parquet")["length"].to_pylist()
    assert len(lengths) == 2 and min(lengths) >= 6, f"the recording is too short to damage: {lengths}"
    return lengths


@pytest.fixture
def dataset(recorded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(recorded, copy)
    return copy


def check_cli(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("dataset", "check", str(path), *extra, timeout_s=120)


def test_a_recorded_dataset_passes_with_every_frame_decoded(dataset: Path) -> None:
    result = check_cli(dataset)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stderr and f"3 ({3 * sum(episode_lengths(dataset))} frames)" in result.stderr


def test_a_missing_video_is_named(dataset: Path) -> None:
    (dataset / "videos/observation.images.wrist/chunk-000/file-000.mp4").unlink()
    result = check_cli(dataset, "--no-decode")
    assert result.returncode == 1
    assert "videos/observation.images.wrist/chunk-000/file-000.mp4: missing (episodes [0, 1])" in result.stderr


def test_an_undecodable_video_is_named(dataset: Path) -> None:
    video = dataset / "videos/observation.images.top/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: len(video.read_bytes()) // 3])  # cut short, as by a crash mid-write
    problems = check_dataset(dataset).problems
    assert any(p.startswith("videos/observation.images.top/chunk-000/file-000.mp4: ") for p in problems), problems


def test_a_video_with_other_frames_than_its_episodes_is_caught(dataset: Path) -> None:
    from recorders.video import append_video

    first, second = episode_lengths(dataset)
    video = dataset / "videos/observation.images.front/chunk-000/file-000.mp4"
    longer = video.with_name("longer.mp4")
    append_video(video, first, video, longer, 30)  # episode 0, then both episodes again
    os.replace(longer, video)
    problems = check_dataset(dataset).problems
    needed = first + second
    video_name = "videos/observation.images.front/chunk-000/file-000.mp4"
    assert f"{video_name}: {first + needed} frames, the episodes need {needed}" in problems


def test_a_damaged_data_file_is_named(dataset: Path) -> None:
    (dataset / "data/chunk-000/file-000.parquet").write_bytes(b"not parquet")
    report = check_dataset(dataset)
    assert not report.ok
    assert "data/chunk-000/file-000.parquet: cannot read it" in report.problems[0]


def test_missing_rows_and_wrong_totals_are_caught(dataset: Path) -> None:
    lengths = episode_lengths(dataset)
    kept = min(lengths) // 2
    path = dataset / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.filter(pc.less(table["frame_index"], kept)), path)
    info_path = dataset / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["total_frames"] += 1
    info_path.write_text(json.dumps(info))
    problems = check_dataset(dataset, decode=False).problems
    total = sum(lengths)
    assert f"meta/info.json: total_frames {total + 1}, episode lengths sum to {total}" in problems
    assert f"episode 0: {kept} data rows, metadata says {lengths[0]}" in problems
    assert f"data: index is not contiguous 0..{total - 1} ({2 * kept} rows)" in problems


def test_statistics_missing_for_a_feature_are_caught(dataset: Path) -> None:
    path = dataset / "meta/stats.json"
    stats = json.loads(path.read_text())
    del stats["observation.state"]
    path.write_text(json.dumps(stats))
    assert "meta/stats.json: no statistics for 'observation.state'" in check_dataset(dataset, decode=False).problems


def test_a_file_changed_after_recording_fails_its_checksum(dataset: Path) -> None:
    path = dataset / "meta/tasks.parquet"
    pq.write_table(pq.read_table(path), path, compression="gzip")  # same content, other bytes
    assert (
        "meta/tasks.parquet: sha256 differs from the run manifest that wrote it" in check_dataset(dataset, decode=False).problems
    )


def test_an_interrupted_commit_is_reported(dataset: Path) -> None:
    (dataset / "meta/commit.json").write_text("[]")
    assert any("a commit was interrupted" in p for p in check_dataset(dataset, decode=False).problems)


def test_a_path_without_a_dataset_is_a_clear_error(tmp_path: Path) -> None:
    result = check_cli(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path} holds no dataset: {tmp_path}/meta/info.json is missing" in result.stderr


# ---- a dataset before its first commit ---------------------------------------------------------

SPEC = DatasetSpec("so100", 30, ("shoulder_pan.pos", "gripper.pos"))


def take(writer: DatasetWriter, index: int, frames: int) -> EpisodeRecorder:
    recorder = EpisodeRecorder(writer.staging_dir(index), index, SPEC, {}, "stack", t0_s=100.0)
    for i in range(frames):
        recorder.add(100.0 + i / 30, 100.0 + i / 30, np.zeros(2), np.ones(2), {})
    return recorder


def test_a_dataset_without_a_committed_episode_is_reported_as_having_no_episodes_yet(tmp_path: Path) -> None:
    """As a recording stopped before its first commit leaves it (killed, or a full disk): meta/info.json, no tasks yet."""
    DatasetWriter(tmp_path / "demo", SPEC, {}, resume=False)
    result = check_cli(tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "OK, no episodes yet" in result.stderr
    assert "note: no episodes yet: the dataset was created, but no episode was committed to it" in result.stderr


def test_takes_left_in_staging_are_reported_with_what_resume_does_with_them(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "demo", SPEC, {}, resume=False)
    take(writer, 0, frames=5).finish()  # recorded, then the process died before its commit
    take(writer, 1, frames=3)  # cut short mid-episode
    report = check_dataset(tmp_path / "demo")
    assert report.ok and report.episodes == 0, report.problems
    assert report.notes[1:] == [
        "episode(s) 0 recorded but not committed, in .staging: `record --resume` commits them before recording more",
        "1 unfinished or already committed take(s) in .staging: `record --resume` deletes them",
    ]
    recovery = DatasetWriter(tmp_path / "demo", SPEC, {}, resume=True).recovery  # what `record --resume` opens it with
    assert ([e.index for e in recovery.staged], len(recovery.discarded)) == ([0], 1)


def test_committed_episodes_without_tasks_parquet_are_a_problem_not_a_crash(dataset: Path) -> None:
    (dataset / "meta/tasks.parquet").unlink()
    problems = check_dataset(dataset, decode=False).problems
    assert "meta/tasks.parquet: missing, while the episodes metadata lists 2 episode(s)" in problems


# ---- the column types LeRobot writes -----------------------------------------------------------

VECTORS = ("action", "observation.state")
SCALARS = ("timing.tick_s", "timestamp", "frame_index", "episode_index", "index", "task_index")


def rewrite_data(dataset: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    for path in sorted((dataset / "data").glob("*/*.parquet")):
        pq.write_table(change(pq.read_table(path)), path)
    shutil.rmtree(dataset / "meta/runs")  # written by another tool: no run manifest of ours vouches for its files


def replace_column(table: pa.Table, key: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(key), key, values)


def with_columns(table: pa.Table, keys: tuple[str, ...], convert: Callable[[pa.Array], pa.Array]) -> pa.Table:
    for key in keys:
        table = replace_column(table, key, convert(table[key].combine_chunks()))
    return table


def list_of_one(values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.arange(len(values) + 1, dtype=np.int32)), values)


def test_a_dataset_merged_by_lerobot_passes(dataset: Path) -> None:
    """`lerobot-edit-dataset merge` (LeRobot's aggregate.py) reads every data and episodes file with pandas and
    writes it back with DataFrame.to_parquet: vectors become variable-size lists."""
    for path in [*(dataset / "data").glob("*/*.parquet"), *(dataset / "meta/episodes").glob("*/*.parquet")]:
        pd.read_parquet(path).to_parquet(path)
    shutil.rmtree(dataset / "meta/runs")
    assert pa.types.is_list(pq.read_schema(dataset / "data/chunk-000/file-000.parquet").field("action").type)
    report = check_dataset(dataset, decode=False)
    assert report.problems == [] and (report.episodes, report.frames) == (2, sum(episode_lengths(dataset)))


@pytest.mark.parametrize(
    "vector_type",
    [pa.list_(pa.float32()), pa.large_list(pa.float32()), pa.list_(pa.float64()), pa.list_(pa.float64(), 6)],
    ids=str,
)
def test_vectors_of_any_list_type_and_one_value_features_as_lists_of_one_pass(dataset: Path, vector_type: pa.DataType) -> None:
    rewrite_data(dataset, lambda t: with_columns(with_columns(t, VECTORS, lambda a: a.cast(vector_type)), SCALARS, list_of_one))
    assert check_dataset(dataset, decode=False).problems == []


def test_rows_with_too_few_values_in_a_list_column_are_named(dataset: Path) -> None:
    def drop_a_value_in_rows_2_and_5(table: pa.Table) -> pa.Table:
        rows = table["action"].to_pylist()
        for row in (2, 5):
            rows[row] = rows[row][:5]
        return replace_column(table, "action", pa.array(rows, pa.list_(pa.float32())))

    rewrite_data(dataset, drop_a_value_in_rows_2_and_5)
    problems = check_dataset(dataset, decode=False).problems
    assert "data/chunk-000/file-000.parquet: column 'action' has 5 values in 2 row(s) (2, 5), the feature says 6" in problems


def test_nan_in_a_list_column_is_named_with_its_frames(dataset: Path) -> None:
    first, _ = episode_lengths(dataset)

    def nan_in_frame_3_of_episode_1(table: pa.Table) -> pa.Table:
        rows = table["observation.state"].to_pylist()
        rows[first + 3][2] = float("nan")
        return replace_column(table, "observation.state", pa.array(rows, pa.list_(pa.float32())))

    rewrite_data(dataset, nan_in_frame_3_of_episode_1)
    problems = check_dataset(dataset, decode=False).problems
    assert problems == ["episode 1: observation.state has NaN or infinite values at frame_index 3"]
