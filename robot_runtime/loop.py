"""The fixed-rate control loop every mode runs: absolute deadlines on a grid, so timing never drifts."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tick:
    """What the tick function is told: its index on the deadline grid and how late it started."""

    index: int
    deadline_s: float
    start_s: float
    elapsed_s: float
    """Seconds since the loop's first deadline."""

    @property
    def lateness_s(self) -> float:
        return self.start_s - self.deadline_s


@dataclass(frozen=True)
class LoopStats:
    """Timing summary every mode prints and writes with `--stats-json`."""

    target_hz: float
    ticks: int
    duration_s: float
    achieved_hz: float
    period_p50_ms: float
    period_p99_ms: float
    period_max_ms: float
    lateness_p50_ms: float
    lateness_p99_ms: float
    late_ticks: int
    """Ticks that started more than `late_threshold_ms` after their deadline."""
    late_threshold_ms: float
    missed_deadlines: int
    """Grid slots skipped because a tick overran by more than a whole period."""

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile_ms(values_s: np.ndarray, q: float) -> float:
    return float(np.percentile(values_s, q) * 1e3) if len(values_s) else math.nan


class FixedRateLoop:
    """Calls `tick` at `rate_hz` on absolute deadlines `t0 + k * period`, on the monotonic clock that
    arm states and camera frames are stamped with.

    A tick that overruns into the next slot starts the next tick at once (counted late); one that
    overruns by more than a period skips the missed slots (counted missed) instead of bursting.
    """

    def __init__(
        self,
        rate_hz: float,
        *,
        late_threshold_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"loop rate must be positive, got {rate_hz} Hz")
        self.rate_hz = rate_hz
        self.period_s = 1.0 / rate_hz
        self.late_threshold_s = 0.1 * self.period_s if late_threshold_s is None else late_threshold_s
        self._clock = clock
        self._sleep = sleep
        self._stop = threading.Event()
        self._starts: list[float] = []
        self._lateness: list[float] = []
        self._missed = 0
        self._end_s: float | None = None

    def stop(self) -> None:
        """Ask the loop to return after the current tick; safe from any thread or signal handler."""
        self._stop.set()

    def run(self, tick: Callable[[Tick], object], *, duration_s: float | None = None) -> LoopStats:
        """Run until `stop()`, until `duration_s` has elapsed, or until `tick` raises (the error propagates);
        whatever `tick` returns is not used."""
        t0 = self._clock()
        k = 0
        try:
            while not self._stop.is_set():
                deadline = t0 + k * self.period_s
                if duration_s is not None and deadline - t0 >= duration_s:
                    break
                now = self._clock()
                if deadline > now:
                    self._sleep(deadline - now)
                    now = self._clock()
                self._starts.append(now)
                self._lateness.append(now - deadline)
                tick(Tick(index=k, deadline_s=deadline, start_s=now, elapsed_s=now - t0))
                k_next = max(k + 1, math.floor((self._clock() - t0) / self.period_s))
                self._missed += k_next - (k + 1)
                k = k_next
        finally:
            self._end_s = self._clock()
        return self.stats()

    def recent_hz(self, ticks: int = 30) -> float:
        """The rate achieved over the last few ticks, for live status lines (safe from another thread)."""
        starts = self._starts[-ticks - 1 :]
        return (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 and starts[-1] > starts[0] else 0.0

    def stats(self) -> LoopStats:
        starts = np.asarray(self._starts)
        lateness = np.asarray(self._lateness)
        periods = np.diff(starts)
        duration = (self._end_s if self._end_s is not None else self._clock()) - starts[0] if len(starts) else 0.0
        return LoopStats(
            target_hz=self.rate_hz,
            ticks=len(starts),
            duration_s=float(duration),
            achieved_hz=float(len(periods) / (starts[-1] - starts[0])) if len(periods) else math.nan,
            period_p50_ms=percentile_ms(periods, 50),
            period_p99_ms=percentile_ms(periods, 99),
            period_max_ms=float(periods.max() * 1e3) if len(periods) else math.nan,
            lateness_p50_ms=percentile_ms(lateness, 50),
            lateness_p99_ms=percentile_ms(lateness, 99),
            late_ticks=int((lateness > self.late_threshold_s).sum()),
            late_threshold_ms=self.late_threshold_s * 1e3,
            missed_deadlines=self._missed,
        )
