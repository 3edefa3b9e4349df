"""`robot-runtime record`: teleoperate and record episodes into a LeRobot v3.0 dataset."""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import asdict
from pathlib import Path

from apps.common import add_robot_options, console, print_error, report, scheduled_faults, status_line
from apps.dataset_output import DatasetOutput, dataset_fps
from cameras.base import CameraError
from cameras.camera_set import CameraSet
from recorders.dataset import DatasetError
from recorders.video import VIDEO_CODECS, VideoError
from robot_runtime.config import ConfigError, load_robot_config
from robot_runtime.keys import HELP, KeyReader
from robot_runtime.loop import FixedRateLoop
from robot_runtime.recording import Phase, RecordingRun, RecordPlan
from robot_runtime.robot import ArmError
from robot_runtime.session import Session
from robot_runtime.teleop import Teleop

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("record", help="teleoperate and record episodes into a LeRobot v3.0 dataset")
    add_robot_options(parser)
    parser.add_argument("--dataset", type=Path, required=True, help="dataset directory (created if new)")
    parser.add_argument("--task", required=True, help='what the episodes show, e.g. "pick up the cube"')
    parser.add_argument("--episodes", type=int, default=1, help="episodes to record in this run (default 1)")
    parser.add_argument("--episode-time", type=float, default=60.0, help="seconds per episode (default 60)")
    parser.add_argument("--reset-time", type=float, default=10.0, help="seconds to reset the scene between episodes (default 10)")
    parser.add_argument("--fps", type=int, help="recording rate in Hz (default: the robot config's fps)")
    parser.add_argument("--resume", action="store_true", help="add episodes to an existing dataset recorded with the same setup")
    parser.add_argument("--video-codec", choices=VIDEO_CODECS, default="av1", help="final video codec (default av1, as LeRobot)")
    parser.add_argument("--stats-json", type=Path, help="write the run's statistics to this JSON file")
    parser.set_defaults(func=run)


def _check_plan(args: argparse.Namespace) -> None:
    if args.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {args.episodes}")
    if not args.episode_time > 0:
        raise ValueError(f"--episode-time must be positive, got {args.episode_time:g}")
    if args.reset_time < 0:
        raise ValueError(f"--reset-time cannot be negative, got {args.reset_time:g}")
    if not args.task.strip():
        raise ValueError("--task must describe the episodes")


def run(args: argparse.Namespace) -> int:
    _check_plan(args)
    config = load_robot_config(args.robot, args.overrides)
    if not config.leaders:
        raise ConfigError(f"{config.source}: record needs at least one entry under 'leaders' to teleoperate")
    fps = dataset_fps(args.fps, config)
    plan = RecordPlan(args.episodes, args.episode_time, args.reset_time, args.task.strip())
    loop = FixedRateLoop(fps)
    failure: Exception | None = None
    outcome = "done"
    with Session(config, sim=args.sim, with_cameras=not args.no_cameras) as session:
        assert session.leader is not None
        output = DatasetOutput.open(args.dataset, config, session.follower, session.cameras, fps, args.video_codec, resume=args.resume)
        writer, pipeline = output.writer, output.pipeline
        teleop = Teleop(session.leader, session.follower, config.safety, fps, session.cameras)
        teleop.start()
        with KeyReader() as keys:
            recording = RecordingRun(teleop, writer, pipeline, plan, output.videos, keys.poll, console.print, first_index=output.next_index)
            where = "simulated hardware" if args.sim else ", ".join(spec.config.port for spec in config.followers + config.leaders)
            console.print(f"record [bold]{config.name}[/] on {where} into {args.dataset} at {fps} Hz, cameras: {', '.join(session.cameras) or 'none'}")
            console.print(HELP if keys.enabled else "stdin is not a terminal: recording unattended to the end (Ctrl-C stops)")

            def tick(t):  # noqa: ANN001 - the loop's Tick
                recording.tick(t)
                if recording.done:
                    loop.stop()

            with scheduled_faults(session, args.sim_fault), status_line(functools.partial(_status, recording, session.cameras, loop)):
                try:
                    loop.run(tick)
                except KeyboardInterrupt:
                    outcome = "interrupted (Ctrl-C)"
                    recording.interrupt()
                except (ArmError, CameraError, DatasetError, VideoError) as exc:
                    failure, outcome = exc, "error"
                    recording.interrupt()
                except Exception as exc:
                    log.exception("recording stopped by an unexpected error")
                    failure, outcome = exc, f"error ({type(exc).__name__})"
                    recording.interrupt()
        console.print("parking the follower and switching torque off ...")
    run_summary = {"command": "record", "task": plan.task, "episodes_recorded": recording.recorded, "outcome": outcome, "simulated": args.sim}
    committed, manifest = output.finish(run_summary, config)
    extra = {
        "robot": config.name,
        "dataset": str(args.dataset),
        "outcome": outcome,
        "episodes recorded": recording.recorded,
        "episodes re-recorded": recording.rerecorded,
        "episodes in dataset": len(writer.episodes),
        "frames in dataset": writer.total_frames,
        "manifest": manifest,
        "episode_times": [asdict(t) for t in pipeline.times.values()],
        "safety_interventions": teleop.filter.interventions.as_dict(),
        "stop": [asdict(r) for r in session.stop_reports],
    }
    report(f"record {config.name}", loop.stats(), extra, args.stats_json, session.cameras.stats())
    for stop in session.stop_reports:
        console.print(stop.describe(), style=None if stop.torque_safe else "red")
    for error in pipeline.errors:
        print_error(error)
    if failure is not None:
        print_error(failure)
    return 0 if failure is None and committed and session.stopped_safely else 1


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
