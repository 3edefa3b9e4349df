"""Recording into a dataset from any command (`record`, `run --record`): the writer and its pipeline
for a session's follower and cameras, crash recovery reported, commits waited for, the run manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.common import console
from cameras.camera_set import CameraSet
from recorders.dataset import DatasetWriter
from recorders.layout import DatasetSpec
from recorders.manifest import new_run_id, write_manifest
from recorders.pipeline import Pipeline
from recorders.video import VideoSettings
from robot_runtime.config import ConfigError, RobotConfig
from robot_runtime.rig import Rig


def dataset_fps(requested: float | None, config: RobotConfig) -> int:
    fps = requested if requested is not None else config.fps
    if fps != int(fps) or fps <= 0:
        raise ConfigError(
            f"{config.source}: key 'fps': datasets need a whole number of frames per second, got {fps:g} (or pass --fps)"
        )
    return int(fps)


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
        writer = DatasetWriter(path, spec, videos, resume=resume)
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
        try:
            committed = self.pipeline.close()
        except KeyboardInterrupt:
            console.print("stopped waiting: staged episodes are committed by the next `record --resume`")
            committed = False
        try:
            manifest = str(
                write_manifest(self.writer.layout, self.run_id, summary, config.resolved, self.writer.written).relative_to(
                    self.writer.root
                )
            )
        except OSError as exc:
            manifest = f"not written ({exc})"
        return committed, manifest
