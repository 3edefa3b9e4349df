"""Feature statistics as LeRobot keeps them: per episode in the episodes metadata, and for the whole
dataset in meta/stats.json, which training reads to normalise inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_NAMES = ("min", "max", "mean", "std", "count", *QUANTILES)

FeatureStats = dict[str, np.ndarray]


def vector_stats(values: np.ndarray) -> FeatureStats:
    """Stats over rows of a (frames, dims) or (frames,) array, one value per dim."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    return _stats(values, axis=0, count=len(values))


def image_stats(samples: np.ndarray) -> FeatureStats:
    """Per-channel stats of sampled uint8 RGB frames (n, h, w, 3), scaled to [0, 1] and shaped (3, 1, 1)
    as LeRobot's image statistics are. Counted from 256-bin histograms: exact, and fast enough for a
    few hundred full frames where sorting them would take seconds."""
    if samples.ndim != 4 or samples.shape[-1] != 3 or not len(samples) or samples.dtype != np.uint8:
        raise ValueError(f"image stats need uint8 (frames, height, width, 3) samples, got {samples.dtype} {samples.shape}")
    per_channel = [_histogram_stats(np.bincount(samples[..., c].ravel(), minlength=256)) for c in range(3)]
    stats = {name: np.array([c[name] for c in per_channel]).reshape(3, 1, 1) / 255.0 for name in per_channel[0]}
    stats["count"] = np.array([len(samples)])
    return stats


def _histogram_stats(counts: np.ndarray) -> dict[str, float]:
    values = np.arange(len(counts), dtype=np.float64)
    n = counts.sum()
    mean = (counts * values).sum() / n
    present = np.flatnonzero(counts)
    out = {
        "min": float(present[0]),
        "max": float(present[-1]),
        "mean": mean,
        "std": np.sqrt((counts * (values - mean) ** 2).sum() / n),
    }
    cumulative = np.cumsum(counts)
    for name, q in QUANTILES.items():  # numpy's default (linear) quantile, from ranks in the histogram
        rank = q * (n - 1)
        below, above = np.searchsorted(cumulative, [np.floor(rank) + 1, np.ceil(rank) + 1])
        out[name] = below + (rank - np.floor(rank)) * (above - below)
    return out


def _stats(values: np.ndarray, axis: int | tuple[int, ...], count: int) -> FeatureStats:
    stats = {
        "min": values.min(axis=axis),
        "max": values.max(axis=axis),
        "mean": values.mean(axis=axis),
        "std": values.std(axis=axis),
        "count": np.array([count]),
    }
    quantiles = np.quantile(values, list(QUANTILES.values()), axis=axis)
    stats.update(zip(QUANTILES, quantiles, strict=True))
    return stats


def aggregate(episodes: Sequence[Mapping[str, FeatureStats]]) -> dict[str, FeatureStats]:
    """Whole-dataset stats from per-episode stats: exact min, max, count, mean and std (pooled variance);
    quantiles as the count-weighted mean of the episodes' quantiles, as LeRobot approximates them."""
    if not episodes:
        return {}
    out: dict[str, FeatureStats] = {}
    for key in episodes[0]:
        parts = [episode[key] for episode in episodes]
        counts = np.array([float(p["count"][0]) for p in parts])
        weights = (counts / counts.sum()).reshape(-1, *([1] * np.ndim(parts[0]["mean"])))
        means = np.stack([p["mean"] for p in parts])
        mean = (weights * means).sum(axis=0)
        variance = (weights * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(axis=0)
        stats = {
            "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
            "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
            "mean": mean,
            "std": np.sqrt(variance),
            "count": np.array([int(counts.sum())]),
        }
        for name in QUANTILES:
            stats[name] = (weights * np.stack([p[name] for p in parts])).sum(axis=0)
        out[key] = stats
    return out
