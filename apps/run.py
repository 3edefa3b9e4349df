"""`robot-runtime run`: a policy server drives the follower (`--mode autonomous`), or is only asked and
logged while the arm, connected observe-only, provably stays still (`--mode test`)."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from apps.common import SECONDS, add_loop_options, add_robot_options, loop_rate_hz, number, policy_url
from apps.dataset_output import DatasetOutput, check_codec, check_resumable, dataset_fps
from apps.runner import ControlCommand, Outcome, RunOptions, run_control
from recorders.action_log import ActionLog
from recorders.episode import EpisodeRecorder
from recorders.manifest import new_run_id
from recorders.video import VIDEO_CODECS
from robot_runtime.config import RobotConfig, load_robot_config
from robot_runtime.loop import FixedRateLoop, Tick, percentile_ms
from robot_runtime.policy.chunks import ChunkScheduler, Scheduling
from robot_runtime.policy.client import PolicyClient
from robot_runtime.policy.control import Phase, PolicyControl, PolicyStep
from robot_runtime.policy.mapping import PolicyIO
from robot_runtime.policy.worker import InferenceWorker
from robot_runtime.recording import signals_stop_commits
from robot_runtime.session import Session

API_KEY_ENV = "ROBOT_RUNTIME_POLICY_API_KEY"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="let a policy server drive the follower (autonomous), or only log its actions (test)"
    )
    add_robot_options(parser)
    add_loop_options(parser)
    parser.add_argument(
        "--mode",
        choices=("test", "autonomous"),
        required=True,
        help="test: query and log, the arm never moves; autonomous: execute",
    )
    parser.add_argument(
        "--task_prompt",
        "--task-prompt",
        dest="task_prompt",
        required=True,
        help='the instruction sent with every observation, e.g. "fold the towel"',
    )
    parser.add_argument(
        "--policy", type=policy_url, default="ws://localhost:8000", help="policy server URL (default ws://localhost:8000)"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get(API_KEY_ENV), help=f"sent as 'Authorization: Api-Key KEY' (default: ${API_KEY_ENV})"
    )
    parser.add_argument("--action-log", type=Path, help="JSON lines, one per tick (default in test mode: logs/run-<id>.jsonl)")
    parser.add_argument(
        "--record", type=Path, metavar="DATASET", help="record the run as one episode of this dataset (created or appended to)"
    )
    parser.add_argument("--video-codec", choices=VIDEO_CODECS, default="av1", help="with --record: the final video codec")
    parser.add_argument(
        "--actions-per-chunk",
        type=number(int, at_least=1),
        help="actions executed from each chunk (default: the robot config's policy section, else the whole chunk)",
    )
    parser.add_argument(
        "--scheduling",
        choices=[s.value for s in Scheduling],
        default="async",
        help="async (default): ask for the next chunk early, the loop never waits; sync: ask when a chunk is used up and wait",
    )
    parser.add_argument(
        "--ensemble",
        type=number(float, at_least=0),
        metavar="M",
        help="temporal ensembling: average overlapping chunks with weights exp(-M*i)",
    )
    parser.add_argument(
        "--request-timeout-s", type=SECONDS, default=5.0, help="a reply later than this counts as failed (default 5)"
    )
    parser.add_argument(
        "--first-reply-s",
        type=SECONDS,
        default=60.0,
        help="how long the first inference may take; servers compile on it (default 60)",
    )
    parser.set_defaults(func=run)


class RunCommand(ControlCommand):
    with_leaders = False

    def __init__(self, config: RobotConfig, args: argparse.Namespace, client: PolicyClient, metadata: dict) -> None:
        self.config = config
        self.args = args
        self.client = client
        self.metadata = metadata
        self.moving = args.mode == "autonomous"
        self.observe_only = not self.moving
        self.title = f"run {args.mode} {config.name}"
        self._rate_hz = loop_rate_hz(args, config)
        self.fps = dataset_fps(args.fps, config) if args.record else None
        if self.fps is not None:
            check_codec(args, config, self.fps)
        self.action_log_path = args.action_log or (Path("logs") / f"run-{new_run_id()}.jsonl" if args.mode == "test" else None)
        self.action_log: ActionLog | None = None
        self.output: DatasetOutput | None = None
        self.episode: EpisodeRecorder | None = None
        self.control: PolicyControl
        self.scheduler: ChunkScheduler
        self.worker: InferenceWorker
        self._after_loop = contextlib.ExitStack()

    @property
    def rate_hz(self) -> float:
        return self._rate_hz

    def start(self, session: Session) -> str:
        args, config = self.args, self.config
        follower = session.follower
        io = PolicyIO.build(
            config.policy,
            follower.joints,
            follower.feature_names,
            list(session.cameras),
            config.source,
            poses=follower.poses,
            rate_hz=self.rate_hz,
        )
        self.scheduler = ChunkScheduler(
            Scheduling(args.scheduling),
            args.actions_per_chunk or io.actions_per_chunk,
            ensemble_m=args.ensemble,
            average=session.follower.space.average,
        )
        self.worker = InferenceWorker(self.client, io, args.task_prompt)
        self.control = PolicyControl(
            session.follower,
            self.worker,
            self.scheduler,
            config.safety,
            self.rate_hz,
            move=self.moving,
            cameras=session.cameras,
            first_reply_s=args.first_reply_s,
            request_timeout_s=args.request_timeout_s,
        )
        self.filter = self.control.filter
        if self.fps is not None:  # --record
            self.output = DatasetOutput.open(
                args.record, config, session.follower, session.cameras, self.fps, args.video_codec, resume=True
            )
        if self.action_log_path is not None:
            self.action_log = ActionLog(self.action_log_path, _header(args, session.follower.feature_names, self.metadata, io))
        self.control.start()
        return _announce(args, config.name, io, self.metadata, self.rate_hz)

    def tick(self, t: Tick) -> None:
        step = self.control.tick(t)
        if self.action_log is not None:
            self.action_log.add(_row(step))
        if self.output is not None and step.phase is Phase.POLICY:
            if self.episode is None:
                index = self.output.next_index
                self.episode = EpisodeRecorder(
                    self.output.writer.staging_dir(index),
                    index,
                    self.output.writer.spec,
                    self.output.videos,
                    self.args.task_prompt,
                    t.deadline_s,
                )
            self.episode.add(t.start_s, step.state.timestamp_s, step.state.position, step.sent, step.frames)

    def status(self, loop: FixedRateLoop) -> str:
        return _status(self.control, loop)

    def ended(self, outcome: Outcome) -> None:
        if self.output is not None:  # until the manifest is written, a signal stops the commits
            self._after_loop.enter_context(signals_stop_commits(self.output.pipeline))
        self.worker.close()
        if self.action_log is not None:
            self.action_log.close()

    def finish(self, outcome: Outcome) -> tuple[bool, dict[str, Any]]:
        with self._after_loop:
            return self._finish(outcome)

    def _finish(self, outcome: Outcome) -> tuple[bool, dict[str, Any]]:
        args = self.args
        extra: dict[str, Any] = {
            "mode": args.mode,
            "policy": args.policy,
            "scheduling": args.scheduling,
            "actions per chunk": self.scheduler.actions_per_chunk or "whole chunk",
            "policy_stats": self.control.stats.as_dict(self.scheduler, self.rate_hz),
        }
        if self.action_log is not None:
            log_ = self.action_log
            extra.update({"action log": str(log_.path), "action log rows": log_.written, "action log overflow": log_.overflowed})
        if self.output is None:
            return True, extra
        if self.episode is not None and self.episode.frames:
            self.output.pipeline.submit(self.episode, {"mode": args.mode, "policy": args.policy, "outcome": outcome.label})
        elif self.episode is not None:
            self.output.pipeline.discard(self.episode)
        summary = {"command": "run", "mode": args.mode, "task": args.task_prompt, "outcome": outcome.label, "simulated": args.sim}
        committed, manifest = self.output.finish(summary, self.config)
        extra.update({"dataset": str(args.record), "episodes in dataset": len(self.output.writer.episodes), "manifest": manifest})
        return committed, extra


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    if args.record is not None:
        check_resumable(args.record)  # a damaged dataset is named before the server is asked or the arm moves
    client = PolicyClient(args.policy, api_key=args.api_key, request_timeout_s=args.request_timeout_s)
    metadata = client.connect()  # before touching the arm: an unreachable server is an error with nothing moved
    command = RunCommand(config, args, client, metadata)
    return run_control(command, config, RunOptions.from_args(args))


def _announce(args: argparse.Namespace, robot: str, io: PolicyIO, metadata: dict, rate_hz: float) -> str:
    what = (
        "[bold red]AUTONOMOUS[/]: the policy moves the arm"
        if args.mode == "autonomous"
        else "[bold]TEST[/]: actions are logged, the arm does not move"
    )
    how = f"{io.config.preset} observations, {args.scheduling} scheduling"
    announcement = f"run {robot} at {rate_hz:g} Hz against {args.policy} ({how}) — {what}"
    shown = [f"{k}={v}" for k, v in metadata.items() if not isinstance(v, (dict, list, np.ndarray))]
    return announcement + (f"\nserver metadata: {', '.join(shown)}" if metadata else "")


def _header(args: argparse.Namespace, joints: list[str], metadata: dict, io: PolicyIO) -> dict:
    return {
        "mode": args.mode,
        "policy": args.policy,
        "task_prompt": args.task_prompt,
        "joints": joints,
        "preset": io.config.preset,
        "scheduling": args.scheduling,
        "server_metadata": {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))},
    }


def _row(step: PolicyStep) -> dict:
    scheduled = step.scheduled
    return {
        "t_s": round(step.tick.elapsed_s, 4),
        "tick": step.tick.index,
        "phase": step.phase.value,
        "chunk": None if scheduled is None else scheduled.chunk_id,
        "step": None if scheduled is None else scheduled.step,
        "requested": None if scheduled is None else scheduled.action,
        "sent": step.sent,
        "inference_ms": None if scheduled is None else round(scheduled.latency_s * 1e3, 2),
        "state": step.state.position,
    }


def _status(control: PolicyControl, loop: FixedRateLoop) -> str:
    """Phase, loop Hz, inference latency p50/p99 and chunk age; fits 80 columns."""
    stats = control.stats
    recent = np.asarray(stats.latencies_s[-50:])
    age = stats.ages_ticks[-1] / loop.rate_hz * 1e3 if stats.ages_ticks else float("nan")
    held = control.filter.interventions.held
    return (
        f"[bold]{control.phase.value}[/] {loop.recent_hz():4.1f} Hz"
        f"  infer p50 {percentile_ms(recent, 50):4.0f} p99 {percentile_ms(recent, 99):4.0f} ms"
        f"  chunk age {age:4.0f} ms  chunks {stats.chunks}  held {held}"
    )
