"""Options and output every command shares: --robot, --sim, --sim-fault, --no-cameras, --stats-json, the stats tables."""

from __future__ import annotations

import argparse
import functools
import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cameras.camera_set import CameraSetStats
from cameras.sim import SimCamera
from robot_runtime.config import MAX_RATE_HZ, RobotConfig, builtin_robot_names
from robot_runtime.loop import LoopStats
from robot_runtime.policy.client import normalize_url
from robot_runtime.session import Session

console = Console(stderr=True, highlight=False)


class UsageError(ValueError):
    """The command was asked for something it cannot do as given (exit code 2, as a bad option is)."""


def number(
    kind: type[int | float], *, above: float | None = None, at_least: float | None = None, at_most: float | None = None
) -> Callable[[str], float]:
    """An argparse `type` for a finite number in range: a bad value stops the command before anything starts,
    with argparse's one-line error naming the option."""
    bounds = [f"more than {above:g}"] if above is not None else []
    bounds += [f"at least {at_least:g}"] if at_least is not None else []
    bounds += [f"at most {at_most:g}"] if at_most is not None else []
    wanted = f"{'a whole number' if kind is int else 'a number'}{' ' if bounds else ''}{' and '.join(bounds)}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        in_range = (
            math.isfinite(value)
            and (above is None or value > above)
            and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most)
        )
        if not in_range:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in some of its messages
    return parse


def policy_url(text: str) -> str:
    """An argparse `type` for a policy server URL: a malformed one is a usage error before anything connects."""
    try:
        normalize_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


RATE_HZ = number(float, above=0, at_most=MAX_RATE_HZ)
SECONDS = number(float, above=0)
"""A duration or a timeout: zero would end or fail at once."""


@dataclass(frozen=True)
class SimFault:
    """`--sim-fault follower:wrist_flex:no_reply@3`: break a simulated joint 3 s into the run;
    `--sim-fault camera:wrist:stall@3`: stall (or disconnect) a simulated camera."""

    arm: str
    joint: str
    fault: str
    at_s: float

    @classmethod
    def parse(cls, text: str) -> SimFault:
        spec, _, at = text.partition("@")
        parts = spec.split(":")
        if len(parts) != 3 or not all(parts):
            raise argparse.ArgumentTypeError(
                f"--sim-fault {text!r}: expected ARM:JOINT:FAULT[@SECONDS], e.g. follower:wrist_flex:no_reply@3"
            )
        try:
            at_s = float(at) if at else 0.0
        except ValueError:
            at_s = math.nan
        if not (math.isfinite(at_s) and at_s >= 0):
            raise argparse.ArgumentTypeError(f"--sim-fault {text!r}: {at!r} is not a number of seconds from the start") from None
        return cls(parts[0], parts[1], parts[2], at_s)


def add_robot_choice(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """--robot and --set: which setup, and per-run changes to it."""
    builtin = ", ".join(builtin_robot_names())
    parser.add_argument("--robot", required=required, help=f"built-in robot name ({builtin}) or path to a robot YAML")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a robot config value, e.g. --set followers.0.port=/dev/ttyACM0 --set followers.0.id=my_arm",
    )


def add_arm_choice(parser: argparse.ArgumentParser) -> None:
    """--arm: which one arm of the setup a per-arm command (calibrate, setup-motors, find-port) works on."""
    parser.add_argument(
        "--arm", help="the arm's label in the setup, e.g. follower, leader, left_follower (default: the first follower)"
    )


def add_robot_options(parser: argparse.ArgumentParser) -> None:
    add_robot_choice(parser)
    parser.add_argument("--sim", action="store_true", help="replace every configured port with a simulator")
    parser.add_argument(
        "--sim-fault",
        type=SimFault.parse,
        action="append",
        default=[],
        metavar="ARM:JOINT:FAULT[@S]",
        help="with --sim: inject a fault into a simulated joint or camera after S seconds "
        "(e.g. follower:wrist_flex:no_reply@3, camera:wrist:stall@3)",
    )
    parser.add_argument("--no-cameras", action="store_true", help="run without the config's cameras")


def add_loop_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=RATE_HZ, help="control rate in Hz (default: the robot config's fps)")
    parser.add_argument("--duration", type=SECONDS, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--stats-json", type=Path, help="write the loop statistics to this JSON file")


def loop_rate_hz(args: argparse.Namespace, config: RobotConfig) -> float:
    """--fps when given (never a falsy 0: the option refuses it), else the robot config's rate."""
    return config.fps if args.fps is None else args.fps


@contextmanager
def scheduled_faults(session: Session, faults: list[SimFault]) -> Iterator[None]:
    """Arm the requested faults on timers; timers are cancelled when the block ends."""
    if faults and not session.sim:
        raise UsageError("--sim-fault needs --sim")
    timers = []
    for fault in faults:
        inject = _fault_target(session, fault)
        if fault.at_s == 0:
            inject()
        else:
            timers.append(threading.Timer(fault.at_s, inject))
    for timer in timers:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()


def _fault_target(session: Session, fault: SimFault) -> Callable[[], None]:
    """Check the fault names a simulated arm joint or camera and a fault it knows; return its trigger."""
    if fault.arm == "camera":
        camera = session.cameras.get(fault.joint)
        if not isinstance(camera, SimCamera):
            raise UsageError(
                f"--sim-fault: no simulated camera {fault.joint!r} (cameras: {', '.join(session.cameras) or 'none'})"
            )
        known, trigger = camera.faults, functools.partial(camera.inject, fault.fault)
    else:
        simulated = session.simulated.get(fault.arm)
        if simulated is None:
            raise UsageError(f"--sim-fault: no simulated arm {fault.arm!r} (arms: {', '.join(session.simulated)}, or 'camera')")
        known, trigger = simulated.faults, functools.partial(simulated.inject, fault.joint, fault.fault)
    if fault.fault not in known:
        raise UsageError(f"--sim-fault: unknown fault {fault.fault!r} (faults: {', '.join(known)})")
    return trigger


def print_error(error: object) -> None:
    """Errors are printed as plain text: a message with `[brackets]` must not be read as rich markup. Long
    lines are left whole for the terminal to wrap: a path in them stays one piece to copy or grep."""
    console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)


def print_warning(warning: object) -> None:
    console.print(f"[yellow]warning:[/] {escape(str(warning))}", soft_wrap=True)


@contextmanager
def status_line(render: Callable[[], str]) -> Iterator[None]:
    """A one-line live status (rich markup from `render`) refreshed a few times a second, only when
    stderr is a terminal: logs and pipes get the plain messages alone."""
    if not console.is_terminal:
        yield
        return
    with Live(console=console, refresh_per_second=4, transient=True, get_renderable=lambda: Text.from_markup(render())):
        yield


def report(
    title: str, stats: LoopStats, extra: dict[str, Any], stats_json: Path | None, cameras: CameraSetStats | None = None
) -> None:
    table = Table(title=title, show_header=False)
    rows = {
        "ticks": f"{stats.ticks}",
        "rate": f"{stats.achieved_hz:.2f} Hz (target {stats.target_hz:g})",
        "period p50 / p99 / max": f"{stats.period_p50_ms:.2f} / {stats.period_p99_ms:.2f} / {stats.period_max_ms:.2f} ms",
        "lateness p50 / p99": f"{stats.lateness_p50_ms:.2f} / {stats.lateness_p99_ms:.2f} ms",
        f"late ticks (> {stats.late_threshold_ms:.1f} ms)": f"{stats.late_ticks}",
        "missed deadlines": f"{stats.missed_deadlines}",
    }
    rows.update({k.replace("_", " "): str(v) for k, v in extra.items() if isinstance(v, (str, int, float))})
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    if cameras is not None and cameras.cameras:
        console.print(camera_table(cameras))
        extra = {**extra, "cameras": cameras.as_dict()}
    if stats_json is not None:
        stats_json.parent.mkdir(parents=True, exist_ok=True)
        stats_json.write_text(json.dumps({"loop": stats.as_dict(), **extra}, indent=2, default=str))


def camera_table(stats: CameraSetStats) -> Table:
    skew = f"skew across cameras p50 / p99 / max: {stats.skew_p50_ms:.1f} / {stats.skew_p99_ms:.1f} / {stats.skew_max_ms:.1f} ms"
    table = Table(title="cameras", caption=skew if len(stats.cameras) > 1 else None, box=box.SIMPLE_HEAD)
    for column in ("camera", "fps", "age p50/p99 ms", "dropped", "reused", "gaps", "reconnects"):
        table.add_column(column, no_wrap=True)
    for cam in stats.cameras:
        table.add_row(
            cam.name,
            f"{cam.achieved_fps:.1f}",
            f"{cam.age_p50_ms:.1f} / {cam.age_p99_ms:.1f}",
            str(cam.dropped),
            str(cam.reused),
            str(cam.device_gaps),
            str(cam.reconnects),
        )
    return table
