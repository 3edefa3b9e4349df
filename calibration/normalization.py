"""Raw encoder ticks to user units and back, with LeRobot's formulas so datasets and policies agree."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from calibration.store import Calibration


class NormMode(enum.StrEnum):
    DEGREES = "degrees"
    """(raw - mid) * 360 / max_res, mid the centre of the calibrated range; not clamped."""
    RANGE_M100_100 = "range_m100_100"
    """[range_min, range_max] mapped to [-100, 100], clamped."""
    RANGE_0_100 = "range_0_100"
    """[range_min, range_max] mapped to [0, 100], clamped (grippers)."""

    @property
    def unit(self) -> str:
        return "deg" if self is NormMode.DEGREES else "percent"


@dataclass(frozen=True)
class Normalizer:
    """Vectorised conversion for one arm's motors, built from its calibration."""

    modes: tuple[NormMode, ...]
    range_min: np.ndarray
    range_max: np.ndarray
    inverted: np.ndarray
    max_res: int
    is_degrees: np.ndarray
    is_m100: np.ndarray

    @classmethod
    def from_calibration(cls, calibration: Calibration, modes: tuple[NormMode, ...], resolution_ticks: int) -> Normalizer:
        cals = list(calibration.values())
        return cls(
            modes=modes,
            range_min=np.array([c.range_min for c in cals], dtype=np.float64),
            range_max=np.array([c.range_max for c in cals], dtype=np.float64),
            inverted=np.array([bool(c.drive_mode) for c in cals]),
            max_res=resolution_ticks - 1,
            is_degrees=np.array([m is NormMode.DEGREES for m in modes]),
            is_m100=np.array([m is NormMode.RANGE_M100_100 for m in modes]),
        )

    @property
    def units_per_tick(self) -> np.ndarray:
        """Scale of one encoder tick in each joint's unit (for velocities)."""
        percent = np.where(self.is_m100, 200.0, 100.0) / (self.range_max - self.range_min)
        return np.where(self.is_degrees, 360.0 / self.max_res, percent)

    def to_units(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        span = self.range_max - self.range_min
        fraction = (np.clip(raw, self.range_min, self.range_max) - self.range_min) / span
        m100 = np.where(self.inverted, -(fraction * 200 - 100), fraction * 200 - 100)
        p100 = np.where(self.inverted, 100 - fraction * 100, fraction * 100)
        degrees = (raw - (self.range_min + self.range_max) / 2) * 360 / self.max_res
        return np.where(self.is_degrees, degrees, np.where(self.is_m100, m100, p100))

    def to_raw(self, units: np.ndarray) -> np.ndarray:
        units = np.asarray(units, dtype=np.float64)
        span = self.range_max - self.range_min
        m100 = np.clip(np.where(self.inverted, -units, units), -100, 100)
        p100 = np.clip(np.where(self.inverted, 100 - units, units), 0, 100)
        fraction = np.where(self.is_m100, (m100 + 100) / 200, p100 / 100)
        ranged = fraction * span + self.range_min
        degrees = units * self.max_res / 360 + (self.range_min + self.range_max) / 2
        return np.rint(np.where(self.is_degrees, degrees, ranged)).astype(np.int64)

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint limits in user units: the calibrated range."""
        a, b = self.to_units(self.range_min), self.to_units(self.range_max)
        return np.minimum(a, b), np.maximum(a, b)
