"""What a policy's action values mean (absolute, delta from the observed state, joint velocity,
end-effector step) and how a Cartesian pose's rotation travels (rotation vector, quaternion in either
scalar order, 6D): every kind comes back as absolute targets in rig order, rotations as canonical
rotation vectors."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from robot_runtime.policy.config import ActionSegment, PolicyConfig
from robot_runtime.policy.mapping import ActionWidthError, MappingError, PolicyIO, ReplyShapeError
from robot_runtime.policy.worker import Inference, InferenceWorker, Snapshot
from robot_runtime.robot import JointSpec, PoseSpec
from robot_runtime.rotations import canonical_rotvec, geodesic_rad

SOURCE = Path("/robots/flexiv_pair.yaml")
RATE_HZ = 15.0
POSE = ("x", "y", "z", "rx", "ry", "rz")
ARM = (*POSE, "gripper")
OPENPI_DELTA_MASK = [  # make_bool_mask(6, -1, 6, -1)
    ActionSegment(kind="delta", count=6),
    ActionSegment(kind="absolute", count=1),
    ActionSegment(kind="delta", count=6),
    ActionSegment(kind="absolute", count=1),
]


def pose_spec(name: str) -> JointSpec:
    if name == "gripper":
        return JointSpec(name, "m", 0.0, 0.1)
    if name in ("x", "y", "z"):
        return JointSpec(name, "m", -1.0, 1.0)
    return JointSpec(name, "rad", -4.0, 4.0)


def pair() -> tuple[list[JointSpec], list[str], tuple[PoseSpec, ...]]:
    """Two Cartesian arms, left first: [x, y, z, rx, ry, rz, gripper] each, as a Flexiv pair reports them."""
    joints = [pose_spec(name) for _ in ("left", "right") for name in ARM]
    names = [f"{side}_{name}.pos" for side in ("left", "right") for name in ARM]
    return joints, names, (PoseSpec(0), PoseSpec(7))


def single() -> tuple[list[JointSpec], list[str], tuple[PoseSpec, ...]]:
    return [pose_spec(name) for name in ARM], [f"{name}.pos" for name in ARM], (PoseSpec(0),)


def franka() -> tuple[list[JointSpec], list[str], tuple[PoseSpec, ...]]:
    names = [f"joint_{i}" for i in range(1, 8)] + ["gripper"]
    joints = [JointSpec(n, "percent", 0.0, 100.0) if n == "gripper" else JointSpec(n, "rad", -3.0, 3.0) for n in names]
    return joints, [f"{n}.pos" for n in names], ()


def build(config: PolicyConfig, rig: tuple[list[JointSpec], list[str], tuple[PoseSpec, ...]] = pair()) -> PolicyIO:
    joints, names, poses = rig
    cameras = ("front",) if config.preset != "custom" else ()
    return PolicyIO.build(config, joints, names, cameras, SOURCE, poses=poses, rate_hz=RATE_HZ)


def refused(config: PolicyConfig, key: str, rig: Any = None, rate_hz: float | None = RATE_HZ) -> str:
    joints, names, poses = rig or pair()
    with pytest.raises(MappingError) as error:
        PolicyIO.build(config, joints, names, ("front",), SOURCE, poses=poses, rate_hz=rate_hz)
    message = str(error.value)
    assert message.startswith(f"{SOURCE}: key '{key}': "), message
    return message


def sent_state(io: PolicyIO, state: np.ndarray) -> np.ndarray:
    return io.observation(state, {}, "")["observation/state"].astype(np.float64)


rotvecs = st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3).map(
    lambda v: np.array(v) * 3.1 / max(1.0, float(np.linalg.norm(v)))
)
positions = st.lists(st.floats(-0.8, 0.8), min_size=3, max_size=3).map(np.array)
grippers = st.floats(0.0, 0.1)


@st.composite
def pair_states(draw: st.DrawFn) -> np.ndarray:
    return np.concatenate([np.r_[draw(positions), draw(rotvecs), draw(grippers)] for _ in range(2)])


def assert_same_targets(io: PolicyIO, got: np.ndarray, want: np.ndarray, atol: float = 1e-6) -> None:
    """Positions and grippers equal; rotations the same rotation, stored canonically."""
    for row_got, row_want in zip(np.atleast_2d(got), np.atleast_2d(want), strict=True):
        scalars = io.order[io.scalars]
        np.testing.assert_allclose(row_got[scalars], row_want[scalars], atol=atol)
        for block in io.rotations:
            assert geodesic_rad(row_got[block.rig], row_want[block.rig]) < atol
            assert np.linalg.norm(row_got[block.rig]) <= math.pi + 1e-9


# -- absolute and delta ---------------------------------------------------------------------------


def test_default_is_absolute_everywhere_and_needs_no_state() -> None:
    io = build(PolicyConfig())
    assert [segment.spec.kind for segment in io.segments] == ["absolute"]
    assert io.state_width == io.action_width == 14
    targets = np.array([[0.1, 0.2, 0.3, 0.0, 0.0, 1.0, 0.05] * 2])
    np.testing.assert_allclose(io.actions(targets), targets)


@settings(max_examples=80, deadline=None)
@given(
    state=pair_states(),
    targets=st.lists(pair_states(), min_size=1, max_size=5),
    fmt=st.sampled_from(["rotvec", "quat_wxyz", "quat_xyzw", "rot6d"]),
)
def test_openpi_delta_actions_come_back_as_the_absolute_targets_they_were_made_from(
    state: np.ndarray, targets: list[np.ndarray], fmt: str
) -> None:
    """The server's DeltaActions subtracts the state it received from the targets element by element under
    the mask (grippers stay absolute), in the policy's values, also inside a rotation; adding the same
    state back gives the targets again."""
    io = build(PolicyConfig(actions=OPENPI_DELTA_MASK, rotation_format=fmt))
    received = sent_state(io, state)
    mask = np.ones(io.state_width, dtype=bool)
    mask[[io.scalar_columns[list(io.order[io.scalars]).index(i)] for i in (6, 13)]] = False
    absolute = np.stack([io.policy_state(target) for target in targets])
    deltas = np.where(mask, absolute - received, absolute)
    assert_same_targets(io, io.actions(deltas, state), np.stack(targets))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_delta_of_scaled_joints_is_undone_in_the_policy_units(data: st.DataObject) -> None:
    """A joint rig in degrees with openpi's radians: the delta is in radians, the target in degrees."""
    joints = [JointSpec(f"j{i}", "deg", -180.0, 180.0) for i in range(7)] + [JointSpec("g", "percent", 0.0, 100.0)]
    names = [f"j{i}.pos" for i in range(7)] + ["g.pos"]
    config = PolicyConfig(
        preset="libero",
        cameras={"image": "front"},
        actions=[ActionSegment(kind="delta", count=7), ActionSegment(kind="absolute", count=1)],
    )
    io = PolicyIO.build(config, joints, names, ("front",), SOURCE)
    state = np.array([*data.draw(st.lists(st.floats(-170, 170), min_size=7, max_size=7)), data.draw(st.floats(0, 100))])
    target = np.array([*data.draw(st.lists(st.floats(-170, 170), min_size=7, max_size=7)), data.draw(st.floats(0, 100))])
    received = io.observation(state, {"front": np.zeros((8, 8, 3), np.uint8)}, "")["observation/state"].astype(np.float64)
    absolute = io.policy_state(target)
    delta = np.r_[absolute[:7] - received[:7], absolute[7]]
    np.testing.assert_allclose(io.actions(delta[None, :], state)[0], target, atol=1e-9)


def test_a_rotation_delta_is_undone_element_wise_then_stored_canonically() -> None:
    """Near pi the element-wise sum leaves [0, pi]; the target is the same rotation stored canonically."""
    io = build(PolicyConfig(actions=[ActionSegment(kind="delta", count=6), ActionSegment(kind="absolute", count=1)]), single())
    state = np.array([0.0, 0.0, 0.5, 0.0, 0.0, 3.1, 0.02])
    back = io.actions(np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.03]]), state)[0]
    np.testing.assert_allclose(back[3:6], canonical_rotvec(np.array([0.0, 0.0, 3.2])), atol=1e-6)
    np.testing.assert_allclose(back[3:6], [0.0, 0.0, 3.2 - 2 * math.pi], atol=1e-6)
    np.testing.assert_allclose(back[[0, 1, 2, 6]], [0.0, 0.0, 0.5, 0.03], atol=1e-7)


def test_delta_and_velocity_need_the_observed_state() -> None:
    io = build(PolicyConfig(actions=OPENPI_DELTA_MASK))
    with pytest.raises(ValueError, match="delta actions need the state the observation was made from"):
        io.actions(np.zeros((2, 14)))
    with pytest.raises(ValueError, match="expected a state of 14 joints"):
        io.actions(np.zeros((2, 14)), np.zeros(13))


# -- rotation formats -----------------------------------------------------------------------------


def test_a_quaternion_is_sent_and_read_in_the_configured_scalar_order() -> None:
    """90 deg about z is [w, x, y, z] = [c, 0, 0, s]; the same four numbers read scalar-last are a turn about x."""
    c = s = math.sqrt(0.5)
    state = np.array([0.1, 0.2, 0.3, 0.0, 0.0, math.pi / 2, 0.04])
    wxyz = build(PolicyConfig(rotation_format="quat_wxyz"), single())
    xyzw = build(PolicyConfig(rotation_format="quat_xyzw"), single())
    np.testing.assert_allclose(sent_state(wxyz, state)[3:7], [c, 0, 0, s], atol=1e-6)
    np.testing.assert_allclose(sent_state(xyzw, state)[3:7], [0, 0, s, c], atol=1e-6)
    reply = np.array([[0.1, 0.2, 0.3, c, 0.0, 0.0, s, 0.04]])
    np.testing.assert_allclose(wxyz.actions(reply)[0, 3:6], [0, 0, math.pi / 2], atol=1e-6)
    np.testing.assert_allclose(xyzw.actions(reply)[0, 3:6], [math.pi / 2, 0, 0], atol=1e-6)


@settings(max_examples=80, deadline=None)
@given(quat=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1))
def test_each_scalar_order_reads_as_scipy_does_with_its_flag_and_they_differ(quat: list[float]) -> None:
    q = np.array(quat)
    reply = np.r_[0.0, 0.0, 0.0, q, 0.0][None, :]
    read_wxyz = build(PolicyConfig(rotation_format="quat_wxyz"), single()).actions(reply)[0, 3:6]
    read_xyzw = build(PolicyConfig(rotation_format="quat_xyzw"), single()).actions(reply)[0, 3:6]
    assert geodesic_rad(read_wxyz, Rotation.from_quat(q, scalar_first=True).as_rotvec()) < 1e-6
    assert geodesic_rad(read_xyzw, Rotation.from_quat(q).as_rotvec()) < 1e-6
    # the same rotation, written in the other order, reads the same
    rolled = np.r_[0.0, 0.0, 0.0, np.roll(q, -1), 0.0][None, :]
    assert geodesic_rad(build(PolicyConfig(rotation_format="quat_xyzw"), single()).actions(rolled)[0, 3:6], read_wxyz) < 1e-6
    if geodesic_rad(Rotation.from_quat(q, scalar_first=True).as_rotvec(), Rotation.from_quat(q).as_rotvec()) > 1e-3:
        assert geodesic_rad(read_wxyz, read_xyzw) > 1e-4


@settings(max_examples=60, deadline=None)
@given(state=pair_states(), fmt=st.sampled_from(["rotvec", "quat_wxyz", "quat_xyzw", "rot6d"]))
def test_the_state_sent_read_back_as_absolute_actions_is_the_state(state: np.ndarray, fmt: str) -> None:
    io = build(PolicyConfig(rotation_format=fmt))
    assert io.state_width == io.action_width == 2 * (4 + {"rotvec": 3, "quat_wxyz": 4, "quat_xyzw": 4, "rot6d": 6}[fmt])
    assert_same_targets(io, io.actions(sent_state(io, state)[None, :]), state[None, :], atol=1e-5)


def test_rot6d_is_the_first_two_matrix_columns_and_comes_back_by_gram_schmidt() -> None:
    rotvec = np.array([0.3, -0.2, 1.1])
    matrix = Rotation.from_rotvec(rotvec).as_matrix()
    io = build(PolicyConfig(rotation_format="rot6d"), single())
    state = np.r_[0.0, 0.0, 0.0, rotvec, 0.0]
    np.testing.assert_allclose(sent_state(io, state)[3:9], np.r_[matrix[:, 0], matrix[:, 1]], atol=1e-6)
    skewed = np.r_[2 * matrix[:, 0], 0.5 * matrix[:, 1] + 0.3 * matrix[:, 0]]  # scaled and not orthogonal
    back = io.actions(np.r_[0.0, 0.0, 0.0, skewed, 0.0][None, :])[0, 3:6]
    assert geodesic_rad(back, rotvec) < 1e-9


@pytest.mark.parametrize(
    ("fmt", "rotation"),
    [
        ("quat_wxyz", [0.0, 0.0, 0.0, 0.0]),
        ("quat_xyzw", [np.nan, 0.0, 0.0, 1.0]),
        ("rot6d", [1.0, 0.0, 0.0, 2.0, 0.0, 0.0]),
        ("rotvec", [np.inf, 0.0, 0.0]),
    ],
)
def test_a_rotation_that_names_none_becomes_nan_for_the_safety_filter(fmt: str, rotation: list[float]) -> None:
    io = build(PolicyConfig(rotation_format=fmt), single())
    good = sent_state(io, np.array([0.1, 0.2, 0.3, 0.0, 0.0, 1.0, 0.04]))
    bad = np.r_[0.1, 0.2, 0.3, rotation, 0.04]
    actions = io.actions(np.stack([good, bad]))
    assert np.isfinite(actions[0]).all()
    assert np.isnan(actions[1, 3:6]).all() and np.isfinite(actions[1, [0, 1, 2, 6]]).all()


def test_widths_follow_the_rotation_format() -> None:
    io = build(PolicyConfig(rotation_format="quat_wxyz"))
    assert io.action_width == 16
    with pytest.raises(ReplyShapeError, match=r"expected actions of shape \(horizon, 16\)"):
        io.actions(np.zeros((5, 14)))
    with pytest.raises(ActionWidthError, match="the server's actions are 18 wide, the follower's action space is 16 wide"):
        io.actions(np.zeros((5, 18)))
    assert build(PolicyConfig(rotation_format="quat_wxyz", pads_actions_to=32)).actions(np.zeros((5, 32))).shape == (5, 14)


# -- joint velocity -------------------------------------------------------------------------------


RAD_PER_S = [ActionSegment(kind="velocity", count=7), ActionSegment(kind="absolute", count=1)]


def rad_per_s() -> PolicyIO:
    """Joint velocities in rad/s, integrated over the control period; the gripper absolute."""
    return build(PolicyConfig(preset="droid", cameras={"exterior_image_1_left": "front"}, actions=RAD_PER_S), franka())


@settings(max_examples=60, deadline=None)
@given(
    q=st.lists(st.floats(-2.5, 2.5), min_size=7, max_size=7),
    velocities=st.lists(st.lists(st.floats(-2.0, 2.0), min_size=7, max_size=7), min_size=1, max_size=15),
    gripper=st.floats(0.0, 1.0),
)
def test_joint_velocities_integrate_from_the_observed_joints_and_the_gripper_stays_absolute(
    q: list[float], velocities: list[list[float]], gripper: float
) -> None:
    io = rad_per_s()
    state = np.r_[q, 30.0]
    v = np.array(velocities)
    reply = np.c_[v, np.full(len(v), gripper)]
    actions = io.actions(reply, state)
    received = sent_state_droid(io, state)
    expected = received[:7] + np.cumsum(v, axis=0) / RATE_HZ  # target_k = q_obs + dt * sum_{i<=k} v_i
    np.testing.assert_allclose(actions[:, :7], expected, atol=1e-9)
    np.testing.assert_allclose(actions[:, 7], gripper * 100, atol=1e-9)


def sent_state_droid(io: PolicyIO, state: np.ndarray) -> np.ndarray:
    obs = io.observation(state, {"front": np.zeros((8, 8, 3), np.uint8)}, "")
    return np.r_[obs["observation/joint_position"], obs["observation/gripper_position"]].astype(np.float64)


def test_a_constant_velocity_moves_by_velocity_over_rate_each_tick() -> None:
    actions = rad_per_s().actions(np.c_[np.full((3, 7), 1.5), np.zeros(3)], np.r_[np.zeros(7), 50.0])
    np.testing.assert_allclose(actions[:, 0], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(actions[:, 7], 0.0)


def test_the_droid_preset_reads_velocities_as_droid_does() -> None:
    """DROID's RobotIKSolver: a velocity vector whose largest entry exceeds 1 is scaled down whole, then
    1 moves 0.2 rad per tick, whatever the loop rate."""
    joints, names, _ = franka()
    config = PolicyConfig(preset="droid", cameras={"exterior_image_1_left": "front"})
    io = PolicyIO.build(config, joints, names, ("front",), SOURCE)  # no control rate needed
    reply = np.array([[2.0, 1.0, 0, 0, 0, 0, 0, 1.0], [0.5, -0.5, 0, 0, 0, 0, 0, 1.0]])
    actions = io.actions(reply, np.r_[np.zeros(7), 0.0])
    np.testing.assert_allclose(actions[:, :2], [[0.2, 0.1], [0.3, 0.0]], atol=1e-12)


# -- end-effector steps ---------------------------------------------------------------------------

COGACT = [ActionSegment(kind="eef_delta", count=6), ActionSegment(kind="absolute", count=1)]


def cogact(frame: str, **options: Any) -> PolicyIO:
    return build(
        PolicyConfig(
            actions=[ActionSegment(kind="eef_delta", count=6, frame=frame, **options), ActionSegment(kind="absolute", count=1)]
        ),
        single(),
    )


TOOL_TURNED = np.array([0.4, 0.0, 0.3, 0.0, 0.0, math.pi / 2, 0.05])
"""The tool rotated 90 deg about the base's z axis."""


def test_a_plus_x_step_moves_along_world_x_or_along_the_tools_x_which_is_world_y() -> None:
    step = np.array([[0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.02]])
    world = cogact("world").actions(step, TOOL_TURNED)[0]
    tool = cogact("tool").actions(step, TOOL_TURNED)[0]
    np.testing.assert_allclose(world[:3], [0.5, 0.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(tool[:3], [0.4, 0.1, 0.3], atol=1e-12)
    for targets in (world, tool):
        assert geodesic_rad(targets[3:6], TOOL_TURNED[3:6]) < 1e-12
        assert targets[6] == 0.02


def test_a_roll_step_turns_about_the_world_x_or_the_tools_x() -> None:
    step = np.array([[0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.05]])
    state_rotation = Rotation.from_rotvec(TOOL_TURNED[3:6])
    roll = Rotation.from_euler("x", 0.3)
    world = cogact("world").actions(step, TOOL_TURNED)[0, 3:6]
    tool = cogact("tool").actions(step, TOOL_TURNED)[0, 3:6]
    assert geodesic_rad(world, (roll * state_rotation).as_rotvec()) < 1e-9
    assert geodesic_rad(tool, (state_rotation * roll).as_rotvec()) < 1e-9
    assert geodesic_rad(world, tool) > 0.1
    # the tool's x axis is the world's y axis: a tool-frame roll is a world-frame turn about y
    assert geodesic_rad(tool, (Rotation.from_euler("y", 0.3) * state_rotation).as_rotvec()) < 1e-9


@settings(max_examples=60, deadline=None)
@given(
    pose=st.tuples(positions, rotvecs),
    step=st.lists(st.floats(-0.5, 0.5), min_size=6, max_size=6).map(np.array),
)
def test_a_tool_frame_step_is_the_world_frame_step_seen_from_the_tool(
    pose: tuple[np.ndarray, np.ndarray], step: np.ndarray
) -> None:
    """Tool: p + R dp and R Rd. World: p + dp and Rd R. So a tool-frame step is the world-frame step
    R dp, R Rd R^-1."""
    position, rotvec = pose
    state = np.r_[position, rotvec, 0.05]
    rotation = Rotation.from_rotvec(rotvec)
    turn = Rotation.from_euler("xyz", step[3:])
    world_io = cogact("world")
    tool = cogact("tool").actions(np.r_[step, 0.05][None, :], state)
    world = world_io.actions(np.r_[step, 0.05][None, :], state)
    np.testing.assert_allclose(tool[0, :3], position + rotation.apply(step[:3]), atol=1e-9)
    np.testing.assert_allclose(world[0, :3], position + step[:3], atol=1e-9)
    assert geodesic_rad(tool[0, 3:6], (rotation * turn).as_rotvec()) < 1e-9
    assert geodesic_rad(world[0, 3:6], (turn * rotation).as_rotvec()) < 1e-9
    in_world = np.r_[rotation.apply(step[:3]), (rotation * turn * rotation.inv()).as_euler("xyz"), 0.05]
    assert_same_targets(world_io, tool, world_io.actions(in_world[None, :], state), atol=1e-9)


def test_the_euler_convention_and_scales_are_the_configs() -> None:
    step = np.array([[1.0, 0.0, 0.0, 0.2, 0.3, 0.4, 0.0]])
    state = np.zeros(7)
    extrinsic = cogact("world").actions(step, state)[0]
    intrinsic = cogact("world", euler="XYZ").actions(step, state)[0]
    assert geodesic_rad(extrinsic[3:6], Rotation.from_euler("xyz", [0.2, 0.3, 0.4]).as_rotvec()) < 1e-9
    assert geodesic_rad(intrinsic[3:6], Rotation.from_euler("XYZ", [0.2, 0.3, 0.4]).as_rotvec()) < 1e-9
    assert geodesic_rad(extrinsic[3:6], intrinsic[3:6]) > 0.01
    scaled = cogact("world", position_scale=0.01, rotation_scale=0.5).actions(step, state)[0]
    np.testing.assert_allclose(scaled[:3], [0.01, 0.0, 0.0])
    assert geodesic_rad(scaled[3:6], Rotation.from_euler("xyz", [0.1, 0.15, 0.2]).as_rotvec()) < 1e-9


def test_every_step_is_relative_to_the_observed_pose_unless_cumulative() -> None:
    steps = np.tile([0.1, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0], (3, 1))
    state = np.zeros(7)
    relative = cogact("tool").actions(steps, state)
    cumulative = cogact("tool", cumulative=True).actions(steps, state)
    np.testing.assert_allclose(relative[:, :3], np.tile([0.1, 0.0, 0.0], (3, 1)), atol=1e-12)
    np.testing.assert_allclose(relative[:, 5], 0.2, atol=1e-12)
    np.testing.assert_allclose(cumulative[:, 5], [0.2, 0.4, 0.6], atol=1e-12)
    expected_x = [0.1, 0.1 + 0.1 * math.cos(0.2), 0.1 + 0.1 * math.cos(0.2) + 0.1 * math.cos(0.4)]
    np.testing.assert_allclose(cumulative[:, 0], expected_x, atol=1e-12)


def test_eef_steps_take_six_columns_whatever_the_state_sends_and_nan_stays() -> None:
    io = build(PolicyConfig(rotation_format="quat_wxyz", actions=COGACT), single())
    assert (io.state_width, io.action_width) == (8, 7)
    steps = np.zeros((3, 7))
    steps[1, 4] = np.nan
    actions = io.actions(steps, TOOL_TURNED)
    assert np.isnan(actions[1, :6]).all() and np.isfinite(actions[[0, 2]]).all()
    cumulative = cogact("world", cumulative=True).actions(steps, TOOL_TURNED)
    assert np.isfinite(cumulative[0]).all() and np.isnan(cumulative[1:, :6]).all()


def test_a_bimanual_mix_of_kinds_maps_each_arm_on_its_own() -> None:
    config = PolicyConfig(
        actions=[
            ActionSegment(kind="eef_delta", count=6, frame="tool"),
            ActionSegment(kind="absolute", count=1),
            ActionSegment(kind="delta", count=6),
            ActionSegment(kind="absolute", count=1),
        ]
    )
    io = build(config)
    state = np.r_[TOOL_TURNED, 0.1, 0.2, 0.3, 0.0, 0.0, 0.5, 0.01]
    reply = np.array([[0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.01, 0.0, 0.0, 0.0, 0.0, 0.1, 0.07]])
    actions = io.actions(reply, state)[0]
    np.testing.assert_allclose(actions[:7], [0.4, 0.1, 0.3, 0.0, 0.0, math.pi / 2, 0.03], atol=1e-7)
    np.testing.assert_allclose(actions[7:], [0.11, 0.2, 0.3, 0.0, 0.0, 0.6, 0.07], atol=1e-7)


# -- the worker hands the observed state over -----------------------------------------------------


class ReplyingClient:
    def __init__(self, actions: np.ndarray) -> None:
        self.actions = actions

    def infer(self, observation: dict[str, Any], timeout_s: float | None) -> Any:
        return SimpleNamespace(actions=self.actions, server_timing={"infer_ms": 1.0})

    def close(self) -> None:
        pass


def test_the_worker_maps_a_reply_against_the_state_of_its_snapshot() -> None:
    io = build(PolicyConfig(actions=OPENPI_DELTA_MASK))
    state = np.r_[0.1, 0.2, 0.3, 0.0, 0.0, 1.0, 0.01, 0.4, 0.5, 0.6, 0.5, 0.0, 0.0, 0.02]
    delta = np.zeros((4, 14))
    delta[:, [6, 13]] = 0.05
    worker = InferenceWorker(ReplyingClient(delta), io, "wave")  # type: ignore[arg-type]
    try:
        worker.submit(Snapshot(tick=3, state=state, images={}, taken_s=0.0))
        result = worker.wait(timeout_s=30.0)
    finally:
        worker.close()
    assert isinstance(result, Inference), result
    expected = state.copy()
    expected[[6, 13]] = 0.05
    np.testing.assert_allclose(result.actions, np.tile(expected, (4, 1)), atol=1e-7)


# -- configs that cannot map ----------------------------------------------------------------------


def test_configs_parse_the_segments_from_yaml_mappings() -> None:
    config = PolicyConfig.model_validate(
        {
            "rotation_format": "quat_xyzw",
            "actions": [{"kind": "eef_delta", "count": 6, "frame": "tool", "cumulative": True}, {"kind": "absolute", "count": 1}],
        }
    )
    assert build(config, single()).action_width == 7
    assert PolicyConfig().actions is None and PolicyConfig().rotation_format == "rotvec"


@pytest.mark.parametrize(
    ("config", "key", "reason"),
    [
        (PolicyConfig(actions=[ActionSegment(kind="delta", count=6)]), "policy.actions", "count 6 features"),
        (
            PolicyConfig(actions=[ActionSegment(kind="delta", count=4), ActionSegment(kind="absolute", count=10)]),
            "policy.actions[0].count",
            "splits the rotation left_rx.pos, left_ry.pos, left_rz.pos",
        ),
        (
            PolicyConfig(actions=[ActionSegment(kind="velocity", count=7), ActionSegment(kind="absolute", count=7)]),
            "policy.actions[0].kind",
            "velocity is for joints",
        ),
        (
            PolicyConfig(actions=[ActionSegment(kind="eef_delta", count=7), ActionSegment(kind="absolute", count=7)]),
            "policy.actions[0].kind",
            "eef_delta moves whole Cartesian poses",
        ),
        (
            PolicyConfig(
                actions=[
                    ActionSegment(kind="absolute", count=1),
                    ActionSegment(kind="eef_delta", count=6),
                    ActionSegment(kind="absolute", count=7),
                ]
            ),
            "policy.actions[1].kind",
            "eef_delta moves whole Cartesian poses",
        ),
        (
            PolicyConfig(actions=[ActionSegment(kind="delta", count=14, frame="tool")]),
            "policy.actions[0].frame",
            "only for kind eef_delta, this segment is delta",
        ),
        (
            PolicyConfig(actions=[ActionSegment(kind="absolute", count=14, max_step=0.2)]),
            "policy.actions[0].max_step",
            "only for kind velocity",
        ),
        (
            PolicyConfig(
                actions=[*COGACT, ActionSegment(kind="eef_delta", count=6, euler="xxz"), ActionSegment(kind="absolute", count=1)]
            ),
            "policy.actions[2].euler",
            "'xxz' is not an Euler convention",
        ),
        (PolicyConfig(scale={"left_rx.pos": 2.0}), "policy.scale", "left_rx.pos belong to a pose's rotation"),
        (PolicyConfig(offset={"right_rz.pos": 0.1}), "policy.offset", "right_rz.pos belong to a pose's rotation"),
        (
            PolicyConfig(
                joints=[f"left_{n}.pos" for n in ("x", "y", "z", "rx", "rz", "ry", "gripper")] + [f"right_{n}.pos" for n in ARM]
            ),
            "policy.joints",
            "must stay together and in order",
        ),
        (PolicyConfig(pads_actions_to=15, rotation_format="rot6d"), "policy.pads_actions_to", "the 20 action values"),
    ],
)
def test_segments_that_cannot_map_name_the_key(config: PolicyConfig, key: str, reason: str) -> None:
    assert reason in refused(config, key)


def test_a_rotation_format_without_a_pose_is_refused() -> None:
    message = refused(PolicyConfig(rotation_format="quat_wxyz"), "policy.rotation_format", franka())
    assert "the follower has none" in message


def test_velocity_without_a_control_rate_is_refused_naming_the_segment() -> None:
    message = refused(
        PolicyConfig(preset="droid", cameras={"exterior_image_1_left": "front"}, actions=RAD_PER_S),
        "policy.actions[0].kind",
        franka(),
        None,
    )
    assert "no control rate" in message and "max_step" in message
