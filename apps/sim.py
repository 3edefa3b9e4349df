"""`robot-runtime sim FAMILY --robot R`: serve a robot's simulated hardware for any client until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from rich.table import Table

from apps.common import SimFault, add_robot_choice, console
from robot_runtime.config import ConfigError, load_robot_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sim", help="serve simulated hardware (e.g. a Feetech bus on a pty) until Ctrl-C")
    parser.add_argument("family", help="hardware family to simulate, e.g. feetech")
    add_robot_choice(parser)
    parser.add_argument("--fault", type=SimFault.parse, action="append", default=[], metavar="ARM:JOINT:FAULT[@S]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    arms = [a for a in config.followers + config.leaders if a.family.name == args.family]
    if not arms:
        raise ConfigError(f"{config.source}: no arm of family {args.family!r}")
    if config.sim is None:
        raise ConfigError(f"{config.source}: simulating needs a 'sim' section (start_pose and demo)")
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        simulated = {spec.label: sim for spec in arms for sim in spec.family.simulate([spec], config.sim, stack)}
        table = Table(title=f"simulated {args.family} hardware for {config.name}")
        for column in ("arm", "port", "calibration"):
            table.add_column(column)
        for label, sim in simulated.items():
            table.add_row(label, sim.address, str(getattr(sim.config, "calibration_dir", "")))
        console.print(table)
        for fault in args.fault:
            arm = simulated.get(fault.arm)
            if arm is None:
                raise ValueError(f"--fault: no simulated arm {fault.arm!r} (arms: {', '.join(simulated)})")
            threading.Timer(fault.at_s, arm.inject, (fault.joint, fault.fault)).start()
        for label, sim in simulated.items():
            print(f"{label} {sim.address}", flush=True)
        console.print("serving until Ctrl-C")
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
    return 0
