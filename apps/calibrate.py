"""`robot-runtime calibrate --robot R [--arm LABEL]`: calibrate one bus arm in a terminal UI and write a
LeRobot calibration that teleop, record and LeRobot itself then use."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from apps.arm_tool import tell_unsafe_arm_ends, tool_arm
from apps.calibrate_app import CalibrationApp
from apps.common import add_arm_choice, add_robot_choice, console
from calibration.procedure import CalibrationProcedure
from robot_runtime.config import load_robot_config
from robot_runtime.family_tools import CalibrateRequest


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("calibrate", help="calibrate a bus arm (homing and ranges) in a terminal UI")
    add_robot_choice(parser)
    add_arm_choice(parser)
    parser.add_argument("--port", help="serial port of the arm (default: the robot config's)")
    parser.add_argument(
        "--calibration-dir",
        type=Path,
        help="write <id>.json here (default: the config's calibration_dir, else LeRobot's calibration folder)",
    )
    parser.add_argument(
        "--sim", action="store_true", help="calibrate a simulated, never calibrated arm whose joints a simulated hand moves"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    spec, calibrate = tool_arm(config, args.arm, "calibrate", lambda tools: tools.calibrate)
    tell_unsafe_arm_ends(spec, simulated=args.sim)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        console.print("[red]calibrate is interactive: run it in a terminal (over SSH works too)[/]")
        return 2
    with contextlib.ExitStack() as stack:
        target = calibrate(spec.config, CalibrateRequest(args.port, args.calibration_dir, args.sim), stack)
        procedure = CalibrationProcedure(target.bus, target.path, full_turn=target.full_turn)
        stack.callback(procedure.abandon)  # a crash inside the app still puts back what the motors held
        title = f"calibrate {config.name} {spec.label} ({target.identity}) on {target.bus.port}"
        outcome = CalibrationApp(procedure, title, target.modes, target.on_step).run()
    if outcome is not None and outcome.written is not None:
        console.print(f"calibration written to the motors and {target.path}")
        return 0
    if outcome is not None and outcome.problem:
        console.print(f"[red]quit without writing, and the motors could not get back what they held: {outcome.problem}[/]")
        return 1
    restored = " (the motors got back what they held)" if outcome is not None and outcome.restored else ""
    console.print(f"quit without writing a calibration{restored}")
    return 0
