"""A manifest per recording run (meta/runs/<run id>.json): what was recorded with which robot setup and
software, and the sha256 of every file the run wrote, so a copy of the dataset can be verified later."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import platform
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from recorders.atomic import write_json_atomic
from recorders.layout import Layout

PACKAGES = ("robot-runtime", "av", "pyarrow", "pandas", "numpy", "opencv-python-headless", "pyrealsense2", "feetech-servo-sdk")


def new_run_id() -> str:
    """Sortable by start time, unique across machines."""
    return f"{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    import av  # the FFmpeg libraries inside PyAV decide what the videos are

    versions.update(
        {f"ffmpeg {name}": ".".join(map(str, v)) if isinstance(v, tuple) else str(v) for name, v in av.library_versions.items()}
    )
    return versions


def write_manifest(layout: Layout, run_id: str, run: Mapping[str, Any], robot: Mapping[str, Any], files: Iterable[Path]) -> Path:
    """`run` says what happened (command, episodes, outcome); `robot` is the resolved robot config."""
    root = layout.root
    existing = sorted({p for p in files if p.exists()})
    manifest = {
        "run_id": run_id,
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "run": dict(run),
        "robot": dict(robot),
        "software": software_versions(),
        "files": {str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in existing},
    }
    path = layout.runs / f"{run_id}.json"
    write_json_atomic(path, manifest)
    return path


def verify(layout: Layout) -> list[str]:
    """Files whose content no longer matches the newest manifest that lists them, one line each."""
    newest: dict[str, dict[str, Any]] = {}
    for manifest in sorted(layout.runs.glob("*.json")):  # run ids sort by start time
        newest.update(json.loads(manifest.read_text())["files"])
    problems = []
    for name, expected in sorted(newest.items()):
        path = layout.root / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif sha256(path) != expected["sha256"]:
            problems.append(f"{name}: sha256 differs from the run manifest that wrote it")
    return problems
