"""`robot-runtime record`: teleoperate and record episodes into a LeRobot v3.0 dataset."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from apps.common import SECONDS, UsageError, add_robot_options, console, number, print_error
from apps.dataset_output import DatasetOutput, check_codec, check_resumable, dataset_fps
from apps.runner import ControlCommand, Outcome, RunOptions, run_control, where
from cameras.camera_set import CameraSet
from recorders.video import VIDEO_CODECS
from robot_runtime.config import MAX_RATE_HZ, ConfigError, RobotConfig, load_robot_config
from robot_runtime.keys import HELP
from robot_runtime.loop import FixedRateLoop, Tick
from robot_runtime.recording import Phase, RecordingRun, RecordPlan, signals_stop_commits
from robot_runtime.session import Session
from robot_runtime.teleop import Teleop


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("record", help="teleoperate and record episodes into a LeRobot v3.0 dataset")
    add_robot_options(parser)
    parser.add_argument("--dataset", type=Path, required=True, help="dataset directory (created if new)")
    parser.add_argument("--task", required=True, help='what the episodes show, e.g. "pick up the cube"')
    parser.add_argument("--episodes", type=number(int, at_least=1), default=1, help="episodes to record in this run (default 1)")
    parser.add_argument("--episode-time", type=SECONDS, default=60.0, help="seconds per episode (default 60)")
    parser.add_argument(
        "--reset-time",
        type=number(float, at_least=0),
        default=10.0,
        help="seconds to reset the scene between episodes (default 10)",
    )
    parser.add_argument(
        "--fps", type=number(int, at_least=1, at_most=MAX_RATE_HZ), help="recording rate in Hz (default: the robot config's fps)"
    )
    parser.add_argument("--resume", action="store_true", help="add episodes to an existing dataset recorded with the same setup")
    parser.add_argument("--video-codec", choices=VIDEO_CODECS, default="av1", help="final video codec (default av1, as LeRobot)")
    parser.add_argument("--stats-json", type=Path, help="write the run's statistics to this JSON file")
    parser.set_defaults(func=run)


def _check_plan(args: argparse.Namespace) -> None:
    if not args.task.strip():
        raise UsageError("--task must describe the episodes")


class RecordCommand(ControlCommand):
    keys_help = HELP

    def __init__(self, config: RobotConfig, args: argparse.Namespace) -> None:
        if not config.leaders:
            raise ConfigError(f"{config.source}: record needs at least one entry under 'leaders' to teleoperate")
        self.config = config
        self.args = args
        self.title = f"record {config.name}"
        self.fps = dataset_fps(args.fps, config)
        check_codec(args, config, self.fps)
        self.plan = RecordPlan(args.episodes, args.episode_time, args.reset_time, args.task.strip())
        self.output: DatasetOutput
        self.recording: RecordingRun
        self._keys: list[str] = []
        self._after_loop = contextlib.ExitStack()

    @property
    def rate_hz(self) -> float:
        return self.fps

    @property
    def done(self) -> bool:
        return self.recording.done

    def start(self, session: Session) -> str:
        assert session.leader is not None
        self.session = session
        self.output = DatasetOutput.open(
            self.args.dataset,
            self.config,
            session.follower,
            session.cameras,
            self.fps,
            self.args.video_codec,
            resume=self.args.resume,
        )
        try:
            teleop = Teleop(session.leader, session.follower, self.config.safety, self.fps, session.cameras)
            self.filter = teleop.filter
            teleop.start()
        except BaseException as exc:  # refused (leader far from the follower) or interrupted
            self._close_unstarted(exc)
            raise
        self.recording = RecordingRun(
            teleop,
            self.output.writer,
            self.output.pipeline,
            self.plan,
            self.output.videos,
            self._take_keys,
            console.print,
            first_index=self.output.next_index,
        )
        cameras = ", ".join(session.cameras) or "none"
        into = f"into {self.args.dataset} at {self.fps} Hz"
        return f"record [bold]{self.config.name}[/] on {where(session)} {into}, cameras: {cameras}"

    def _close_unstarted(self, exc: BaseException) -> None:
        """Episodes a previous run left staged may be committing already: stop them (the rest stay staged)
        and write the manifest, so what did get committed is in it."""
        with signals_stop_commits(self.output.pipeline):
            self.output.pipeline.stop()
            self.output.finish(self._summary(0, f"not started ({type(exc).__name__})"), self.config)

    def on_keys(self, keys: list[str], stop: Callable[[], None]) -> None:
        """The recording reads the keys itself: next, re-record, stop and e-stop end or discard episodes."""
        self._keys = keys

    def _take_keys(self) -> list[str]:
        keys, self._keys = self._keys, []
        return keys

    def tick(self, tick: Tick) -> None:
        self.recording.tick(tick)

    def status(self, loop: FixedRateLoop) -> str:
        return _status(self.recording, self.session.cameras, loop)

    def ended(self, outcome: Outcome) -> None:
        self._after_loop.enter_context(signals_stop_commits(self.output.pipeline))
        if outcome.failure is not None or outcome.label.startswith("interrupted"):
            self.recording.interrupt()

    def finish(self, outcome: Outcome) -> tuple[bool, dict[str, Any]]:
        with self._after_loop:  # until the manifest is written, a signal stops the commits
            return self._finish(outcome)

    def _finish(self, outcome: Outcome) -> tuple[bool, dict[str, Any]]:
        recording, writer, pipeline = self.recording, self.output.writer, self.output.pipeline
        committed, manifest = self.output.finish(self._summary(recording.recorded, outcome.label), self.config)
        for error in pipeline.errors:
            print_error(error)
        return committed, {
            "dataset": str(self.args.dataset),
            "episodes recorded": recording.recorded,
            "episodes re-recorded": recording.rerecorded,
            "episodes in dataset": len(writer.episodes),
            "frames in dataset": writer.total_frames,
            "manifest": manifest,
            "episode_times": [asdict(t) for t in pipeline.times.values()],
        }

    def _summary(self, recorded: int, outcome: str) -> dict[str, Any]:
        """What the run manifest says of this run."""
        return {
            "command": "record",
            "task": self.plan.task,
            "episodes_recorded": recorded,
            "outcome": outcome,
            "simulated": self.args.sim,
        }


def run(args: argparse.Namespace) -> int:
    _check_plan(args)
    config = load_robot_config(args.robot, args.overrides)
    if args.resume:
        check_resumable(args.dataset)  # a damaged dataset is named before any arm connects
    return run_control(RecordCommand(config, args), config, RunOptions.from_args(args))


def _status(recording: RecordingRun, cameras: CameraSet, loop: FixedRateLoop) -> str:
    """Episode k/N, time left, loop Hz, camera fps (in config order), queue depth, overflowed frames and
    commits in progress; fits 80 columns with three cameras."""
    s = recording.status()
    what = "[red]● REC[/]" if s.phase is Phase.RECORDING else "[yellow]reset[/]" if s.phase is Phase.RESET else "done"
    fps = " ".join(f"{camera.health().achieved_fps:.0f}" for camera in cameras.values())
    return (
        f"{what} ep {s.episode}/{s.episodes} {s.time_left_s:4.1f} s  {loop.recent_hz():4.1f} Hz  cam fps {fps or '-'}"
        f"  queue {s.queued_frames}  overflow {s.overflowed_frames}  commits {s.pending_commits}"
    )
