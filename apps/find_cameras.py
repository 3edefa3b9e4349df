"""`robot-runtime find-cameras`: list attached UVC cameras and RealSenses with the config entry to paste
into a robot YAML (configs/robots/*.yaml, under `cameras:`)."""

from __future__ import annotations

import argparse
import json

import yaml
from rich.table import Table

from apps.common import console
from cameras.discovery import CaptureMode, Discovery, discover

NOTHING_FOUND_HINTS = (
    "check the USB cable and try another port (a RealSense needs USB 3)",
    "/dev/video* need the `video` group: sudo usermod -aG video $USER, then log in again",
    "a RealSense on Linux also needs Intel's udev rules to be opened without root",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("find-cameras", help="list attached UVC cameras and RealSenses, with config snippets")
    parser.add_argument("--json", action="store_true", help="print the listing as JSON on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    found = discover()
    if args.json:
        print(json.dumps(found.as_dict() | {"hints": list(NOTHING_FOUND_HINTS) if found.cameras == 0 else []}, indent=2))
        return 0
    show(found)
    return 0


def show(found: Discovery) -> None:
    for problem in found.problems:
        console.print(f"[yellow]warning:[/] {problem}")
    if found.cameras == 0:
        console.print("no cameras found")
        for hint in NOTHING_FOUND_HINTS:
            console.print(f"  - {hint}")
    snippets: dict[str, dict] = {}
    for device in found.uvc:
        if device.part_of_realsense:
            continue
        if device.capture is False:
            console.print(f"[dim]{device.node} ({device.name}): metadata node, not a camera[/]", soft_wrap=True)
            continue
        table = _table(f"UVC camera: {device.name}")
        table.add_row("device", "\n".join((device.node, *device.by_id, *device.by_path)))
        if device.usb_id:
            table.add_row("usb", f"{device.usb_id}" + (f" at {device.usb_speed_mbps} Mbit/s" if device.usb_speed_mbps else ""))
        table.add_row("modes", _modes(device.modes) or "-")
        if device.error:
            table.add_row("[red]error[/]", device.error)
        console.print(table)
        snippets[f"camera_{len(snippets) + 1}"] = device.config()
    for realsense in found.realsense:
        table = _table(f"RealSense: {realsense.name}")
        table.add_row("serial", realsense.serial)
        table.add_row("firmware", realsense.firmware)
        usb2_advice = "  [yellow]USB 2: use a USB 3 port and cable for full modes and rates[/]"
        table.add_row("usb", realsense.usb + (usb2_advice if realsense.on_usb2 else ""))
        table.add_row("colour", _modes(realsense.colour_modes) or "-")
        table.add_row("depth", _modes(realsense.depth_modes) or "-")
        console.print(table)
        snippets[f"camera_{len(snippets) + 1}"] = realsense.config()
    if snippets:
        console.print("paste into the robot's YAML and rename the cameras (names become observation.images.<name>):")
        # Never wrapped or cropped, so it pastes as printed.
        console.print(yaml.safe_dump({"cameras": snippets}, sort_keys=False), soft_wrap=True, markup=False, highlight=False)


def _table(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # paths fold whole instead of being cut short
    return table


def _modes(modes: tuple[CaptureMode, ...]) -> str:
    lines = []
    for mode in modes:
        rates = f"{min(mode.fps):g}-{max(mode.fps):g}" if mode.fps_range else "/".join(f"{fps:g}" for fps in mode.fps)
        lines.append(f"{mode.fourcc} {mode.width}x{mode.height} @ {rates or '?'} fps")
    return "\n".join(lines)
