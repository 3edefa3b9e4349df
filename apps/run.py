"""`robot-runtime run`: a policy server drives the follower (`--mode autonomous`), or is only asked and
logged while the arm, connected observe-only, provably stays still (`--mode test`)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from apps.common import (
    STOP_KEYS_HELP,
    add_loop_options,
    add_robot_options,
    console,
    handle_stop_keys,
    print_error,
    report,
    scheduled_faults,
    status_line,
    stopped_outcome,
)
from apps.dataset_output import DatasetOutput, dataset_fps
from cameras.base import CameraError
from recorders.action_log import ActionLog
from recorders.dataset import DatasetError
from recorders.episode import EpisodeRecorder
from recorders.manifest import new_run_id
from recorders.video import VIDEO_CODECS
from robot_runtime.config import load_robot_config
from robot_runtime.keys import KeyReader
from robot_runtime.loop import FixedRateLoop, Tick, percentile_ms
from robot_runtime.policy.chunks import ChunkScheduler, Scheduling
from robot_runtime.policy.client import PolicyClient, PolicyError
from robot_runtime.policy.control import Phase, PolicyControl, PolicyStep, SafetyStop
from robot_runtime.policy.mapping import PolicyIO
from robot_runtime.policy.worker import InferenceWorker
from robot_runtime.robot import ArmError
from robot_runtime.session import Session

log = logging.getLogger(__name__)

API_KEY_ENV = "ROBOT_RUNTIME_POLICY_API_KEY"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="let a policy server drive the follower (autonomous), or only log its actions (test)")
    add_robot_options(parser)
    add_loop_options(parser)
    parser.add_argument("--mode", choices=("test", "autonomous"), required=True, help="test: query and log, the arm never moves; autonomous: execute")
    parser.add_argument("--task_prompt", "--task-prompt", dest="task_prompt", required=True, help='the instruction sent with every observation, e.g. "fold the towel"')
    parser.add_argument("--policy", default="ws://localhost:8000", help="policy server URL (default ws://localhost:8000)")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), help=f"sent as 'Authorization: Api-Key KEY' (default: ${API_KEY_ENV})")
    parser.add_argument("--action-log", type=Path, help="JSON lines, one per tick (default in test mode: logs/run-<id>.jsonl)")
    parser.add_argument("--record", type=Path, metavar="DATASET", help="record the run as one episode of this dataset (created or appended to)")
    parser.add_argument("--video-codec", choices=VIDEO_CODECS, default="av1", help="with --record: the final video codec")
    parser.add_argument("--actions-per-chunk", type=int, help="actions executed from each chunk (default: the robot config's policy section, else the whole chunk)")
    parser.add_argument("--scheduling", choices=[s.value for s in Scheduling], default="async", help="async (default): ask for the next chunk early, the loop never waits; sync: ask when a chunk is used up and wait")
    parser.add_argument("--ensemble", type=float, metavar="M", help="temporal ensembling: average overlapping chunks with weights exp(-M*i)")
    parser.add_argument("--request-timeout-s", type=float, default=5.0, help="a reply later than this counts as failed (default 5)")
    parser.add_argument("--first-reply-s", type=float, default=60.0, help="how long the first inference may take; servers compile on it (default 60)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    rate_hz = args.fps or config.fps
    fps = dataset_fps(args.fps, config) if args.record else None
    if args.actions_per_chunk is not None and args.actions_per_chunk < 1:
        raise ValueError(f"--actions-per-chunk must be at least 1, got {args.actions_per_chunk}")
    run_id = new_run_id()
    action_log_path = args.action_log or (Path("logs") / f"run-{run_id}.jsonl" if args.mode == "test" else None)
    client = PolicyClient(args.policy, api_key=args.api_key, request_timeout_s=args.request_timeout_s)
    metadata = client.connect()  # before touching the arm: an unreachable server is an error with nothing moved
    loop = FixedRateLoop(rate_hz)
    moving = args.mode == "autonomous"
    failure: Exception | None = None
    outcome = "duration reached" if args.duration else "stopped"
    with Session(config, sim=args.sim, with_leaders=False, with_cameras=not args.no_cameras, observe_only=not moving) as session:
        io = PolicyIO.build(config.policy, session.follower.joints, session.follower.feature_names, list(session.cameras), config.source)
        scheduler = ChunkScheduler(Scheduling(args.scheduling), args.actions_per_chunk or io.actions_per_chunk, ensemble_m=args.ensemble)
        worker = InferenceWorker(client, io, args.task_prompt)
        control = PolicyControl(session.follower, worker, scheduler, config.safety, rate_hz, move=moving, cameras=session.cameras, first_reply_s=args.first_reply_s, request_timeout_s=args.request_timeout_s)
        output = DatasetOutput.open(args.record, config, session.follower, session.cameras, fps, args.video_codec, resume=True) if args.record else None
        episode: EpisodeRecorder | None = None
        with contextlib.ExitStack() as sinks:
            action_log = ActionLog(action_log_path, _header(args, session.follower.feature_names, metadata, io)) if action_log_path else None
            if action_log is not None:
                sinks.callback(action_log.close)
            keys = sinks.enter_context(KeyReader())
            _announce(args, config.name, io, metadata, rate_hz, keys.enabled)

            def tick(t: Tick) -> None:
                nonlocal episode
                handle_stop_keys(keys.poll(), control.filter, loop)
                step = control.tick(t)
                if action_log is not None:
                    action_log.add(_row(step))
                if output is not None and step.phase is Phase.POLICY:
                    if episode is None:
                        index = output.next_index
                        episode = EpisodeRecorder(output.writer.staging_dir(index), index, output.writer.spec, output.videos, args.task_prompt, t.deadline_s)
                    episode.add(t.start_s, step.state.timestamp_s, step.state.position, step.sent, step.frames)

            control.start()
            with scheduled_faults(session, args.sim_fault), status_line(functools.partial(_status, control, loop)):
                try:
                    loop.run(tick, duration_s=args.duration)
                    outcome = stopped_outcome(control.filter, outcome)
                except KeyboardInterrupt:
                    outcome = "interrupted (Ctrl-C)"
                except SafetyStop as exc:
                    failure, outcome = exc, "safety stop"
                except PolicyError as exc:
                    failure, outcome = exc, "policy server failure"
                except (ArmError, CameraError, DatasetError) as exc:
                    failure, outcome = exc, "hardware error"
                except Exception as exc:  # still park, report and exit non-zero; -v shows the traceback
                    log.exception("run stopped by an unexpected error")
                    failure, outcome = exc, f"error ({type(exc).__name__})"
            worker.close()
        if moving:
            console.print("parking the follower and switching torque off ...")
    extra = {
        "robot": config.name,
        "mode": args.mode,
        "simulated": args.sim,
        "outcome": outcome,
        "policy": args.policy,
        "scheduling": args.scheduling,
        "actions per chunk": scheduler.actions_per_chunk or "whole chunk",
        "policy_stats": control.stats.as_dict(scheduler, rate_hz),
        "safety_interventions": control.filter.interventions.as_dict(),
        "stop": [asdict(r) for r in session.stop_reports],
    }
    if action_log is not None:
        extra.update({"action log": str(action_log.path), "action log rows": action_log.written, "action log overflow": action_log.overflowed})
    committed = True
    if output is not None:
        if episode is not None and episode.frames:
            output.pipeline.submit(episode, {"mode": args.mode, "policy": args.policy, "outcome": outcome})
        elif episode is not None:
            output.pipeline.discard(episode)
        committed, manifest = output.finish({"command": "run", "mode": args.mode, "task": args.task_prompt, "outcome": outcome, "simulated": args.sim}, config)
        extra.update({"dataset": str(args.record), "episodes in dataset": len(output.writer.episodes), "manifest": manifest})
    report(f"run {args.mode} {config.name}", loop.stats(), extra, args.stats_json, session.cameras.stats())
    for stop in session.stop_reports:
        console.print(stop.describe(), style=None if stop.torque_safe else "red")
    if failure is not None:
        print_error(failure)
    return 0 if failure is None and committed and session.stopped_safely else 1


def _announce(args: argparse.Namespace, robot: str, io: PolicyIO, metadata: dict, rate_hz: float, keys: bool) -> None:
    what = "[bold red]AUTONOMOUS[/]: the policy moves the arm" if args.mode == "autonomous" else "[bold]TEST[/]: actions are logged, the arm does not move"
    console.print(f"run {robot} at {rate_hz:g} Hz against {args.policy} ({io.config.preset} observations, {args.scheduling} scheduling) — {what}")
    if metadata:
        console.print(f"server metadata: {', '.join(f'{k}={v}' for k, v in metadata.items() if not isinstance(v, (dict, list, np.ndarray)))}")
    console.print(STOP_KEYS_HELP if keys else "stdin is not a terminal: no keys; Ctrl-C stops and parks")


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
        f"[bold]{control.phase.value}[/] {loop.recent_hz():4.1f} Hz  infer p50 {percentile_ms(recent, 50):4.0f} p99 {percentile_ms(recent, 99):4.0f} ms"
        f"  chunk age {age:4.0f} ms  chunks {stats.chunks}  held {held}"
    )
