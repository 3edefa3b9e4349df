"""State and action spaces: a Cartesian pose is clipped into its workspace box, stepped by distance in
metres and by geodesic angle in radians, and blended on quaternions; joints keep their old one-by-one
behaviour; limits are given in the units of the values they bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from robot_runtime import rotations
from robot_runtime.config import ConfigError, SafetyConfig
from robot_runtime.policy.chunks import Chunk, ChunkScheduler, Scheduling
from robot_runtime.rig import Rig
from robot_runtime.robot import Arm, JointSpec, JointState, PoseSpec, StopReport
from robot_runtime.safety import SafetyFilter
from robot_runtime.spaces import Space, UnitError

WORKSPACE_LOWER, WORKSPACE_UPPER = np.array([0.2, -0.4, 0.05]), np.array([0.8, 0.4, 0.7])
POSE_JOINTS = (
    *(JointSpec(f"tcp_{axis}", "m", lo, hi) for axis, lo, hi in zip("xyz", WORKSPACE_LOWER, WORKSPACE_UPPER, strict=True)),
    *(JointSpec(f"tcp_r{axis}", "rad", -math.pi, math.pi) for axis in "xyz"),
    JointSpec("gripper_width", "m", 0.0, 0.1),
)
STEPS = {"m": 0.01, "rad": 0.05}


class Limits(Arm):
    """An arm that is only its value table and poses: the spaces need nothing else."""

    name = "arm"
    is_connected = False

    def __init__(self, joints: tuple[JointSpec, ...], poses: tuple[PoseSpec, ...] = ()) -> None:
        self.joints, self.poses, self.park_position = joints, poses, np.zeros(len(joints))

    def _connect(self, *, observe_only: bool) -> None: ...
    def read(self) -> JointState:
        raise NotImplementedError

    def _send(self, targets: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _set_torque(self, enabled: bool) -> None: ...
    def _safe_stop(self) -> list[StopReport]:
        return []

    def disconnect(self) -> None: ...


def pose_arm() -> Limits:
    return Limits(POSE_JOINTS, (PoseSpec(0, "world"),))


POSE_RIG = Rig({"": pose_arm()})
BIMANUAL = Rig({"left": pose_arm(), "right": pose_arm()})


def pose(xyz: tuple[float, float, float], rotvec: tuple[float, float, float], gripper: float = 0.05) -> np.ndarray:
    return np.array([*xyz, *rotvec, gripper])


finite = st.floats(-1e6, 1e6, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)
rotation_vectors = st.tuples(finite, finite, finite).map(
    lambda v: rotations.canonical_rotvec(np.array(v) % (2 * math.pi) - math.pi)
)
positions = st.tuples(*(st.floats(lo, hi) for lo, hi in zip(WORKSPACE_LOWER, WORKSPACE_UPPER, strict=True)))


@given(
    previous_xyz=positions,
    previous_rot=rotation_vectors,
    gripper=st.floats(0.0, 0.1),
    target=st.lists(anything, min_size=7, max_size=7),
)
def test_any_target_gives_a_finite_pose_inside_the_workspace_within_one_step(
    previous_xyz: tuple[float, float, float], previous_rot: np.ndarray, gripper: float, target: list[float]
) -> None:
    f = SafetyFilter.for_rig(POSE_RIG, SafetyConfig(max_step=STEPS), rate_hz=25)
    previous = pose(previous_xyz, tuple(previous_rot), gripper)
    sent = f(np.array(target), previous)
    assert np.isfinite(sent).all()
    assert (sent[:3] >= WORKSPACE_LOWER - 1e-12).all() and (sent[:3] <= WORKSPACE_UPPER + 1e-12).all()
    assert np.linalg.norm(sent[:3] - previous[:3]) <= STEPS["m"] + 1e-9
    assert rotations.geodesic_rad(previous[3:6], sent[3:6]) <= STEPS["rad"] + 1e-9
    assert np.linalg.norm(sent[3:6]) <= math.pi + 1e-9  # the canonical form
    assert abs(sent[6] - previous[6]) <= STEPS["m"] + 1e-12


def test_across_the_pi_flip_a_small_turn_stays_small() -> None:
    """[0, 0, 3.132] and [0, 0, -3.132] are 0.02 rad apart: element-wise they look 6.26 rad apart."""
    f = SafetyFilter.for_rig(POSE_RIG, SafetyConfig(max_step=STEPS), rate_hz=25)
    before, after = pose((0.5, 0, 0.3), (0, 0, 3.132)), pose((0.5, 0, 0.3), (0, 0, -3.132))
    sent = f(after, before)
    assert f.interventions.step_clipped == 0
    assert rotations.geodesic_rad(sent[3:6], after[3:6]) < 1e-9
    halfway = POSE_RIG.space.interpolate(before, after, 0.5)
    assert rotations.geodesic_rad(halfway[3:6], np.array([0, 0, math.pi])) < 1e-9  # not through identity


def test_a_large_turn_is_slerp_clipped_toward_the_target() -> None:
    f = SafetyFilter.for_rig(POSE_RIG, SafetyConfig(max_step=STEPS), rate_hz=25)
    before, after = pose((0.5, 0, 0.3), (0, 0, 0)), pose((0.5, 0, 0.3), (0, math.pi / 2, 0))
    sent = f(after, before)
    np.testing.assert_allclose(sent[3:6], [0, STEPS["rad"], 0], atol=1e-12)  # on the arc, not element-wise
    assert f.interventions.step_clipped == 1


def test_a_position_step_is_bounded_as_a_distance_along_the_straight_line() -> None:
    f = SafetyFilter.for_rig(POSE_RIG, SafetyConfig(max_step=STEPS), rate_hz=25)
    sent = f(pose((0.6, 0.1, 0.3), (0, 0, 0)), pose((0.5, 0, 0.3), (0, 0, 0)))
    np.testing.assert_allclose(sent[:3], [0.5 + 0.01 / math.sqrt(2), 0.01 / math.sqrt(2), 0.3])


def test_a_pose_outside_the_workspace_is_clamped_into_it_and_counted() -> None:
    f = SafetyFilter.for_rig(POSE_RIG, SafetyConfig(max_step={"m": 10, "rad": 10}), rate_hz=25)
    sent = f(pose((1.5, 0, -0.2), (0, 0, 0)), pose((0.5, 0, 0.3), (0, 0, 0)))
    np.testing.assert_allclose(sent[:3], [0.8, 0, 0.05])
    assert f.interventions.limited == 1


def test_rotations_are_averaged_on_quaternions() -> None:
    stacked = np.stack([pose((0.5, 0, 0.3), (0, 0, 3.13)), pose((0.7, 0, 0.3), (0, 0, -3.13))])
    mean = POSE_RIG.space.average(stacked, np.array([1.0, 1.0]))
    np.testing.assert_allclose(mean[:3], [0.6, 0, 0.3])
    assert rotations.geodesic_rad(mean[3:6], np.array([0, 0, math.pi])) < 1e-6  # element-wise it would be identity


def test_temporal_ensembling_blends_chunks_through_the_space() -> None:
    scheduler = ChunkScheduler(Scheduling.ASYNC, ensemble_m=0.0, average=POSE_RIG.space.average)
    for i, angle in enumerate((3.13, -3.13)):
        scheduler.receive(
            Chunk(i, np.tile(pose((0.5, 0, 0.3), (0, 0, angle)), (10, 1)), obs_tick=0, arrived_tick=0, latency_s=0.0)
        )
    scheduled = scheduler.action(1)
    assert scheduled is not None and scheduled.blended == 2
    assert rotations.geodesic_rad(scheduled.action[3:6], np.array([0, 0, math.pi])) < 1e-6


@given(a=rotation_vectors, b=rotation_vectors, fraction=st.floats(0, 1))
def test_slerp_moves_the_given_fraction_of_the_geodesic(a: np.ndarray, b: np.ndarray, fraction: float) -> None:
    total = rotations.geodesic_rad(a, b)
    between = rotations.slerp(a, b, fraction)
    assert rotations.geodesic_rad(a, between) == pytest.approx(fraction * total, abs=1e-6)
    assert rotations.geodesic_rad(between, b) == pytest.approx((1 - fraction) * total, abs=1e-6)


@given(rotvec=rotation_vectors, reference=rotation_vectors)
def test_a_commanded_quaternion_stays_in_the_hemisphere_of_the_reference(rotvec: np.ndarray, reference: np.ndarray) -> None:
    ref = rotations.to_quat_wxyz(reference)
    quat = rotations.to_quat_wxyz(rotvec, ref)
    assert np.dot(quat, ref) >= 0
    assert rotations.geodesic_rad(rotations.from_quat_wxyz(quat), rotvec) < 1e-6
    np.testing.assert_allclose(
        quat,
        Rotation.from_rotvec(rotvec).as_quat(scalar_first=True)
        * np.sign(np.dot(quat, Rotation.from_rotvec(rotvec).as_quat(scalar_first=True))),
    )


def test_quaternions_are_scalar_first() -> None:
    np.testing.assert_allclose(
        rotations.to_quat_wxyz(np.array([0, 0, math.pi / 2])), [math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]
    )


def test_a_bimanual_rig_places_each_arms_pose_at_its_offset() -> None:
    assert BIMANUAL.poses == (PoseSpec(0, "world"), PoseSpec(7, "world"))
    labels = [(d.label, d.unit) for d in BIMANUAL.space.distances(np.zeros(14), np.zeros(14))]
    assert labels == [
        ("left_gripper_width", "m"),
        ("right_gripper_width", "m"),
        ("left_tcp position", "m"),
        ("left_tcp rotation", "rad"),
        ("right_tcp position", "m"),
        ("right_tcp rotation", "rad"),
    ]


WIDOWX_LIKE = Rig({"": Limits((JointSpec("joint_0", "rad", -3.0, 3.0), JointSpec("left_carriage_joint", "m", 0.0, 0.044)))})


def test_a_gripper_in_metres_is_stepped_in_metres() -> None:
    f = SafetyFilter.for_rig(WIDOWX_LIKE, SafetyConfig(max_step={"rad": 0.1, "m": 0.005}), rate_hz=30)
    np.testing.assert_allclose(f(np.array([1.0, 0.044]), np.zeros(2)), [0.1, 0.005])


def test_one_number_cannot_limit_metres_beside_radians() -> None:
    with pytest.raises(
        ConfigError, match=r"safety.max_step: one number \(0.1\) cannot limit both metres and rad; give one per unit"
    ):
        SafetyFilter.for_rig(WIDOWX_LIKE, SafetyConfig(max_step=0.1), rate_hz=30)
    with pytest.raises(ConfigError, match=r"safety.max_step: no value for m \(this robot's units: m, rad\)"):
        SafetyFilter.for_rig(WIDOWX_LIKE, SafetyConfig(max_step={"rad": 0.1}), rate_hz=30)


def test_a_rotation_component_cannot_be_given_a_range() -> None:
    with pytest.raises(ConfigError, match=r"safety.limits.tcp_rz.pos: a rotation vector's component has no meaningful range"):
        SafetyFilter.for_rig(POSE_RIG, SafetyConfig(max_step=STEPS, limits={"tcp_rz.pos": (-1.0, 1.0)}), rate_hz=25)


@given(
    previous=st.lists(st.floats(-90, 90), min_size=3, max_size=3),
    target=st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
    step=st.floats(0.01, 50),
)
def test_joint_space_keeps_its_one_by_one_behaviour(previous: list[float], target: list[float], step: float) -> None:
    """What every joint-space arm did before spaces existed: clip into the limits, then element-wise steps."""
    joints = tuple(JointSpec(f"j{i}", "deg", -90.0, 90.0) for i in range(3))
    space = Space(joints)
    lower, upper = np.full(3, -90.0), np.full(3, 90.0)
    clipped, _ = space.clip(np.array(target), lower, upper)
    stepped, _ = space.step(clipped, np.array(previous), space.step_limits({"deg": step}))
    expected = np.clip(np.clip(target, lower, upper), np.array(previous) - step, np.array(previous) + step)
    np.testing.assert_array_equal(stepped, expected)
    np.testing.assert_array_equal(
        space.interpolate(np.array(previous), np.array(target), 0.25),
        np.array(previous) + 0.25 * (np.array(target) - np.array(previous)),
    )


def test_scalar_settings_still_serve_joint_units_that_share_a_scale() -> None:
    space = Space((JointSpec("shoulder", "deg", -90, 90), JointSpec("gripper", "percent", 0, 100)))
    assert space.unit_values(8.0, "safety.max_step") == {"deg": 8.0, "percent": 8.0}
    with pytest.raises(UnitError, match="no value for percent"):
        space.unit_values({"deg": 8.0}, "safety.max_step")
