"""The dataset writer on its own: episodes written and read back frame-exactly, and a crash at each
step of a commit recovered on the next open without losing or duplicating an episode."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cameras.base import Frame
from cameras.stamp import Stamp, read_stamp, write_stamp
from recorders.atomic import Journal, temporary_for
from recorders.dataset import DatasetError, DatasetWriter
from recorders.episode import EpisodeRecorder, StagedEpisode
from recorders.layout import DatasetSpec
from recorders.reader import DatasetReader
from recorders.video import VideoSettings

FPS = 30
JOINTS = ("shoulder_pan.pos", "gripper.pos")
VIDEO = VideoSettings(codec="h264", fps=FPS, width=160, height=120)
SPEC = DatasetSpec("test_arm", FPS, JOINTS, {"cam": (120, 160)}, {"cam": VIDEO.info})


def frame(number: int, capture_s: float) -> Frame:
    image = np.full((120, 160, 3), (number * 7) % 256, np.uint8)
    write_stamp(image, Stamp(number, round(capture_s * 1e6)))
    image.flags.writeable = False
    return Frame(image, capture_s, capture_s + 0.002, number, number, "sim")


def stage(writer: DatasetWriter, index: int, frames: int, task: str = "pick", first_number: int = 0) -> StagedEpisode:
    t0 = 100.0 + index * 10
    recorder = EpisodeRecorder(writer.staging_dir(index), index, SPEC, {"cam": VIDEO}, task, t0)
    for i in range(frames):
        tick_s = t0 + i / FPS + 0.001
        state = np.array([i, -i], np.float32)
        recorder.add(tick_s, tick_s + 0.003, state, state + 1, {"cam": frame(first_number + i, tick_s - 0.010)})
    return recorder.finish({"late_ticks": 0})


def open_writer(root: Path, resume: bool = True) -> DatasetWriter:
    return DatasetWriter(root, SPEC, {"cam": VIDEO}, resume=resume)


def test_episodes_read_back_row_by_row_and_frame_by_frame(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "ds", resume=False)
    writer.commit(stage(writer, 0, 12, "pick", first_number=500))
    writer.commit(stage(writer, 1, 8, "place", first_number=900))
    reader = DatasetReader(tmp_path / "ds")
    assert reader.tasks == {0: "pick", 1: "place"}
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in reader.episodes] == [(0, 12), (12, 20)]
    assert reader.episodes[1]["videos/observation.images.cam/from_timestamp"] == 12 / FPS
    episode = reader.episode(1)
    assert episode.task == "place"
    assert episode.rows["index"].to_pylist() == list(range(12, 20))
    assert np.array_equal(episode.states[:, 0], np.arange(8))
    assert np.array_equal(episode.actions, episode.states + 1)
    assert np.allclose(episode.rows["timing.tick_s"].to_numpy(), np.arange(8) / FPS + 0.001)
    assert np.allclose(episode.rows["timing.cam.capture_s"].to_numpy(), np.arange(8) / FPS - 0.009)
    decoded = [(round(t * FPS), read_stamp(image).number) for t, image in reader.frames(1, "observation.images.cam")]
    assert decoded == [(i, 900 + i) for i in range(8)]
    stats = json.loads((tmp_path / "ds" / "meta" / "stats.json").read_text())
    assert stats["observation.state"]["count"] == [20]
    assert stats["observation.state"]["max"] == [11.0, 0.0]
    assert np.array(stats["observation.images.cam"]["mean"]).shape == (3, 1, 1)


def test_temporaries_written_before_a_crash_are_dropped_and_the_staged_episode_committed_on_resume(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "ds", resume=False)
    writer.commit(stage(writer, 0, 6))
    staged = stage(writer, 1, 5)
    writer._stage_commit(staged)  # every new file written beside its target ... then the process dies
    resumed = open_writer(tmp_path / "ds")
    assert resumed.recovery.removed_temporaries > 0
    assert [e.index for e in resumed.recovery.staged] == [1]
    assert len(DatasetReader(tmp_path / "ds").episodes) == 1
    resumed.commit(resumed.recovery.staged[0])
    assert [e["length"] for e in DatasetReader(tmp_path / "ds").episodes] == [6, 5]


def test_a_commit_cut_short_mid_rename_is_finished_on_resume(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "ds", resume=False)
    staged = stage(writer, 0, 7)
    targets, _, _ = writer._stage_commit(staged)
    journal = Journal(tmp_path / "ds")
    journal.path.write_text(json.dumps([str(t.relative_to(tmp_path / "ds")) for t in targets]))
    os.replace(temporary_for(targets[0]), targets[0])  # the video was renamed, then the process died
    resumed = open_writer(tmp_path / "ds")
    assert resumed.recovery.finished_commit
    assert len(resumed.episodes) == 1 and resumed.episodes[0]["length"] == 7
    assert resumed.recovery.staged == ()  # its staging copy was recognised as committed and removed
    assert not staged.directory.exists()
    reader = DatasetReader(tmp_path / "ds")
    assert len(list(reader.frames(0, "observation.images.cam"))) == 7


def test_a_retried_commit_replaces_what_an_unfinished_attempt_appended(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "ds", resume=False)
    writer.commit(stage(writer, 0, 4, first_number=10))
    staged = stage(writer, 1, 6, first_number=20)
    for target in writer._stage_commit(staged)[0]:  # a first attempt got its video and data into place ...
        if target.suffix == ".mp4" or target.relative_to(tmp_path / "ds").parts[0] == "data":
            os.replace(temporary_for(target), target)
    resumed = open_writer(tmp_path / "ds")  # ... but not its metadata: the episode is still staged
    resumed.commit(resumed.recovery.staged[0])
    reader = DatasetReader(tmp_path / "ds")
    assert reader.info["total_frames"] == 10
    assert len(reader.episode(1).rows) == 6
    numbers = [read_stamp(image).number for _, image in reader.frames(1, "observation.images.cam")]
    assert numbers == list(range(20, 26))
    assert sum(1 for _ in reader.frames(0, "observation.images.cam")) == 4


def test_episodes_commit_in_order(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "ds", resume=False)
    with pytest.raises(DatasetError, match="episode 1 cannot be committed before episode 0"):
        writer.commit(stage(writer, 1, 3))
