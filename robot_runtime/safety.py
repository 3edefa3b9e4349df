"""The filter every commanded target passes before it reaches an arm: finite values only, joint limits,
and a bounded step per tick. Each intervention is counted so a run reports how often it stepped in."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Interventions:
    rejected: int = 0
    """Targets that were not finite or had the wrong shape: the previous target was held instead."""
    limited: int = 0
    """Targets clamped into the joint limits."""
    step_clipped: int = 0
    """Targets that moved further than max_step in one tick."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SafetyFilter:
    def __init__(self, lower: np.ndarray, upper: np.ndarray, max_step: float) -> None:
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.max_step = max_step
        self.interventions = Interventions()

    def __call__(self, target: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """The target that may be sent this tick, given the one sent on the last tick."""
        target = np.asarray(target, dtype=np.float64)
        if target.shape != previous.shape or not np.isfinite(target).all():
            self.interventions.rejected += 1
            log.warning("rejected target %s: holding the previous one", target)
            return previous.copy()
        limited = np.clip(target, self.lower, self.upper)
        if (limited != target).any():
            self.interventions.limited += 1
        stepped = np.clip(limited, previous - self.max_step, previous + self.max_step)
        if (stepped != limited).any():
            self.interventions.step_clipped += 1
        return stepped
