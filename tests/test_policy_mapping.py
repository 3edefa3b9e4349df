"""The observation a policy server receives for each preset, the actions mapped back onto the follower,
and the errors a policy section that cannot map is refused with (file, key, reason)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_runtime.policy.config import ActionSegment, PolicyConfig
from robot_runtime.policy.images import letterbox
from robot_runtime.policy.mapping import ActionWidthError, MappingError, PolicyIO, ReplyShapeError
from robot_runtime.robot import JointSpec

SOURCE = Path("/robots/lab_arm.yaml")
RATE_HZ = 15.0
SO_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ALOHA_ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
CAMERAS = ("front", "wrist", "top")


def spec(name: str) -> JointSpec:
    unit = "percent" if name == "gripper" else "deg"
    return JointSpec(name, unit, 0.0 if unit == "percent" else -180.0, 100.0 if unit == "percent" else 180.0)


def so100() -> tuple[list[JointSpec], list[str]]:
    return [spec(n) for n in SO_JOINTS], [f"{n}.pos" for n in SO_JOINTS]


def aloha_rig() -> tuple[list[JointSpec], list[str]]:
    joints = [spec(n) for _ in ("left", "right") for n in ALOHA_ARM]
    return joints, [f"{side}_{n}.pos" for side in ("left", "right") for n in ALOHA_ARM]


def franka() -> tuple[list[JointSpec], list[str]]:
    names = [f"joint_{i}" for i in range(1, 8)] + ["gripper"]
    joints = [
        JointSpec(n, "percent" if n == "gripper" else "rad", -3.0 if n != "gripper" else 0.0, 3.0 if n != "gripper" else 100.0)
        for n in names
    ]
    return joints, [f"{n}.pos" for n in names]


def build(config: PolicyConfig, rig: tuple[list[JointSpec], list[str]], cameras: tuple[str, ...] = CAMERAS) -> PolicyIO:
    joints, names = rig
    return PolicyIO.build(config, joints, names, cameras, SOURCE, rate_hz=RATE_HZ)


def camera_images(height: int = 480, width: int = 640) -> dict[str, np.ndarray]:
    """One flat colour per camera, so the test can tell which camera an image came from."""
    return {name: np.full((height, width, 3), 40 * (i + 1), dtype=np.uint8) for i, name in enumerate(CAMERAS)}


def refused(config: PolicyConfig, rig: tuple[list[JointSpec], list[str]], key: str, cameras: tuple[str, ...] = CAMERAS) -> str:
    """Building must fail with a message naming the file and the key; returns it for the reason's checks."""
    with pytest.raises(MappingError) as error:
        build(config, rig, cameras)
    message = str(error.value)
    assert message.startswith(f"{SOURCE}: key '{key}': "), message
    return message


# -- presets -------------------------------------------------------------------------------------


def test_aloha_sends_state_chw_images_and_prompt_in_radians_and_gripper_fractions() -> None:
    io = build(PolicyConfig(preset="aloha", cameras={"cam_high": "top", "cam_left_wrist": "wrist"}), aloha_rig())
    state = np.array([90.0, -45, 0, 0, 0, 180, 50] * 2)
    images = camera_images()
    obs = io.observation(state, images, "fold the towel")
    assert set(obs) == {"state", "images", "prompt"}
    assert obs["prompt"] == "fold the towel"
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (14,)
    np.testing.assert_allclose(obs["state"][:7], [math.pi / 2, -math.pi / 4, 0, 0, 0, math.pi, 0.5], rtol=1e-6)
    assert set(obs["images"]) == {"cam_high", "cam_left_wrist"}, "optional images are only sent when mapped"
    for name, camera in (("cam_high", "top"), ("cam_left_wrist", "wrist")):
        image = obs["images"][name]
        assert image.dtype == np.uint8 and image.shape == (3, 224, 224) and image.flags.c_contiguous
        np.testing.assert_array_equal(image, letterbox(images[camera], 224).transpose(2, 0, 1))


def test_aloha_takes_cameras_named_like_its_images_when_none_are_mapped() -> None:
    io = build(PolicyConfig(preset="aloha"), aloha_rig(), cameras=("cam_high", "cam_right_wrist", "side"))
    assert io.image_sources == {"cam_high": "cam_high", "cam_right_wrist": "cam_right_wrist"}
    assert io.actions_per_chunk == 25


def test_droid_splits_the_state_into_seven_joints_and_the_gripper_with_hwc_images() -> None:
    io = build(PolicyConfig(preset="droid", cameras={"exterior_image_1_left": "front", "wrist_image_left": "wrist"}), franka())
    images = camera_images()
    obs = io.observation(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 80.0]), images, "pick the cup")
    assert set(obs) == {
        "observation/exterior_image_1_left",
        "observation/wrist_image_left",
        "observation/joint_position",
        "observation/gripper_position",
        "prompt",
    }
    np.testing.assert_allclose(obs["observation/joint_position"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], rtol=1e-6)
    np.testing.assert_allclose(obs["observation/gripper_position"], [0.8], rtol=1e-6)
    assert obs["observation/joint_position"].dtype == np.float32 and obs["observation/gripper_position"].dtype == np.float32
    for key, camera in (("observation/exterior_image_1_left", "front"), ("observation/wrist_image_left", "wrist")):
        assert obs[key].dtype == np.uint8 and obs[key].shape == (224, 224, 3) and obs[key].flags.c_contiguous
        np.testing.assert_array_equal(obs[key], letterbox(images[camera], 224))
    assert io.actions_per_chunk == 8


def test_libero_sends_eight_state_values_and_hwc_images() -> None:
    io = build(PolicyConfig(preset="libero", cameras={"image": "front"}), franka())
    obs = io.observation(np.zeros(8), camera_images(), "open the drawer")
    assert set(obs) == {"observation/image", "observation/state", "prompt"}
    assert obs["observation/state"].shape == (8,) and obs["observation/state"].dtype == np.float32
    assert obs["observation/image"].shape == (224, 224, 3) and obs["observation/image"].dtype == np.uint8
    assert io.actions_per_chunk == 5


def test_custom_sends_every_camera_under_its_own_name_and_the_joints_unscaled() -> None:
    io = build(PolicyConfig(), so100())
    state = np.array([10.0, -20, 30, -40, 50, 60])
    obs = io.observation(state, camera_images(), "wave")
    assert set(obs) == {
        "observation/state",
        "observation/images/front",
        "observation/images/wrist",
        "observation/images/top",
        "prompt",
    }
    np.testing.assert_array_equal(obs["observation/state"], state.astype(np.float32))
    assert obs["observation/state"].dtype == np.float32
    assert obs["observation/images/top"].shape == (224, 224, 3)
    assert io.actions_per_chunk is None, "custom executes the whole chunk unless told otherwise"


def test_custom_keys_layout_size_and_chunk_come_from_the_config() -> None:
    config = PolicyConfig(
        state_key="state",
        image_key="images.{camera}",
        image_layout="chw",
        image_size=96,
        actions_per_chunk=12,
        cameras={"main": "front"},
    )
    io = build(config, so100())
    obs = io.observation(np.zeros(6), camera_images(), "wave")
    assert set(obs) == {"state", "images.main", "prompt"}
    assert obs["images.main"].shape == (3, 96, 96) and obs["images.main"].flags.c_contiguous
    assert io.actions_per_chunk == 12


def test_custom_without_cameras_sends_only_state_and_prompt() -> None:
    obs = build(PolicyConfig(), so100(), cameras=()).observation(np.zeros(6), {}, "wave")
    assert set(obs) == {"observation/state", "prompt"}


def test_an_image_already_at_the_size_is_sent_as_recorded() -> None:
    io = build(PolicyConfig(cameras={"front": "front"}), so100())
    image = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(io.observation(np.zeros(6), {"front": image}, "")["observation/images/front"], image)


def test_a_state_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected a state of 6 joints, got shape \(5,\)"):
        build(PolicyConfig(), so100()).observation(np.zeros(5), camera_images(), "wave")


# -- joints and units ----------------------------------------------------------------------------


def test_joints_follow_the_configured_order_and_actions_come_back_in_rig_order() -> None:
    _, names = so100()
    policy_order = list(reversed(names))
    io = build(PolicyConfig(joints=policy_order), so100())
    assert io.state_names == tuple(policy_order)
    state = np.arange(6.0)
    np.testing.assert_array_equal(io.observation(state, camera_images(), "")["observation/state"], state[::-1])
    np.testing.assert_array_equal(io.actions(state[::-1][None, :]), state[None, :])


def test_unit_defaults_for_openpi_presets() -> None:
    names = ["a", "b", "c", "d", "e", "f", "g", "h"]
    units = ["deg", "rad", "m", "percent", "deg", "deg", "deg", "percent"]
    joints = [JointSpec(n, u, -1.0, 1.0) for n, u in zip(names, units, strict=True)]
    io = build(PolicyConfig(preset="libero", cameras={"image": "front"}), (joints, [f"{n}.pos" for n in names]))
    np.testing.assert_allclose(io.scale, [math.pi / 180, 1, 1, 0.01, math.pi / 180, math.pi / 180, math.pi / 180, 0.01])
    np.testing.assert_array_equal(io.offset, np.zeros(8))


def test_scale_and_offset_override_single_joints() -> None:
    io = build(PolicyConfig(scale={"gripper.pos": 0.02}, offset={"elbow_flex.pos": -90.0}), so100())
    state = np.array([1.0, 2, 3, 4, 5, 50])
    np.testing.assert_allclose(io.observation(state, camera_images(), "")["observation/state"], [1, 2, -87, 4, 5, 1.0])
    np.testing.assert_allclose(io.actions(np.array([[1.0, 2, -87, 4, 5, 1.0]])), state[None, :])


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    preset=st.sampled_from(["droid", "libero", "custom"]),
    units=st.lists(st.sampled_from(["deg", "rad", "percent", "m"]), min_size=8, max_size=8),
)
def test_actions_undo_the_observation_units_for_any_order_scale_and_offset(
    data: st.DataObject, preset: str, units: list[str]
) -> None:
    names = [f"j{i}.pos" for i in range(8)]
    joints = [JointSpec(f"j{i}", unit, -500.0, 500.0) for i, unit in enumerate(units)]
    order = data.draw(st.permutations(names))
    scaled = data.draw(st.lists(st.sampled_from(names), unique=True))
    scale = {n: data.draw(st.floats(0.01, 100).flatmap(lambda s: st.sampled_from([s, -s]))) for n in scaled}
    offset = {n: data.draw(st.floats(-100, 100)) for n in data.draw(st.lists(st.sampled_from(names), unique=True))}
    config = PolicyConfig(
        preset=preset,
        joints=order,
        scale=scale,
        offset=offset,
        cameras={"image": "front"} if preset == "libero" else {},
        actions=[ActionSegment(kind="absolute", count=8)],  # droid's own default reads velocities (test_policy_action_kinds)
    )
    io = PolicyIO.build(config, joints, names, ("front", "exterior_image_1_left"), SOURCE)
    state = np.array(data.draw(st.lists(st.floats(-180, 180), min_size=8, max_size=8)))
    obs = io.observation(
        state, {"front": np.zeros((48, 64, 3), np.uint8), "exterior_image_1_left": np.zeros((48, 64, 3), np.uint8)}, ""
    )
    sent = (
        np.concatenate([obs["observation/joint_position"], obs["observation/gripper_position"]])
        if preset == "droid"
        else obs["observation/state"]
    )
    back = io.actions(sent[None, :].astype(np.float64))
    # float32 on the wire: relative to the largest policy value, mapped back through the scale
    tolerance = 1e-6 * (np.abs(sent).max() + 1) / np.abs(io.scale).min()
    np.testing.assert_allclose(back[0], state, atol=tolerance)


# -- actions -------------------------------------------------------------------------------------


def test_replies_padded_to_the_declared_width_are_cut_to_the_joints_used() -> None:
    io = build(PolicyConfig(pads_actions_to=32), so100())
    reply = np.arange(50 * 32, dtype=np.float32).reshape(50, 32)
    actions = io.actions(reply)
    assert actions.shape == (50, 6) and actions.dtype == np.float64
    np.testing.assert_array_equal(actions, reply[:, :6])
    np.testing.assert_array_equal(io.actions(reply[:, :6]), reply[:, :6])  # an unpadded reply fits too


@pytest.mark.parametrize("pads", [None, 32])
def test_a_reply_wider_than_the_joints_and_not_declared_as_padding_names_both_widths(pads: int | None) -> None:
    """A 14-wide reply meant for a bimanual robot must never drive a 6-joint arm with its first 6 columns."""
    io = build(PolicyConfig(pads_actions_to=pads), so100())
    with pytest.raises(ActionWidthError) as error:
        io.actions(np.zeros((50, 14)))
    message = str(error.value)
    assert "the server's actions are 14 wide, the follower's action space is 6 wide" in message
    assert "shoulder_pan.pos" in message and "policy.pads_actions_to: 14" in message


def test_a_padding_narrower_than_the_joints_is_refused_naming_the_key() -> None:
    message = refused(PolicyConfig(pads_actions_to=4), so100(), "policy.pads_actions_to")
    assert "4 is narrower than the follower's 6 joints" in message


def test_aloha_actions_map_back_to_degrees_and_percent() -> None:
    io = build(PolicyConfig(preset="aloha", cameras={"cam_high": "top"}), aloha_rig())
    reply = np.tile([math.pi / 2, 0, 0, 0, 0, 0, 0.25], (50, 2))
    np.testing.assert_allclose(io.actions(reply)[0], [90, 0, 0, 0, 0, 0, 25] * 2)


@pytest.mark.parametrize("shape", [(6,), (50, 5), (1, 50, 6), ()])
def test_replies_that_cannot_map_say_what_was_expected_and_what_came(shape: tuple[int, ...]) -> None:
    io = build(PolicyConfig(), so100())
    with pytest.raises(ReplyShapeError) as error:
        io.actions(np.zeros(shape))
    assert "expected actions of shape (horizon, 6)" in str(error.value)
    assert f"got shape {shape}" in str(error.value)


def test_nan_passes_through_for_the_safety_filter_to_reject() -> None:
    io = build(PolicyConfig(preset="libero", cameras={"image": "front"}), franka())
    reply = np.zeros((8, 8))
    reply[3, 2] = np.nan
    actions = io.actions(reply)
    assert np.isnan(actions[3, 2]) and np.isfinite(np.delete(actions.ravel(), 3 * 8 + 2)).all()


def test_nan_in_droid_velocities_stays_in_every_target_integrated_from_it() -> None:
    """DROID scales a velocity vector by its largest entry, so one NaN spoils its whole tick and every later one."""
    io = build(PolicyConfig(preset="droid", cameras={"exterior_image_1_left": "front"}), franka())
    reply = np.zeros((8, 8))
    reply[3, 2] = np.nan
    actions = io.actions(reply, np.zeros(8))
    assert np.isnan(actions[3:, :7]).all()
    assert np.isfinite(actions[:3]).all() and np.isfinite(actions[:, 7]).all()


# -- configs that cannot map ---------------------------------------------------------------------


def test_aloha_on_a_six_joint_arm_says_what_it_expects_and_suggests_custom() -> None:
    message = refused(PolicyConfig(preset="aloha", cameras={"cam_high": "top"}), so100(), "policy.preset")
    assert "aloha expects 14 joints (two 6-joint arms + 2 grippers)" in message
    assert "the follower has 6" in message and "policy.preset: custom" in message


@pytest.mark.parametrize("preset", ["droid", "libero"])
def test_droid_and_libero_need_eight_joints(preset: str) -> None:
    message = refused(PolicyConfig(preset=preset), so100(), "policy.preset")
    assert f"{preset} expects 8 joints" in message and "the follower has 6" in message


def test_an_unknown_policy_image_name_lists_the_presets_images() -> None:
    message = refused(
        PolicyConfig(preset="aloha", cameras={"cam_high": "top", "cam_side": "front"}), aloha_rig(), "policy.cameras.cam_side"
    )
    assert "aloha has no image 'cam_side'" in message
    assert "cam_high, cam_low, cam_left_wrist, cam_right_wrist" in message


def test_a_camera_that_does_not_exist_names_the_cameras_there_are() -> None:
    message = refused(PolicyConfig(preset="aloha", cameras={"cam_high": "overhead"}), aloha_rig(), "policy.cameras.cam_high")
    assert "there is no camera 'overhead'" in message and "one of: front, wrist, top" in message


def test_a_required_image_without_a_camera_names_the_key_to_set() -> None:
    message = refused(PolicyConfig(preset="aloha"), aloha_rig(), "policy.cameras.cam_high")
    assert "set policy.cameras.cam_high to one of: front, wrist, top" in message
    message = refused(
        PolicyConfig(preset="droid", cameras={"wrist_image_left": "wrist"}), franka(), "policy.cameras.exterior_image_1_left"
    )
    assert "set policy.cameras.exterior_image_1_left to one of: front, wrist, top" in message


def test_a_required_image_with_no_cameras_at_all_says_so() -> None:
    message = refused(PolicyConfig(preset="aloha"), aloha_rig(), "policy.cameras.cam_high", cameras=())
    assert "none are available" in message and "--no-cameras" in message


@pytest.mark.parametrize(
    ("joints", "reason"),
    [
        (["shoulder_pan.pos", "shoulder_lift.pos"], "missing: elbow_flex.pos, wrist_flex.pos, wrist_roll.pos, gripper.pos"),
        ([f"{n}.pos" for n in SO_JOINTS] + ["elbow.pos"], "unknown: elbow.pos"),
        ([f"{n}.pos" for n in SO_JOINTS] + ["gripper.pos"], "listed twice: gripper.pos"),
    ],
)
def test_policy_joints_must_list_every_follower_feature_once(joints: list[str], reason: str) -> None:
    message = refused(PolicyConfig(joints=joints), so100(), "policy.joints")
    assert reason in message and "the follower's features are shoulder_pan.pos" in message


@pytest.mark.parametrize("key", ["scale", "offset"])
def test_scale_and_offset_of_unknown_features_are_refused(key: str) -> None:
    message = refused(PolicyConfig(**{key: {"gripper": 2.0}}), so100(), f"policy.{key}")
    assert "unknown joint features gripper" in message and "gripper.pos" in message


def test_a_scale_of_zero_is_refused_because_actions_could_not_be_mapped_back() -> None:
    message = refused(PolicyConfig(scale={"gripper.pos": 0.0}), so100(), "policy.scale")
    assert "gripper.pos" in message and "cannot be undone" in message


def test_a_joint_unit_without_an_openpi_convention_needs_its_scale_set() -> None:
    joints = [JointSpec(f"j{i}", "ticks" if i == 3 else "rad", -1.0, 1.0) for i in range(8)]
    names = [f"j{i}.pos" for i in range(8)]
    message = refused(PolicyConfig(preset="libero", cameras={"image": "front"}), (joints, names), "policy.scale.j3.pos")
    assert "'ticks'" in message
    build(PolicyConfig(preset="libero", cameras={"image": "front"}, scale={"j3.pos": 0.001}), (joints, names))


@pytest.mark.parametrize("image_key", ["observation/images", "images/{name}", "images/{camera"])
def test_a_custom_image_key_must_be_a_template_with_the_camera(image_key: str) -> None:
    message = refused(PolicyConfig(image_key=image_key), so100(), "policy.image_key")
    assert image_key in message and "{camera}" in message
