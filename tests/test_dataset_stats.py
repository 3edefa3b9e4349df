"""Dataset statistics: per-episode stats aggregate to the stats of all frames together."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recorders.stats import QUANTILES, STAT_NAMES, aggregate, image_stats, vector_stats

episodes = st.lists(
    arrays(np.float64, st.tuples(st.integers(1, 40), st.just(3)), elements=st.floats(-1e3, 1e3)),
    min_size=1,
    max_size=5,
)


@given(episodes)
@settings(max_examples=60, deadline=None)
def test_aggregated_stats_equal_the_stats_of_all_frames(parts: list[np.ndarray]) -> None:
    together = vector_stats(np.concatenate(parts))
    combined = aggregate([{"x": vector_stats(p)} for p in parts])["x"]
    for name in ("min", "max", "mean", "count"):
        np.testing.assert_allclose(combined[name], together[name], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(combined["std"], together["std"], rtol=1e-6, atol=1e-6)


def test_quantiles_of_one_episode_are_exact_and_of_many_are_count_weighted() -> None:
    a, b = np.arange(100.0)[:, None], np.arange(100.0, 400.0)[:, None]
    assert vector_stats(a)["q50"] == np.quantile(a, 0.5)
    combined = aggregate([{"x": vector_stats(a)}, {"x": vector_stats(b)}])["x"]
    assert combined["q50"] == (1 * np.quantile(a, 0.5) + 3 * np.quantile(b, 0.5)) / 4


def test_every_feature_has_lerobots_statistics() -> None:
    assert set(vector_stats(np.zeros((5, 2)))) == set(STAT_NAMES) == {"min", "max", "mean", "std", "count", *QUANTILES}


def test_image_stats_are_per_channel_in_0_1_shaped_3_1_1() -> None:
    samples = np.zeros((4, 8, 8, 3), np.uint8)
    samples[..., 0] = 255
    samples[..., 1] = np.arange(8, dtype=np.uint8)[None, :, None] * 32
    stats = image_stats(samples)
    assert stats["mean"].shape == (3, 1, 1)
    assert stats["count"].tolist() == [4]
    assert stats["min"][0, 0, 0] == stats["max"][0, 0, 0] == 1.0
    assert stats["mean"][2, 0, 0] == 0.0
    assert np.isclose(stats["mean"][1, 0, 0], np.mean(np.arange(8) * 32) / 255)


def test_scalar_features_have_one_value_per_stat() -> None:
    stats = vector_stats(np.array([0.0, 1.0, 2.0]))
    assert stats["mean"].shape == (1,)
    assert stats["std"][0] == np.std([0.0, 1.0, 2.0])


@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.just(3))))
@settings(max_examples=60, deadline=None)
def test_image_stats_from_histograms_equal_numpys(samples: np.ndarray) -> None:
    stats = image_stats(samples)
    values = np.moveaxis(samples, -1, 0).reshape(3, -1) / 255.0
    np.testing.assert_allclose(stats["mean"].ravel(), values.mean(axis=1))
    np.testing.assert_allclose(stats["std"].ravel(), values.std(axis=1), atol=1e-12)
    np.testing.assert_allclose(stats["min"].ravel(), values.min(axis=1))
    np.testing.assert_allclose(stats["max"].ravel(), values.max(axis=1))
    for name, q in QUANTILES.items():
        np.testing.assert_allclose(stats[name].ravel(), np.quantile(values, q, axis=1), atol=1e-12)
