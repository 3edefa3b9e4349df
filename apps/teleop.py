"""`robot-runtime teleop`: mirror the leader arm(s) onto the follower arm(s) at a fixed rate."""

from __future__ import annotations

import argparse

from apps.common import add_loop_options, add_robot_options, loop_rate_hz
from apps.runner import ControlCommand, RunOptions, run_control, where
from robot_runtime.config import ConfigError, RobotConfig, load_robot_config
from robot_runtime.loop import Tick
from robot_runtime.session import Session
from robot_runtime.teleop import Teleop


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("teleop", help="mirror the leader arm(s) onto the follower arm(s)")
    add_robot_options(parser)
    add_loop_options(parser)
    parser.set_defaults(func=run)


class TeleopCommand(ControlCommand):
    def __init__(self, config: RobotConfig, rate_hz: float) -> None:
        if not config.leaders:
            raise ConfigError(f"{config.source}: teleop needs at least one entry under 'leaders'")
        self.config = config
        self.title = f"teleop {config.name}"
        self._rate_hz = rate_hz
        self.teleop: Teleop

    @property
    def rate_hz(self) -> float:
        return self._rate_hz

    def start(self, session: Session) -> str:
        assert session.leader is not None
        self.teleop = Teleop(session.leader, session.follower, self.config.safety, self.rate_hz, session.cameras)
        self.filter = self.teleop.filter
        self.teleop.start()
        cameras = f" with cameras {', '.join(session.cameras)}" if session.cameras else ""
        return f"teleop [bold]{self.config.name}[/] on {where(session)}{cameras} at {self.rate_hz:g} Hz: Ctrl-C to stop"

    def tick(self, tick: Tick) -> None:
        self.teleop.tick(tick)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    return run_control(TeleopCommand(config, loop_rate_hz(args, config)), config, RunOptions.from_args(args))
