"""The `robot-runtime` command."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
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
from apps.common import UsageError, console, print_error
from calibration.store import CalibrationError
from cameras.base import CameraError
from recorders.dataset import DatasetError
from recorders.layout import DatasetFileError
from recorders.video import VideoError
from robot_runtime.config import ConfigError
from robot_runtime.policy.client import PolicyError
from robot_runtime.policy.mapping import MappingError
from robot_runtime.robot import ArmError

USAGE = 2
"""Exit code of a usage or config error: a bad option, robot YAML, calibration file or dataset file."""
FAILURE = 1
"""Exit code of a runtime failure: hardware, policy server, disk, or a run that did not end cleanly."""
INTERRUPTED = 130
BAD_INPUT = (ConfigError, CalibrationError, MappingError, DatasetFileError, UsageError)
RUNTIME_FAILURE = (ArmError, CameraError, DatasetError, VideoError, PolicyError, OSError, ValueError)

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
    with contextlib.suppress(io.UnsupportedOperation):  # run in-process with a stderr that has no descriptor
        faulthandler.enable(all_threads=True)  # a fatal signal leaves a trace on stderr; a control run's goes to its log
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
    except BAD_INPUT as exc:
        print_error(exc)
        return USAGE
    except RUNTIME_FAILURE as exc:
        if args.verbose:
            console.print_exception()
        print_error(exc)
        return FAILURE
    except KeyboardInterrupt:
        console.print("interrupted")
        return INTERRUPTED
    except Exception as exc:  # a fault in the runtime itself: a message, the traceback with -v
        if args.verbose:
            console.print_exception()
        print_error(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)")
        return FAILURE


if __name__ == "__main__":
    sys.exit(main())
