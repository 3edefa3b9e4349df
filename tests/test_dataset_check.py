"""`robot-runtime dataset check` accepts what `record` writes and names each kind of damage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from cli import run_cli

from recorders.check import check_dataset


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tmp_path_factory.mktemp("recorded") / "demo"
    result = run_cli(
        "record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "stack",
        "--episodes", "2", "--episode-time", "0.5", "--reset-time", "0", "--video-codec", "h264", timeout_s=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dataset


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
    assert "OK" in result.stderr and "3 (90 frames)" in result.stderr


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

    video = dataset / "videos/observation.images.front/chunk-000/file-000.mp4"
    longer = video.with_name("longer.mp4")
    append_video(video, 15, video, longer, 30)  # episode 0, then both episodes again: 45 frames for 30 rows
    os.replace(longer, video)
    problems = check_dataset(dataset).problems
    assert "videos/observation.images.front/chunk-000/file-000.mp4: 45 frames, the episodes need 30" in problems


def test_a_damaged_data_file_is_named(dataset: Path) -> None:
    (dataset / "data/chunk-000/file-000.parquet").write_bytes(b"not parquet")
    report = check_dataset(dataset)
    assert not report.ok
    assert "data/chunk-000/file-000.parquet: cannot read it" in report.problems[0]


def test_missing_rows_and_wrong_totals_are_caught(dataset: Path) -> None:
    path = dataset / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.filter(pc.less(table["frame_index"], 10)), path)
    info_path = dataset / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["total_frames"] += 1
    info_path.write_text(json.dumps(info))
    problems = check_dataset(dataset, decode=False).problems
    assert "meta/info.json: total_frames 31, episode lengths sum to 30" in problems
    assert "episode 0: 10 data rows, metadata says 15" in problems
    assert "data: index is not contiguous 0..29 (20 rows)" in problems


def test_statistics_missing_for_a_feature_are_caught(dataset: Path) -> None:
    path = dataset / "meta/stats.json"
    stats = json.loads(path.read_text())
    del stats["observation.state"]
    path.write_text(json.dumps(stats))
    assert "meta/stats.json: no statistics for 'observation.state'" in check_dataset(dataset, decode=False).problems


def test_a_file_changed_after_recording_fails_its_checksum(dataset: Path) -> None:
    path = dataset / "meta/tasks.parquet"
    pq.write_table(pq.read_table(path), path, compression="gzip")  # same content, other bytes
    assert "meta/tasks.parquet: sha256 differs from the run manifest that wrote it" in check_dataset(dataset, decode=False).problems


def test_an_interrupted_commit_is_reported(dataset: Path) -> None:
    (dataset / "meta/commit.json").write_text("[]")
    assert any("a commit was interrupted" in p for p in check_dataset(dataset, decode=False).problems)


def test_a_path_without_a_dataset_is_a_clear_error(tmp_path: Path) -> None:
    result = check_cli(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path} holds no dataset: {tmp_path}/meta/info.json is missing" in result.stderr
