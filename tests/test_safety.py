"""The safety filter between every action source and the arm: limits from calibration narrowed by the
config, a step bounded by max_step and max_velocity, non-finite or misshapen targets never passed on,
holds and e-stops counted, and a watchdog that trips only after its time without fresh actions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from robot_runtime.config import ConfigError, SafetyConfig
from robot_runtime.rig import Rig
from robot_runtime.robot import Arm, JointSpec, JointState, StopReport
from robot_runtime.safety import SafetyFilter, Watchdog


class LimitsOnly(Arm):
    """An arm that is only its joint table: the filter needs nothing else."""

    name = "arm"
    joints = (JointSpec("shoulder", "deg", -90.0, 90.0), JointSpec("gripper", "percent", 0.0, 100.0))
    park_position = np.zeros(2)
    is_connected = False

    def _connect(self, *, observe_only: bool) -> None: ...
    def read(self) -> JointState: raise NotImplementedError
    def _send(self, targets: np.ndarray) -> np.ndarray: raise NotImplementedError
    def _set_torque(self, enabled: bool) -> None: ...
    def _safe_stop(self) -> list[StopReport]: return []
    def disconnect(self) -> None: ...


RIG = Rig({"": LimitsOnly()})
HERE = np.array([0.0, 50.0])


def test_config_limits_narrow_the_calibrated_ones() -> None:
    f = SafetyFilter.for_rig(RIG, SafetyConfig(max_step=1000, limits={"shoulder.pos": (-30.0, 120.0)}), rate_hz=30)
    np.testing.assert_array_equal(f.lower, [-30.0, 0.0])
    np.testing.assert_array_equal(f.upper, [90.0, 100.0])  # the calibrated limit stays the tighter one
    np.testing.assert_array_equal(f(np.array([-60.0, 50.0]), HERE), [-30.0, 50.0])
    assert f.interventions.limited == 1


def test_config_limits_must_name_a_joint_and_leave_a_range() -> None:
    with pytest.raises(ConfigError, match=r"unknown joint 'elbow\.pos'"):
        SafetyFilter.for_rig(RIG, SafetyConfig(limits={"elbow.pos": (0.0, 1.0)}), rate_hz=30)
    with pytest.raises(ConfigError, match=r"safety.limits.shoulder.pos: \[95, 120\] leaves nothing"):
        SafetyFilter.for_rig(RIG, SafetyConfig(limits={"shoulder.pos": (95.0, 120.0)}), rate_hz=30)


def test_max_velocity_tightens_the_step_at_the_loop_rate() -> None:
    f = SafetyFilter.for_rig(RIG, SafetyConfig(max_step=8, max_velocity=60), rate_hz=30)
    assert f.max_step == pytest.approx({"deg": 2.0, "percent": 2.0})
    assert SafetyFilter.for_rig(RIG, SafetyConfig(max_step=1, max_velocity=60), rate_hz=30).max_step == {"deg": 1, "percent": 1}
    per_unit = SafetyConfig(max_step={"deg": 8, "percent": 1}, max_velocity={"deg": 60, "percent": 300})
    assert SafetyFilter.for_rig(RIG, per_unit, rate_hz=30).max_step == pytest.approx({"deg": 2.0, "percent": 1.0})


@given(target=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4))
def test_whatever_is_asked_the_result_is_finite_within_limits_and_one_step_away(target: list[float]) -> None:
    f = SafetyFilter.for_rig(RIG, SafetyConfig(max_step=5), rate_hz=30)
    sent = f(np.array(target), HERE)
    assert sent.shape == HERE.shape and np.isfinite(sent).all()
    assert (f.lower <= sent).all() and (sent <= f.upper).all()
    assert np.abs(sent - HERE).max() <= 5 + 1e-9


def test_a_nan_or_misshapen_target_holds_the_previous_one_and_is_counted() -> None:
    f = SafetyFilter.for_rig(RIG, SafetyConfig(), rate_hz=30)
    np.testing.assert_array_equal(f(np.array([np.nan, 1.0]), HERE), HERE)
    np.testing.assert_array_equal(f(np.array([1.0, 2.0, 3.0]), HERE), HERE)
    assert f.interventions.rejected == 2


def test_after_an_e_stop_every_target_is_the_held_one() -> None:
    f = SafetyFilter.for_rig(RIG, SafetyConfig(max_step=100), rate_hz=30)
    f.engage_estop("space pressed")
    f.engage_estop("pressed again")
    np.testing.assert_array_equal(f(np.array([10.0, 10.0]), HERE), HERE)
    assert (f.estop_reason, f.interventions.estops) == ("space pressed", 1)


def test_the_watchdog_trips_only_after_its_timeout_without_fresh_actions() -> None:
    watchdog = Watchdog(timeout_s=0.5)
    assert not watchdog.expired(100.0)  # nothing fresh was ever expected yet
    watchdog.feed(100.0)
    assert not watchdog.expired(100.5)
    assert watchdog.expired(100.51)
    assert watchdog.starved_s(100.75) == pytest.approx(0.75)
    watchdog.feed(100.75)
    assert not watchdog.expired(101.0)
