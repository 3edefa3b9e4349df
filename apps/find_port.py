"""`robot-runtime find-port`: which serial port is the arm. Lists the USB serial ports, then watches the
list while the user unplugs the arm's cable and plugs it back (no Enter needed): the port that went and
came back is the arm, named by its stable /dev/serial link. With --robot it pings the arm's motors there
and prints the config change."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from apps.arm_tool import tool_arm
from apps.common import add_arm_choice, add_robot_choice, console, print_error
from robot_runtime.config import ArmSpec, ConfigError, RobotConfig, load_robot_config
from robot_runtime.family_tools import ArmPorts, FindPort, FindPortRequest, MotorCheck, UsbBench
from robot_runtime.ports import DIALOUT_FIX, SERIAL_LINKS, PortSource, Replug, SerialPort, list_serial_ports, watch_replug

NOTHING_FOUND_HINTS = (
    "check the USB cable: a charge-only cable has no data lines",
    "on Ubuntu, brltty takes CH340 adapters (1a86:7523) away as soon as they appear: sudo apt remove brltty",
    "`sudo dmesg | tail` right after plugging in shows whether the kernel saw the adapter",
    "in a virtual machine or WSL, pass the USB device through (WSL: usbipd attach)",
)

SIM_ROBOT = "so100"
"""The robot whose follower --sim puts behind the simulated adapter when no --robot is given."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "find-port", help="find the arm's serial port: unplug its USB cable and plug it back when asked"
    )
    add_robot_choice(parser, required=False)
    add_arm_choice(parser)
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=60.0,
        help="give up when no port disappears (or appears) within this many seconds (default 60)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--serial-links",
        type=_folder,
        default=SERIAL_LINKS,
        metavar="DIR",
        help=f"the folder of stable port names (by-id/, by-path/) to read (default {SERIAL_LINKS}, where udev makes them); "
        "a port linked there is watched even when it is no USB adapter, e.g. a serial server's port that socat links in",
    )
    where.add_argument(
        "--sim", action="store_true", help="a simulated USB bench whose operator unplugs and replugs a simulated arm"
    )
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Target:
    """The arm of a robot config whose port is looked for: its motors are pinged on the port found."""

    config: RobotConfig
    arm: ArmSpec

    @property
    def key(self) -> str:
        """The arm's place in the config as --set spells it: followers.0, leaders.1."""
        groups = (("followers", self.config.followers), ("leaders", self.config.leaders))
        return next(f"{group}.{index}" for group, arms in groups for index, arm in enumerate(arms) if arm is self.arm)


def _folder(text: str) -> Path:
    """--serial-links names a folder that exists: a mistyped one would quietly watch nothing there."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder (udev's is {SERIAL_LINKS}, once an adapter is plugged in)")
    return Path(text)


def run(args: argparse.Namespace) -> int:
    target = _target(args)
    with contextlib.ExitStack() as stack:
        arm = _arm_ports(target, args.sim, stack)
        bench = arm.bench if arm else None
        ports = bench.ports if bench else functools.partial(list_serial_ports, args.serial_links)
        replug = find(ports, args.timeout_s, bench)
        checks = {port.device: arm.check(port.stable_path) for port in replug.replugged} if arm and target else {}
    for check in checks.values():
        show_check(check)
    port = _the_arm(replug.replugged, checks)
    if port is None:
        how = (
            "no single one of them has the arm's motors answering"
            if target
            else "pass --robot to ping the arm's motors on each"
        )
        print_error(
            f"{len(replug.replugged)} ports appeared: unplug only the arm's cable (not a hub it shares) and run again, or {how}"
        )
        return 1
    show_advice(port, target, simulated=bench is not None)
    problem = checks[port.device].problem if target else None
    if problem:
        print_error(problem)
        return 1
    return 0


def _target(args: argparse.Namespace) -> Target | None:
    if args.robot is None:
        if args.arm or args.overrides:
            raise ConfigError("--arm and --set need --robot: they pick an arm of a robot config")
        return None
    config = load_robot_config(args.robot, args.overrides)
    return Target(config, _find_port_hook(config, args.arm)[0])


def _find_port_hook(config: RobotConfig, label: str | None) -> tuple[ArmSpec, FindPort]:
    return tool_arm(config, label, "find-port", lambda tools: tools.find_port)


def _arm_ports(target: Target | None, simulate: bool, stack: contextlib.ExitStack) -> ArmPorts | None:
    """The family's side: the motor check on the arm's port, and under --sim the bench it is on (without
    --robot, the bench of SIM_ROBOT's follower)."""
    if target is None and not simulate:
        return None
    config, label = (target.config, target.arm.label) if target else (load_robot_config(SIM_ROBOT, []), None)
    spec, find_port = _find_port_hook(config, label)
    return find_port(spec.config, FindPortRequest(simulate), stack)


def find(list_ports: PortSource, timeout_s: float, bench: UsbBench | None = None) -> Replug:
    """Show the ports, ask for the unplug (or, with none attached, the plug-in), and report what went and came."""
    before = list_ports()
    if before:
        console.print(port_table(before))
        console.print("[bold]unplug the arm's USB cable now[/] (no need to press Enter; Ctrl-C to stop)")
        if bench:
            bench.unplug_soon()
    else:
        console.print("no USB serial ports found")
        for hint in NOTHING_FOUND_HINTS:
            console.print(f"  - {escape(hint)}")
        console.print("[bold]plug the arm's USB cable in now[/] (Ctrl-C to stop)")
    replug = watch_replug(list_ports, before, timeout_s, on_unplugged=functools.partial(_show_unplugged, bench=bench))
    _show_replugged(replug)
    return replug


def port_table(ports: Sequence[SerialPort]) -> Table:
    table = Table(title="USB serial ports", title_justify="left")
    for column in ("port", "description", "usb id", "serial number", "stable name"):
        table.add_column(column, overflow="fold")
    for port in ports:
        cells = (port.device, port.description, port.usb_id, port.serial_number, port.stable_path)
        table.add_row(*(escape(text or "-") for text in cells))
    return table


def describe(port: SerialPort) -> str:
    details = ", ".join(filter(None, (port.description, port.usb_id, port.serial_number and f"serial {port.serial_number}")))
    return escape(f"{port.device} ({details})" if details else port.device)


def _show_unplugged(ports: tuple[SerialPort, ...], bench: UsbBench | None) -> None:
    if len(ports) == 1:
        console.print(f"disappeared: {describe(ports[0])}", soft_wrap=True)
    else:
        console.print(f"{len(ports)} ports disappeared at once (a USB hub, or a board with two adapters?):")
        for port in ports:
            console.print(f"  - {describe(port)}", soft_wrap=True)
    console.print(f"[bold]plug {'it' if len(ports) == 1 else 'them'} back in[/]")
    if bench:
        bench.plug_in_soon()


def _show_replugged(replug: Replug) -> None:
    if len(replug.replugged) > 1:
        console.print(f"{len(replug.replugged)} ports appeared at once:")
    was = [port.device for port in replug.unplugged]
    for port in replug.replugged:
        renamed = ""
        if was and port.device not in was:
            renamed = f" [yellow](was {escape(', '.join(was))}: device names change on replug)[/]"
        console.print(f"appeared: {describe(port)}{renamed}", soft_wrap=True)
        console.print(f"  stable name: {escape(port.stable_path)} ({_why_stable(port)})", soft_wrap=True)
        if not os.access(port.device, os.R_OK | os.W_OK):
            console.print(
                f"  [yellow]you cannot open {escape(port.device)} yet:[/] {DIALOUT_FIX}",
                soft_wrap=True,
            )


def _why_stable(port: SerialPort) -> str:
    if port.stable_path == port.by_id:
        return "by-id: the same after replugging into any USB socket, unlike the device name"
    if port.stable_path == port.by_path:
        return (
            "by-path: the adapter has no serial number, so an identical second adapter would take its by-id name; "
            "this one holds while the cable stays in the same USB socket"
        )
    return "no /dev/serial link for it: the device name may change after a replug or a reboot"


def show_check(check: MotorCheck) -> None:
    console.print(f"motors on {escape(check.port)} at {check.baud_bps} baud:", soft_wrap=True)
    table = Table()
    for column in ("motor", "id", "answers"):
        table.add_column(column)
    for motor in sorted(check.answering + check.missing, key=lambda m: m.id):
        table.add_row(motor.name, str(motor.id), "yes" if motor in check.answering else "[red]no[/]")
    console.print(table)
    if not check.problem:
        console.print(f"all {len(check.answering)} motors answer")
    elif not check.answering:
        console.print(
            f"no motor answers at {check.baud_bps} baud: is the servo power supply on, and are the motor IDs and "
            "baud rate set (robot-runtime setup-motors)?"
        )


def _the_arm(ports: tuple[SerialPort, ...], checks: dict[str, MotorCheck]) -> SerialPort | None:
    """The one port that appeared, or of several, the one port where the arm's motors answer."""
    if len(ports) == 1:
        return ports[0]
    answering = [port for port in ports if port.device in checks and checks[port.device].answering]
    return answering[0] if len(answering) == 1 else None


def show_advice(port: SerialPort, target: Target | None, *, simulated: bool) -> None:
    """The config change, printed unwrapped so it pastes as printed."""
    path = port.stable_path
    key = target.key if target else "followers.0"
    lasts = " (simulated: this link exists only while find-port --sim runs)" if simulated else ""
    console.print(f"the arm is on {escape(path)}{lasts}", soft_wrap=True)
    if target:
        console.print(f"use it for the {target.arm.label} of {target.config.name}:")
    else:
        console.print(
            "use it as the arm's port in the robot config (leaders.N for a leader; --robot R picks the key and pings the motors):"
        )
    console.print(f"  --set {key}.port={path}", soft_wrap=True, markup=False, highlight=False)
    where = f"{target.config.source}, the {target.arm.label} entry under {key.split('.')[0]}" if target else "the arm's entry"
    console.print(f"or in {escape(str(where))}:", soft_wrap=True)
    console.print(f"    port: {path}", soft_wrap=True, markup=False, highlight=False)
