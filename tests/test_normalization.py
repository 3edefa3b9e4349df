"""Raw ticks to joint units with LeRobot's formulas, so calibrations and datasets agree."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibration.normalization import Normalizer, NormMode
from calibration.store import MotorCalibration


def normalizer(mode: NormMode, range_min=1000, range_max=3000, drive_mode=0) -> Normalizer:
    cal = {"joint": MotorCalibration(1, drive_mode, 0, range_min, range_max)}
    return Normalizer.from_calibration(cal, (mode,), 4096)


def test_degrees_are_zero_at_the_middle_of_the_range_and_use_4095_ticks_per_turn():
    n = normalizer(NormMode.DEGREES)
    assert n.to_units(np.array([2000]))[0] == 0.0
    assert np.isclose(n.to_units(np.array([2000 + 4095 / 4]))[0], 90.0)


def test_degrees_are_not_clamped_to_the_range():
    n = normalizer(NormMode.DEGREES)
    assert n.to_units(np.array([3500]))[0] > n.to_units(np.array([3000]))[0]


def test_gripper_range_maps_to_0_100_and_clamps():
    n = normalizer(NormMode.RANGE_0_100)
    assert list(n.to_units(np.array([1000, 2000, 3000, 3900]))) == [0.0, 50.0, 100.0, 100.0]


def test_inverted_drive_mode_flips_range_modes():
    assert normalizer(NormMode.RANGE_0_100, drive_mode=1).to_units(np.array([1000]))[0] == 100.0
    assert normalizer(NormMode.RANGE_M100_100, drive_mode=1).to_units(np.array([3000]))[0] == -100.0


def test_range_m100_100_maps_the_ends_to_plus_minus_100():
    n = normalizer(NormMode.RANGE_M100_100)
    assert list(n.to_units(np.array([1000, 3000]))) == [-100.0, 100.0]


@given(st.sampled_from(list(NormMode)), st.integers(0, 1), st.integers(1000, 3000))
def test_raw_to_units_to_raw_is_lossless_inside_the_range(mode, drive_mode, raw):
    n = normalizer(mode, drive_mode=drive_mode)
    assert abs(n.to_raw(n.to_units(np.array([raw])))[0] - raw) <= 1


def test_limits_are_the_calibrated_range_in_units():
    lower, upper = normalizer(NormMode.DEGREES).limits()
    assert np.isclose(lower[0], -1000 * 360 / 4095) and np.isclose(upper[0], 1000 * 360 / 4095)


def test_one_tick_is_360_over_4095_degrees_or_a_share_of_the_range():
    assert normalizer(NormMode.DEGREES).units_per_tick[0] == pytest.approx(360 / 4095)
    assert normalizer(NormMode.RANGE_0_100).units_per_tick[0] == pytest.approx(100 / 2000)
    assert normalizer(NormMode.RANGE_M100_100).units_per_tick[0] == pytest.approx(200 / 2000)
