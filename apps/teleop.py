"""`robot-runtime teleop`: mirror the leader arm(s) onto the follower arm(s) at a fixed rate."""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict

from apps.common import (
    STOP_KEYS_HELP,
    add_loop_options,
    add_robot_options,
    console,
    handle_stop_keys,
    print_error,
    report,
    scheduled_faults,
    stopped_outcome,
)
from cameras.base import CameraError
from robot_runtime.config import ConfigError, load_robot_config
from robot_runtime.keys import KeyReader
from robot_runtime.loop import FixedRateLoop
from robot_runtime.robot import ArmError
from robot_runtime.session import Session
from robot_runtime.teleop import Teleop

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("teleop", help="mirror the leader arm(s) onto the follower arm(s)")
    add_robot_options(parser)
    add_loop_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    if not config.leaders:
        raise ConfigError(f"{config.source}: teleop needs at least one entry under 'leaders'")
    loop = FixedRateLoop(args.fps or config.fps)
    failure: Exception | None = None
    outcome = "duration reached" if args.duration else "stopped"
    with Session(config, sim=args.sim, with_cameras=not args.no_cameras) as session:
        assert session.leader is not None
        teleop = Teleop(session.leader, session.follower, config.safety, loop.rate_hz, session.cameras)
        teleop.start()
        where = "simulated hardware" if args.sim else ", ".join(spec.config.port for spec in config.followers + config.leaders)
        cameras = f" with cameras {', '.join(session.cameras)}" if session.cameras else ""
        console.print(f"teleop [bold]{config.name}[/] on {where}{cameras} at {loop.rate_hz:g} Hz: Ctrl-C to stop")
        with scheduled_faults(session, args.sim_fault), KeyReader() as keys:
            if keys.enabled:
                console.print(STOP_KEYS_HELP)

            def tick(t):  # noqa: ANN001 - the loop's Tick
                handle_stop_keys(keys.poll(), teleop.filter, loop)
                teleop.tick(t)

            try:
                loop.run(tick, duration_s=args.duration)
                outcome = stopped_outcome(teleop.filter, outcome)
            except KeyboardInterrupt:
                outcome = "interrupted (Ctrl-C)"
            except (ArmError, CameraError) as exc:
                failure, outcome = exc, "hardware error"
            except Exception as exc:  # still park, report and exit non-zero; -v shows the traceback
                log.exception("teleop stopped by an unexpected error")
                failure, outcome = exc, f"error ({type(exc).__name__})"
        console.print("parking the follower and switching torque off ...")
    extra = {
        "robot": config.name,
        "simulated": args.sim,
        "outcome": outcome,
        "safety_interventions": teleop.filter.interventions.as_dict(),
        "stop": [asdict(r) for r in session.stop_reports],
    }
    report(f"teleop {config.name}", loop.stats(), extra, args.stats_json, session.cameras.stats())
    for stop in session.stop_reports:
        console.print(stop.describe(), style=None if stop.torque_safe else "red")
    if failure is not None:
        print_error(failure)
    return 0 if failure is None and session.stopped_safely else 1
