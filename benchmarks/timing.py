"""Small timing helpers shared by the benchmarks: wall and CPU time per call, summarised as percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CallTiming:
    """Wall-clock times of `samples` calls plus the process CPU time they used in total."""

    samples: int
    median_ms: float
    p99_ms: float
    max_ms: float
    cpu_per_call_ms: float
    """process_time delta / samples: covers every thread of this process, not only the caller."""


def time_calls(call: Callable[[], object], samples: int, warmup: int = 0) -> CallTiming:
    """Time `samples` calls after `warmup` untimed ones (first calls pay for imports, caches and pty setup)."""
    for _ in range(warmup):
        call()
    wall_s = np.empty(samples)
    cpu_start_s = time.process_time()
    for i in range(samples):
        start_s = time.perf_counter()
        call()
        wall_s[i] = time.perf_counter() - start_s
    cpu_s = time.process_time() - cpu_start_s
    return CallTiming(
        samples=samples,
        median_ms=float(np.median(wall_s) * 1e3),
        p99_ms=float(np.percentile(wall_s, 99) * 1e3),
        max_ms=float(wall_s.max() * 1e3),
        cpu_per_call_ms=cpu_s / samples * 1e3,
    )


def ratio(numerator: float, denominator: float) -> str:
    """`a / b` as text like `2.31x`; a ratio, never a verdict, so the reader compares within one run."""
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "n/a"
