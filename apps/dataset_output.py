"""Recording into a dataset from any command (`record`, `run --record`): the writer and its pipeline
for a session's follower and cameras, crash recovery reported, commits waited for, the run manifest."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.common import console, print_warning
from cameras.camera_set import CameraSet
from recorders.dataset import DatasetWriter
from recorders.layout import DatasetSpec, Layout
from recorders.manifest import new_run_id, write_manifest
from recorders.pipeline import Pipeline
from recorders.reader import DatasetReader
from recorders.video import VideoSettings, fps_problem
from robot_runtime.config import ConfigError, RobotConfig
from robot_runtime.rig import Rig
from robot_runtime.run_evidence import RunMarker, unsafe_ends


def dataset_fps(requested: float | None, config: RobotConfig) -> int:
    fps = requested if requested is not None else config.fps
    if fps != int(fps) or fps <= 0:
        raise ConfigError(
            f"{config.source}: key 'fps': datasets need a whole number of frames per second, got {fps:g} (or pass --fps)"
        )
    return int(fps)


def check_codec(args: argparse.Namespace, config: RobotConfig, fps: int) -> None:
    """A rate the final video codec cannot store is refused before anything is recorded, not at the
    first final encode (and again at every --resume)."""
    if args.no_cameras or not config.cameras:
        return
    problem = fps_problem(args.video_codec, fps)
    if problem is not None:
        where = "--fps" if args.fps is not None else f"{config.source}: key 'fps'"
        raise ConfigError(f"{where} {fps}: {problem}; record at a lower rate, or pass --video-codec h264")


def check_resumable(path: Path) -> None:
    """An existing dataset's files a recording appends to are read and validated before any arm moves: a file
    of the wrong shape is named here, not found deep in a commit."""
    if Layout(path).info.exists():
        DatasetReader(path).check_appendable()


def tell_unsafe_ends(path: Path) -> None:
    """Say so when the last run writing this dataset died before finishing (see robot_runtime.session)."""
    for message in unsafe_ends(dataset=path):
        print_warning(message)


@dataclass
class DatasetOutput:
    writer: DatasetWriter
    pipeline: Pipeline
    videos: dict[str, VideoSettings]
    run_id: str

    @classmethod
    def open(
        cls, path: Path, config: RobotConfig, follower: Rig, cameras: CameraSet, fps: int, codec: str, *, resume: bool
    ) -> DatasetOutput:
        videos = {
            name: VideoSettings(codec=codec, fps=fps, width=camera.settings.output_size[0], height=camera.settings.output_size[1])
            for name, camera in cameras.items()
        }
        spec = DatasetSpec(
            config.robot_type,
            fps,
            tuple(follower.feature_names),
            {n: (v.height, v.width) for n, v in videos.items()},
            {n: v.info for n, v in videos.items()},
        )
        tell_unsafe_ends(path)
        if resume:
            check_resumable(path)
        writer = DatasetWriter(path, spec, videos, resume=resume)
        RunMarker.add_dataset(path)
        output = cls(writer, Pipeline(writer, on_event=console.print), videos, new_run_id())
        output._recover()
        return output

    @property
    def next_index(self) -> int:
        return len(self.writer.episodes) + len(self.writer.recovery.staged)

    def _recover(self) -> None:
        writer, recovery = self.writer, self.writer.recovery
        if writer.episodes:
            console.print(f"resuming {writer.root}: {len(writer.episodes)} episodes, {writer.total_frames} frames")
        if recovery.finished_commit:
            console.print("finished a commit that a crash interrupted")
        for name in recovery.discarded:
            console.print(f"{name} was interrupted by a crash or already committed: discarded")
        for staged in recovery.staged:
            console.print(f"episode {staged.index} was recorded but not committed: committing it now")
            self.pipeline.commit_staged(staged)

    def finish(self, summary: Mapping[str, Any], config: RobotConfig) -> tuple[bool, str]:
        """Wait for the commits, then write the manifest: (all committed, manifest path or why not)."""
        if self.pipeline.pending:
            console.print(
                f"committing {self.pipeline.pending} episode(s) (final video encode) ... Ctrl-C leaves them staged for --resume"
            )
        committed = self.pipeline.close()
        try:
            manifest = str(
                write_manifest(self.writer.layout, self.run_id, summary, config.resolved, self.writer.written).relative_to(
                    self.writer.root
                )
            )
        except OSError as exc:
            manifest = f"not written ({exc})"
        return committed, manifest
