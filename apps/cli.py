"""The `robot-runtime` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from rich.logging import RichHandler

from apps import (
    calibrate,
    dataset,
    eval_offline,
    find_cameras,
    find_port,
    record,
    replay,
    run,
    serve_policy,
    setup_motors,
    sim,
    teleop,
)
from apps.common import console, print_error
from calibration.store import CalibrationError
from cameras.base import CameraError
from recorders.dataset import DatasetError
from robot_runtime.config import ConfigError
from robot_runtime.policy.client import PolicyError
from robot_runtime.policy.mapping import MappingError
from robot_runtime.robot import ArmError

COMMANDS = (
    teleop, record, replay, run, serve_policy, eval_offline, dataset, sim, find_cameras, find_port, setup_motors, calibrate
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-runtime", description="Control runtime for robot arms.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM takes the same safe-stop path as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
    )
    signal.signal(signal.SIGTERM, _terminate)
    # A background job of a script starts with SIGINT ignored: `kill -INT` must still stop and park.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return args.func(args)
    except (ConfigError, CalibrationError, MappingError) as exc:
        print_error(exc)
        return 2
    except (ArmError, CameraError, DatasetError, PolicyError, ValueError) as exc:
        if args.verbose:
            console.print_exception()
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
