"""Which serial port is which USB adapter: pyserial's listing with udev's stable names for each port,
and a watch that finds the port a user unplugs and plugs back in (ttyACM0 may come back as ttyACM1;
its /dev/serial/by-id link does not change)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from serial.tools.list_ports import comports
from serial.tools.list_ports_common import ListPortInfo

from robot_runtime.robot import ArmError

SERIAL_LINKS = Path("/dev/serial")
"""Where udev keeps stable names: by-id/ (vendor, product and serial number) and by-path/ (the USB socket)."""

DIALOUT_FIX = "add yourself to the dialout group (sudo usermod -aG dialout $USER, then log in again)"
"""How a Linux user gets to open serial ports without root."""

POLL_S = 0.2
"""How often the watch lists the ports: quick enough that an unplug and replug are seen as two changes."""

SETTLE_S = 0.5
"""udev adds the by-id link (and the dialout permissions) a moment after the device node appears."""

PortSource = Callable[[], Sequence["SerialPort"]]
"""Lists the serial ports present now: the real ones, or a simulated bench's."""


class PortWatchTimeout(ArmError):
    """Nobody unplugged or plugged back an adapter in time; the message says what to check."""


@dataclass(frozen=True)
class SerialPort:
    """One serial port and the USB adapter behind it."""

    device: str
    description: str
    manufacturer: str | None = None
    product: str | None = None
    serial_number: str | None = None
    usb_id: str | None = None
    """vendor:product in hex, e.g. 1a86:55d3 (CH343) or 0403:6014 (FTDI)."""
    location: str | None = None
    """The USB bus and hub ports, e.g. 1-2:1.0."""
    by_id: str | None = None
    by_path: str | None = None

    @property
    def stable_path(self) -> str:
        """The name to put in a config. by-id survives replugging into any socket, but adapters without a
        serial number (the CH340 1a86:7523) all get the same by-id name, so a second identical adapter
        would take it over: for those, by-path, which holds while the cable stays in the same socket."""
        if self.serial_number and self.by_id:
            return self.by_id
        return self.by_path or self.by_id or self.device

    @classmethod
    def from_port_info(cls, info: ListPortInfo) -> SerialPort:
        return cls(
            device=info.device,
            description=info.description,
            manufacturer=info.manufacturer,
            product=info.product,
            serial_number=info.serial_number,
            usb_id=f"{info.vid:04x}:{info.pid:04x}" if info.vid is not None and info.pid is not None else None,
            location=info.location,
        )


@dataclass(frozen=True)
class Replug:
    """What a watch saw: the ports that went away, then the ports that came (back)."""

    unplugged: tuple[SerialPort, ...]
    replugged: tuple[SerialPort, ...]


def links_to(directory: Path) -> dict[str, str]:
    """Resolved device -> the symlink in `directory` pointing to it; empty when the folder does not exist
    (no udev, macOS, or no adapter attached)."""
    if not directory.is_dir():
        return {}
    links: dict[str, str] = {}
    for link in sorted(directory.iterdir()):
        if link.is_symlink():
            links.setdefault(os.path.realpath(link), str(link))
    return links


def with_links(ports: Sequence[SerialPort], links_root: Path = SERIAL_LINKS) -> list[SerialPort]:
    """The ports with their by-id and by-path links from `links_root`, sorted by device."""
    by_id, by_path = links_to(links_root / "by-id"), links_to(links_root / "by-path")
    return sorted(
        (
            dataclasses.replace(
                port, by_id=by_id.get(os.path.realpath(port.device)), by_path=by_path.get(os.path.realpath(port.device))
            )
            for port in ports
        ),
        key=lambda port: port.device,
    )


def list_serial_ports(links_root: Path = SERIAL_LINKS) -> list[SerialPort]:
    """The USB serial ports attached now, and any other port a link in `links_root` leads to: none in
    /dev/serial, where udev links USB adapters only, but a folder of one's own may link, say, the pty that
    socat makes for a serial server's port. Built-in UARTs (ttyS*) are left out: no arm's adapter is one,
    and pyserial lists dozens of them on some PCs."""
    usb = [SerialPort.from_port_info(info) for info in comports() if info.vid is not None]
    listed = {os.path.realpath(port.device) for port in usb}
    linked = {
        device
        for kind in ("by-id", "by-path")
        for device in links_to(links_root / kind)
        if device not in listed and os.path.exists(device)
    }
    return with_links(usb + [SerialPort(device, "") for device in linked], links_root)


def watch_replug(
    list_ports: PortSource,
    before: Sequence[SerialPort],
    timeout_s: float,
    *,
    on_unplugged: Callable[[tuple[SerialPort, ...]], None] = lambda ports: None,
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Replug:
    """Poll until ports present in `before` disappear (then call `on_unplugged` with them), then until ports
    appear; each wait gives up after `timeout_s`. With nothing in `before`, only waits for a port to appear.

    The second wait compares with the last list before the unplug, less the unplugged ports: an adapter
    plugged in earlier is not taken for the arm, and a replug fast enough to land in the same poll as the
    unplug is still seen. A port that went and came back between two polls is not."""
    unplugged: tuple[SerialPort, ...] = ()
    remaining: list[SerialPort] = []
    if before:
        unplugged, last_quiet = _wait(list_ports, before, _gone, timeout_s, poll_s, clock, sleep, _unplug_timeout)
        on_unplugged(unplugged)
        remaining = [port for port in last_quiet if port.device not in {gone.device for gone in unplugged}]
    appeared, _ = _wait(list_ports, remaining, _new, timeout_s, poll_s, clock, sleep, lambda t: _replug_timeout(t, unplugged))
    sleep(SETTLE_S)
    settled = {port.device: port for port in list_ports()}
    return Replug(unplugged, tuple(settled.get(port.device, port) for port in appeared))


def _gone(baseline: Sequence[SerialPort], now: Sequence[SerialPort]) -> tuple[SerialPort, ...]:
    present = {port.device for port in now}
    return tuple(port for port in baseline if port.device not in present)


def _new(baseline: Sequence[SerialPort], now: Sequence[SerialPort]) -> tuple[SerialPort, ...]:
    known = {port.device for port in baseline}
    return tuple(port for port in now if port.device not in known)


def _wait(
    list_ports: PortSource,
    baseline: Sequence[SerialPort],
    changed: Callable[[Sequence[SerialPort], Sequence[SerialPort]], tuple[SerialPort, ...]],
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    timeout_error: Callable[[float], PortWatchTimeout],
) -> tuple[tuple[SerialPort, ...], Sequence[SerialPort]]:
    """The ports `changed` finds against `baseline`, and the last list polled before they did."""
    deadline_s = clock() + timeout_s
    last_quiet = baseline
    while not (found := changed(baseline, listed := list_ports())):
        if clock() >= deadline_s:
            raise timeout_error(timeout_s)
        last_quiet = listed
        sleep(poll_s)
    return found, last_quiet


def _unplug_timeout(timeout_s: float) -> PortWatchTimeout:
    return PortWatchTimeout(
        f"no serial port disappeared within {timeout_s:g} s: check that the arm's USB cable is plugged into this "
        "computer (its adapter must be among the ports listed first), unplug that cable at the computer or at the "
        "board (switching the servo power off is not enough), and in a virtual machine or WSL that the USB device "
        "is passed through (WSL: usbipd attach)"
    )


def _replug_timeout(timeout_s: float, unplugged: tuple[SerialPort, ...]) -> PortWatchTimeout:
    went = f"{', '.join(port.device for port in unplugged)} disappeared but " if unplugged else ""
    return PortWatchTimeout(
        f"{went}no serial port appeared within {timeout_s:g} s: plug the cable (back) in, use a data cable (a "
        "charge-only cable has no data lines), and look at `sudo dmesg | tail`: it shows whether the kernel saw "
        "the adapter (on Ubuntu, brltty takes CH340 adapters away at once: sudo apt remove brltty)"
    )
