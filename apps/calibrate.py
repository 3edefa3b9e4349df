"""`robot-runtime calibrate --robot R [--arm LABEL]`: calibrate one bus arm in a terminal UI and write a
LeRobot calibration that teleop, record and LeRobot itself then use."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from apps.calibrate_app import CalibrationApp
from apps.common import add_arm_choice, add_robot_choice, console, select_arm
from calibration.procedure import CalibrationProcedure, Step
from drivers.feetech.calibration import FeetechCalibrationBus, calibration_path
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.models import norm_modes
from drivers.feetech.sim_calibration import CalibrationBench, uncalibrated_arm
from robot_runtime.config import load_robot_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("calibrate", help="calibrate a bus arm (homing and ranges) in a terminal UI")
    add_robot_choice(parser)
    add_arm_choice(parser)
    parser.add_argument("--port", help="serial port of the arm (default: the robot config's)")
    parser.add_argument(
        "--calibration-dir", type=Path, help="write <id>.json here (default: the config's calibration_dir, else LeRobot's calibration folder)"
    )
    parser.add_argument("--sim", action="store_true", help="calibrate a simulated, never calibrated arm whose joints a simulated hand moves")
    parser.set_defaults(func=run)


def sim_operator(bench: CalibrationBench):
    """The simulated hand: joints rest mid-range for homing and sweep their travel while ranges record."""

    def on_step(step: Step) -> None:
        if step is Step.RANGES:
            bench.sweep()
        elif step in (Step.HOMING, Step.REVIEW):
            bench.hold_mid_range()

    return on_step


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    spec = select_arm(config, args.arm, "feetech")
    arm: FeetechArmConfig = spec.config  # type: ignore[assignment]
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        console.print("[red]calibrate is interactive: run it in a terminal (over SSH works too)[/]")
        return 2
    model = arm.arm_model
    with contextlib.ExitStack() as stack:
        on_step = None
        port = args.port or arm.port
        if args.sim:
            bench = uncalibrated_arm(model.motors, stack)
            port, on_step = bench.port, sim_operator(bench)
        bus = arm.bus(port)
        bus.open()
        stack.callback(bus.close)
        path = calibration_path(arm, args.calibration_dir)
        procedure = CalibrationProcedure(FeetechCalibrationBus(bus), path, full_turn=model.full_turn)
        stack.callback(procedure.abandon)  # a crash inside the app still puts back what the motors held
        modes = norm_modes([m.name for m in model.motors], arm.body_norm)
        title = f"calibrate {config.name} {spec.label} ({model.name}, id '{arm.id}') on {port}"
        outcome = CalibrationApp(procedure, title, modes, on_step).run()
    if outcome is not None and outcome.written is not None:
        console.print(f"calibration written to the motors and {path}")
        return 0
    if outcome is not None and outcome.problem:
        console.print(f"[red]quit without writing, and the motors could not get back what they held: {outcome.problem}[/]")
        return 1
    restored = " (the motors got back what they held)" if outcome is not None and outcome.restored else ""
    console.print(f"quit without writing a calibration{restored}")
    return 0
