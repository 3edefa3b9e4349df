"""`robot-runtime replay`: drive the follower through a recorded episode's actions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from apps.common import UsageError, add_robot_options, number
from apps.dataset_output import tell_unsafe_ends
from apps.runner import ControlCommand, Outcome, RunOptions, run_control
from recorders.reader import DatasetReader
from robot_runtime.config import RobotConfig, load_robot_config
from robot_runtime.loop import Tick
from robot_runtime.replay import Replay
from robot_runtime.session import Session


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="drive the follower through a recorded episode's actions")
    add_robot_options(parser)
    parser.add_argument("--dataset", type=Path, required=True, help="dataset directory")
    parser.add_argument("--episode", type=number(int, at_least=0), required=True, help="episode index")
    parser.add_argument("--stats-json", type=Path, help="write the replay statistics to this JSON file")
    parser.set_defaults(func=run)


class ReplayCommand(ControlCommand):
    with_leaders = False
    with_cameras = False
    done_label = "episode replayed"

    def __init__(self, config: RobotConfig, dataset_path: Path, index: int) -> None:
        self.config = config
        self.dataset_path = dataset_path
        self.index = index
        tell_unsafe_ends(dataset_path)
        self.dataset = DatasetReader(dataset_path)
        self.episode = self.dataset.episode(index)
        self.recorded_joints = self.dataset.action_names
        self.title = f"replay episode {index}"
        self.replay: Replay

    @property
    def rate_hz(self) -> float:
        return self.dataset.fps

    @property
    def done(self) -> bool:
        return self.replay.done

    def start(self, session: Session) -> str:
        if self.recorded_joints != session.follower.feature_names:
            follower = f"{self.config.name}'s follower has {session.follower.feature_names}"
            raise UsageError(f"{self.dataset_path} records actions for {self.recorded_joints}, but {follower}")
        self.replay = Replay(session.follower, self.episode.actions, self.config.safety, self.dataset.fps)
        self.filter = self.replay.filter
        self.replay.start()
        what = f"episode {self.index} of {self.dataset_path} ({len(self.episode.actions)} frames, {self.episode.task!r})"
        return f"replaying {what} on {self.config.name}: Ctrl-C to stop"

    def tick(self, tick: Tick) -> None:
        self.replay.tick(tick)

    def finish(self, outcome: Outcome) -> tuple[bool, dict[str, Any]]:
        replay = self.replay
        tracking = "none: no frame was replayed"
        if replay.tracking_error:
            worst = np.max(replay.tracking_error, axis=0)
            tracking = ", ".join(f"{name} {e:.3g}" for name, e in zip(replay.tracking_labels, worst, strict=True))
        return True, {"frames replayed": f"{replay.played} / {len(self.episode.actions)}", "max tracking error": tracking}


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    return run_control(ReplayCommand(config, args.dataset, args.episode), config, RunOptions.from_args(args))
