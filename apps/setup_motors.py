"""`robot-runtime setup-motors --robot R [--arm LABEL]`: give each motor of a new arm its id and the arm's
baud rate, one motor on the cable at a time (new servos all answer as id 1), gripper first."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

from rich.table import Table

from apps.common import add_arm_choice, add_robot_choice, console, select_arm
from drivers.feetech.bus import Motor
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.setup import MotorSetup, MotorSetupError, assign, baud_code, find_single_motor, setup_order
from drivers.feetech.sim_factory import FACTORY_BAUD_BPS, FACTORY_ID, REUSED_BAUD_BPS, REUSED_MOTOR, FactoryBench
from robot_runtime.config import load_robot_config
from robot_runtime.robot import ArmError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("setup-motors", help="give each motor of a new arm its id and baud rate, one motor at a time")
    add_robot_choice(parser)
    add_arm_choice(parser)
    parser.add_argument(
        "--motor",
        dest="motors",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="set up only these motors, e.g. a replaced servo (default: every motor of the arm, gripper first)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", help="the controller board's serial port (default: the arm's port in the robot config)")
    where.add_argument("--sim", action="store_true", help="a simulated bench of factory-fresh motors instead of hardware")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    spec = select_arm(config, args.arm, "feetech")
    arm: FeetechArmConfig = spec.config  # type: ignore[assignment]
    motors = setup_order(arm.arm_model.motors, args.motors)
    baud_code(arm.baudrate)  # a rate the servos cannot take fails before any motor is touched
    done: list[MotorSetup] = []
    with contextlib.ExitStack() as stack:
        bench = stack.enter_context(FactoryBench([m.name for m in arm.arm_model.motors])) if args.sim else None
        port = bench.simulator.port_path if bench else args.port or arm.port
        bus = arm.bus(port, motors=())
        bus.open()
        stack.callback(bus.close)
        console.print(
            f"setting up {len(motors)} motor(s) of {spec.label} ({arm.model}) on {port}: each gets its id and {arm.baudrate} baud. "
            "New motors all answer as id 1, so only the motor being set up may be connected."
        )
        if bench:
            console.print(
                f"simulated bench: factory-fresh motors (id {FACTORY_ID}, {FACTORY_BAUD_BPS} baud), "
                f"the {REUSED_MOTOR} one reused at {REUSED_BAUD_BPS} baud"
            )
        for index, motor in enumerate(motors):
            console.print(f"connect ONLY the '{motor.name}' motor (id {motor.id}) to the controller board, then press Enter")
            try:
                _wait_for_operator(motor, bench)
                found = find_single_motor(bus, motor.name)
                result = assign(bus, motor, found, arm.baudrate)
            except ArmError as exc:
                if done:
                    console.print(_summary(done, port))
                raise MotorSetupError(f"{exc}\nto go on once fixed: {_resume_command(args, spec.label, motors[index:])}") from exc
            done.append(result)
            console.print(f"{motor.name}: found id {found.id} at {found.baud_bps} baud -> id {result.id} at {result.baud_bps} baud, verified")
    console.print(_summary(done, port))
    console.print(
        "next: daisy-chain the motors again (controller board, shoulder_pan, ... gripper), assemble the arm, and calibrate it: "
        f"robot-runtime calibrate --robot {args.robot} --arm {spec.label}"
    )
    return 0


def _wait_for_operator(motor: Motor, bench: FactoryBench | None) -> None:
    """Enter on stdin (a pipe works too). The simulated bench plugs the motor in itself and waits only
    for a person at a terminal, so it runs unattended in scripts and CI."""
    if bench:
        bench.connect_only(motor.name)
        console.print(f"(simulated operator: only the '{motor.name}' motor is connected now)")
        if not sys.stdin.isatty():
            return
    if not sys.stdin.readline():
        raise MotorSetupError(
            f"stdin closed before Enter was pressed for the '{motor.name}' motor: run setup-motors in a terminal "
            "(or pipe one line per motor)"
        )


def _summary(done: list[MotorSetup], port: str) -> Table:
    table = Table(title=f"motors set up on {port}")
    for column in ("motor", "found", "set to", "model", "EEPROM"):
        table.add_column(column)
    for setup in done:
        table.add_row(
            setup.name,
            f"id {setup.found.id} @ {setup.found.baud_bps}",
            f"id {setup.id} @ {setup.baud_bps}",
            str(setup.found.model_number),
            "locked",
        )
    return table


def _resume_command(args: argparse.Namespace, label: str, remaining: list[Motor]) -> str:
    words = ["robot-runtime", "setup-motors", "--robot", args.robot, "--arm", label]
    for override in args.overrides:
        words += ["--set", override]
    words += ["--sim"] if args.sim else ["--port", args.port] if args.port else []
    return shlex.join([*words, "--motor", *(m.name for m in remaining)])
