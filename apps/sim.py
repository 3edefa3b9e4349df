"""`robot-runtime sim FAMILY --robot R`: serve the robot's simulated arms of one family, each on its real
transport (Feetech buses on pseudo-terminals, WidowX AI controllers on loopback addresses), for any
client, until Ctrl-C or SIGTERM. What it prints and the commands it takes: robot_runtime.sim_serve."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from apps.common import add_robot_choice, console
from robot_runtime.config import family_names, load_robot_config
from robot_runtime.sim_serve import COMMANDS, FamilySimulation, serve_family


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sim", help="serve a family's simulated arms on their real transports until Ctrl-C")
    parser.add_argument("family", help=f"the hardware family to simulate: {', '.join(family_names())}")
    add_robot_choice(parser)
    parser.add_argument(
        "--write-config", type=Path, metavar="PATH", help="also write the robot YAML pointed at the simulators (for --robot PATH)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    serve_family(config, args.family, write_config=args.write_config, tell=_tell)
    return 0


def _tell(simulation: FamilySimulation) -> None:
    table = Table(title=f"simulated {simulation.config.name} arms")
    for column in ("arm", "address", "config changes"):
        table.add_column(column)
    for label, arm in simulation.arms.items():
        entry = arm.key + "."
        changes = [f"{key.removeprefix(entry)}={value}" for key, value in simulation.overrides.items() if key.startswith(entry)]
        table.add_row(label, arm.simulated.address, "\n".join(changes))
    console.print(table)
    console.print(f"serving until Ctrl-C; commands on stdin, one a line: {COMMANDS}")
