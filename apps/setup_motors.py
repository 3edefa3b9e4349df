"""`robot-runtime setup-motors --robot R [--arm LABEL]`: give each motor of a new arm its id and the arm's
baud rate, one motor on the cable at a time (new servos all answer as id 1), gripper first."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

from rich.table import Table

from apps.arm_tool import tell_unsafe_arm_ends, tool_arm
from apps.common import add_arm_choice, add_robot_choice, console
from robot_runtime.config import load_robot_config
from robot_runtime.family_tools import MotorSetup, MotorSetupError, MotorSetupRequest, NamedMotor, SimulatedOperator
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
    spec, setup_motors = tool_arm(config, args.arm, "setup-motors", lambda tools: tools.setup_motors)
    tell_unsafe_arm_ends(spec, simulated=args.sim)
    done: list[MotorSetup] = []
    with contextlib.ExitStack() as stack:
        bench = setup_motors(spec.config, MotorSetupRequest(args.motors, args.port, args.sim), stack)
        motors = bench.motors
        console.print(
            f"setting up {len(motors)} motor(s) of {spec.label} ({bench.model}) on {bench.port}: "
            f"each gets its id and {bench.baud_bps} baud. "
            f"New motors all answer as id {bench.factory_id}, so only the motor being set up may be connected."
        )
        if bench.simulated:
            console.print(f"simulated bench: {bench.simulated.description}")
        for index, motor in enumerate(motors):
            console.print(f"connect ONLY the '{motor.name}' motor (id {motor.id}) to the controller board, then press Enter")
            try:
                _wait_for_operator(motor, bench.simulated)
                result = bench.set_up(motor)
            except ArmError as exc:
                if done:
                    console.print(_summary(done, bench.port))
                raise MotorSetupError(f"{exc}\nto go on once fixed: {_resume_command(args, spec.label, motors[index:])}") from exc
            done.append(result)
            found, to = result.found, f"id {result.id} at {result.baud_bps} baud"
            console.print(f"{motor.name}: found id {found.id} at {found.baud_bps} baud -> {to}, verified")
    console.print(_summary(done, bench.port))
    console.print(
        "next: daisy-chain the motors again (controller board, shoulder_pan, ... gripper), assemble the arm, and calibrate it: "
        f"robot-runtime calibrate --robot {args.robot} --arm {spec.label}"
    )
    return 0


def _wait_for_operator(motor: NamedMotor, simulated: SimulatedOperator | None) -> None:
    """Enter on stdin (a pipe works too). The simulated bench plugs the motor in itself and waits only
    for a person at a terminal, so it runs unattended in scripts and CI."""
    if simulated:
        simulated.connect_only(motor.name)
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


def _resume_command(args: argparse.Namespace, label: str, remaining: tuple[NamedMotor, ...]) -> str:
    words = ["robot-runtime", "setup-motors", "--robot", args.robot, "--arm", label]
    for override in args.overrides:
        words += ["--set", override]
    words += ["--sim"] if args.sim else ["--port", args.port] if args.port else []
    return shlex.join([*words, "--motor", *(m.name for m in remaining)])
