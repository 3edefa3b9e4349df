"""`robot-runtime replay`: drive the follower through a recorded episode's actions."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np

from apps.common import STOP_KEYS_HELP, add_robot_choice, console, handle_stop_keys, print_error, report, stopped_outcome
from cameras.base import CameraError
from recorders.layout import ACTION
from recorders.reader import DatasetReader
from robot_runtime.config import load_robot_config
from robot_runtime.keys import KeyReader
from robot_runtime.loop import FixedRateLoop
from robot_runtime.replay import Replay
from robot_runtime.robot import ArmError
from robot_runtime.session import Session


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="drive the follower through a recorded episode's actions")
    add_robot_choice(parser)
    parser.add_argument("--sim", action="store_true", help="replace every configured port with a simulator")
    parser.add_argument("--dataset", type=Path, required=True, help="dataset directory")
    parser.add_argument("--episode", type=int, required=True, help="episode index")
    parser.add_argument("--stats-json", type=Path, help="write the replay statistics to this JSON file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    dataset = DatasetReader(args.dataset)
    episode = dataset.episode(args.episode)
    recorded_joints = dataset.info["features"][ACTION]["names"]
    failure: Exception | None = None
    outcome = "episode replayed"
    with Session(config, sim=args.sim, with_leaders=False, with_cameras=False) as session:
        if recorded_joints != session.follower.feature_names:
            raise ValueError(f"{args.dataset} records actions for {recorded_joints}, but {config.name}'s follower has {session.follower.feature_names}")
        replay = Replay(session.follower, episode.actions, config.safety, dataset.fps)
        loop = FixedRateLoop(dataset.fps)
        replay.start()
        console.print(f"replaying episode {args.episode} of {args.dataset} ({len(episode.actions)} frames, {episode.task!r}) on {config.name}: Ctrl-C to stop")

        def tick(t):  # noqa: ANN001 - the loop's Tick
            handle_stop_keys(keys.poll(), replay.filter, loop)
            replay.tick(t)
            if replay.done:
                loop.stop()

        try:
            with KeyReader() as keys:
                if keys.enabled:
                    console.print(STOP_KEYS_HELP)
                loop.run(tick)
            outcome = stopped_outcome(replay.filter, outcome)
        except KeyboardInterrupt:
            outcome = "interrupted (Ctrl-C)"
        except (ArmError, CameraError) as exc:
            failure, outcome = exc, "hardware error"
        console.print("parking the follower and switching torque off ...")
    error = np.max(replay.tracking_error, axis=0) if replay.tracking_error else np.zeros(0)
    extra = {
        "robot": config.name,
        "outcome": outcome,
        "frames replayed": f"{replay.played} / {len(episode.actions)}",
        "max tracking error": ", ".join(f"{name} {e:.1f}" for name, e in zip(recorded_joints, error)),
        "safety_interventions": replay.filter.interventions.as_dict(),
        "stop": [asdict(r) for r in session.stop_reports],
    }
    report(f"replay episode {args.episode}", loop.stats(), extra, args.stats_json)
    if failure is not None:
        print_error(failure)
    return 0 if failure is None and session.stopped_safely else 1
