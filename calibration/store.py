"""LeRobot's calibration files: same schema, same default location, so existing calibrations are reused unchanged."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path


class CalibrationError(ValueError):
    """A calibration file is missing, malformed or does not match the arm; the message names the file."""


@dataclass(frozen=True)
class MotorCalibration:
    """One motor's entry in a LeRobot calibration JSON (field order as LeRobot writes it)."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


Calibration = dict[str, MotorCalibration]
"""Motor name to its calibration, in the arm's motor order."""


def calibration_root() -> Path:
    """LeRobot's calibration root: $HF_LEROBOT_CALIBRATION, else $HF_LEROBOT_HOME/calibration,
    else $HF_HOME/lerobot/calibration, else ~/.cache/huggingface/lerobot/calibration."""
    if explicit := os.environ.get("HF_LEROBOT_CALIBRATION"):
        return Path(explicit).expanduser()
    if lerobot_home := os.environ.get("HF_LEROBOT_HOME"):
        return Path(lerobot_home).expanduser() / "calibration"
    hf_home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    return hf_home / "lerobot" / "calibration"


def find_calibration_file(root: Path, kind: str, names: tuple[str, ...], arm_id: str) -> Path | None:
    """First existing `<root>/<kind>/<name>/<arm_id>.json` over the LeRobot class names tried in order
    (newer releases share one name for SO-100 and SO-101, older ones had one per model)."""
    for name in names:
        path = root / kind / name / f"{arm_id}.json"
        if path.is_file():
            return path
    return None


def load_calibration(path: Path) -> Calibration:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"calibration {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CalibrationError(f"calibration {path}: expected an object of motors, got {type(raw).__name__}")
    expected = [f.name for f in fields(MotorCalibration)]
    calibration: Calibration = {}
    for motor, entry in raw.items():
        if not isinstance(entry, dict) or sorted(entry) != sorted(expected):
            raise CalibrationError(f"calibration {path}: motor '{motor}' must have exactly the keys {expected}")
        if not all(isinstance(entry[k], int) and not isinstance(entry[k], bool) for k in expected):
            raise CalibrationError(f"calibration {path}: motor '{motor}' values must be integers")
        calibration[motor] = MotorCalibration(**{k: entry[k] for k in expected})
    return calibration


def save_calibration(path: Path, calibration: Calibration) -> None:
    """Write atomically (temp file then rename) so a crash never leaves a half-written calibration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({motor: asdict(cal) for motor, cal in calibration.items()}, indent=4)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(payload)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)
