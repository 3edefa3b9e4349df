"""The pipeline between the control loop and the dataset: it counts episodes (not the tasks that save and
commit them), and a stop leaves every episode it did not commit staged, with a dataset that checks clean
and a resume that commits them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cameras.base import Frame
from recorders.check import check_dataset
from recorders.dataset import DatasetWriter
from recorders.episode import EpisodeRecorder
from recorders.layout import DatasetSpec
from recorders.pipeline import Pipeline
from recorders.video import VideoSettings

FPS = 30
AV1 = VideoSettings(codec="av1", fps=FPS, width=96, height=64)
SPEC = DatasetSpec("test_arm", FPS, ("a.pos",), {"cam": (64, 96)}, {"cam": AV1.info})


def recorded(writer: DatasetWriter, index: int, frames: int = 30) -> EpisodeRecorder:
    """An episode of `frames` rows, its video queued to the live encoder, not yet finished."""
    recorder = EpisodeRecorder(writer.staging_dir(index), index, SPEC, {"cam": AV1}, "t", t0_s=0.0)
    for row in range(frames):
        image = np.full((64, 96, 3), row * 8 % 256, np.uint8)
        image.flags.writeable = False
        t_s = row / FPS
        frame = Frame(image, t_s, t_s, row, row, "sim")
        recorder.add(t_s, t_s, np.array([float(row)]), np.array([0.0]), {"cam": frame})
    return recorder


def test_pending_counts_episodes_not_the_tasks_that_save_and_commit_them(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", SPEC, {"cam": AV1}, resume=False)
    pipeline = Pipeline(writer, on_event=lambda _: None)
    pipeline.submit(recorded(writer, 0), {})
    assert pipeline.pending == 1
    pipeline.submit(recorded(writer, 1), {})
    pipeline.discard(recorded(writer, 2))  # a thrown-away take is no commit
    assert pipeline.pending == 2
    assert pipeline.close()
    assert pipeline.pending == 0
    assert check_dataset(tmp_path / "ds").episodes == 2


def test_a_stop_leaves_what_it_did_not_commit_staged_and_a_resume_commits_it(tmp_path: Path) -> None:
    said: list[str] = []
    writer = DatasetWriter(tmp_path / "ds", SPEC, {"cam": AV1}, resume=False)
    pipeline = Pipeline(writer, on_event=said.append)
    for index in range(3):
        pipeline.submit(recorded(writer, index), {})
    pipeline.stop()
    pipeline.stop()  # a second Ctrl-C
    assert not pipeline.close()
    assert pipeline.left_staged, "a stop right after the episodes were handed over leaves at least the last one staged"
    committed = len(writer.episodes)
    assert sorted([*range(committed), *pipeline.left_staged]) == [0, 1, 2]
    listed = ", ".join(map(str, pipeline.left_staged))
    assert f"episode(s) {listed} stay staged in {writer.layout.staging}: `record --resume` commits them" in said
    report = check_dataset(tmp_path / "ds")
    assert report.ok, report.problems
    assert "recorded but not committed, in .staging: `record --resume` commits them" in " ".join(report.notes)

    resumed = DatasetWriter(tmp_path / "ds", SPEC, {"cam": AV1}, resume=True)
    assert [staged.index for staged in resumed.recovery.staged] == pipeline.left_staged
    pipeline = Pipeline(resumed, on_event=lambda _: None)
    for staged in resumed.recovery.staged:
        pipeline.commit_staged(staged)
    assert pipeline.close()
    report = check_dataset(tmp_path / "ds")
    assert report.ok and report.episodes == 3 and not report.notes, (report.problems, report.notes)
