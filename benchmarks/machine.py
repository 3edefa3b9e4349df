"""What the figures were measured on: without it a number means nothing to the next reader."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("feetech-servo-sdk", "numpy", "pyserial", "robot-runtime")


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    python: str
    os_kernel: str
    date_utc: str
    load_average_1_5_15: tuple[float, float, float]
    packages: dict[str, str]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _distribution() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "unknown distribution")
    except OSError:
        return "unknown distribution"


def describe_machine() -> Machine:
    """Call before any benchmark runs, so the load average is the machine's, not ours."""
    uname = platform.uname()
    return Machine(
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 0,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        os_kernel=f"{uname.system} {uname.release} ({_distribution()})",
        date_utc=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load_average_1_5_15=os.getloadavg(),
        packages={p: _version(p) for p in PACKAGES},
    )
