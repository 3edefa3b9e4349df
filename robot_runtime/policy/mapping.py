"""How a follower's joints and cameras become a policy server's observation, and how the actions it
returns become joint targets again, for openpi's aloha, droid and libero layouts or a custom one.

Everything a config can get wrong is checked once, when the mapping is built, so a robot never starts
with a mapping that fails on the first inference."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_runtime.policy.config import PolicyConfig
from robot_runtime.policy.images import letterbox
from robot_runtime.robot import JointSpec


class MappingError(ValueError):
    """A policy section that cannot map onto this robot; the message names the file, the key and why."""


class ReplyShapeError(ValueError):
    """The server's actions do not fit the follower's joints; the message says what was expected and what came."""


class ActionWidthError(ReplyShapeError):
    """The server's actions are wider than the follower's action space and the config does not say the
    server pads them: it answers for another robot, and so will every later reply."""


Layout = Callable[[PolicyConfig, np.ndarray, dict[str, np.ndarray], str], dict[str, Any]]
"""(config, state in policy units, letterboxed HWC images by policy image name, prompt) -> observation."""


def _chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def _aloha(config: PolicyConfig, state: np.ndarray, images: dict[str, np.ndarray], prompt: str) -> dict[str, Any]:
    return {"state": state, "images": {name: _chw(image) for name, image in images.items()}, "prompt": prompt}


def _droid(config: PolicyConfig, state: np.ndarray, images: dict[str, np.ndarray], prompt: str) -> dict[str, Any]:
    return {
        "observation/joint_position": state[:7],
        "observation/gripper_position": state[7:],
        **{f"observation/{name}": image for name, image in images.items()},
        "prompt": prompt,
    }


def _libero(config: PolicyConfig, state: np.ndarray, images: dict[str, np.ndarray], prompt: str) -> dict[str, Any]:
    return {"observation/state": state, **{f"observation/{name}": image for name, image in images.items()}, "prompt": prompt}


def _custom(config: PolicyConfig, state: np.ndarray, images: dict[str, np.ndarray], prompt: str) -> dict[str, Any]:
    arrange = _chw if config.image_layout == "chw" else np.ascontiguousarray
    return {
        config.state_key: state,
        **{config.image_key.format(camera=name): arrange(image) for name, image in images.items()},
        "prompt": prompt,
    }


@dataclass(frozen=True)
class PresetSpec:
    """What one of openpi's example clients sends, and what it needs from the robot to send it."""

    layout: Layout
    images: tuple[str, ...] | None
    """Policy image names it knows; None: any (custom)."""
    required: tuple[str, ...]
    """Policy images it cannot run without."""
    joints: int | None
    """How many joints its state has; None: the follower's."""
    joints_meaning: str
    actions_per_chunk: int | None
    si_units: bool
    """State in radians and grippers 0..1 by default (openpi's conventions); otherwise the joints' own units."""


PRESETS: dict[str, PresetSpec] = {
    "aloha": PresetSpec(
        _aloha,
        images=("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"),
        required=("cam_high",),
        joints=14,
        joints_meaning="two 6-joint arms + 2 grippers",
        actions_per_chunk=25,
        si_units=True,
    ),
    "droid": PresetSpec(
        _droid,
        images=("exterior_image_1_left", "wrist_image_left"),
        required=("exterior_image_1_left",),
        joints=8,
        joints_meaning="7 arm joints + the gripper last",
        actions_per_chunk=8,
        si_units=True,
    ),
    "libero": PresetSpec(
        _libero,
        images=("image", "wrist_image"),
        required=("image",),
        joints=8,
        joints_meaning="the 8 values of LIBERO's state",
        actions_per_chunk=5,
        si_units=True,
    ),
    "custom": PresetSpec(
        _custom, images=None, required=(), joints=None, joints_meaning="", actions_per_chunk=None, si_units=False
    ),
}
"""Image names are the `policy.cameras` keys: aloha sends them under "images", droid and libero as `observation/<name>`."""

SI_SCALE = {"deg": math.pi / 180, "percent": 0.01, "rad": 1.0, "m": 1.0}
"""Joint unit -> factor to openpi's units (radians, metres, grippers 0..1)."""


@dataclass(frozen=True, eq=False)
class PolicyIO:
    """The checked mapping between one follower rig (its order, its units) and one policy server."""

    config: PolicyConfig
    actions_per_chunk: int | None
    """Actions executed from each chunk; None: the whole chunk."""
    state_names: tuple[str, ...]
    """Follower feature names in the policy's order."""
    image_sources: dict[str, str]
    """Policy image name -> the camera that provides it."""
    order: np.ndarray = field(repr=False)
    """Rig index of each policy joint."""
    scale: np.ndarray = field(repr=False)
    offset: np.ndarray = field(repr=False)
    """Per policy joint: policy value = joint value * scale + offset."""

    @classmethod
    def build(
        cls, config: PolicyConfig, joints: Sequence[JointSpec], feature_names: Sequence[str], cameras: Sequence[str], source: Path
    ) -> PolicyIO:
        """`joints` and `feature_names` are the follower rig's, in rig order; `cameras` the camera names
        available (none with --no-cameras). Raises MappingError naming `source` and the key to fix."""
        if len(joints) != len(feature_names):
            raise ValueError(f"{len(joints)} joints but {len(feature_names)} feature names")
        preset = PRESETS[config.preset]
        state_names = _policy_order(config, feature_names, source)
        if preset.joints is not None and len(state_names) != preset.joints:
            raise MappingError(
                f"{source}: key 'policy.preset': {config.preset} expects {preset.joints} joints ({preset.joints_meaning}), "
                f"the follower has {len(state_names)} ({', '.join(feature_names)}); set policy.preset: custom and its keys for "
                "this robot"
            )
        rig_index = {name: i for i, name in enumerate(feature_names)}
        order = np.array([rig_index[name] for name in state_names], dtype=np.intp)
        units = {name: joints[rig_index[name]].unit for name in state_names}
        scale = _per_joint(
            config.scale, "scale", state_names, source, lambda name: _default_scale(preset, name, units[name], source)
        )
        if (scale == 0).any():
            zero = [name for name, s in zip(state_names, scale, strict=True) if s == 0]
            raise MappingError(f"{source}: key 'policy.scale': a scale of 0 ({', '.join(zero)}) cannot be undone for the actions")
        offset = _per_joint(config.offset, "offset", state_names, source, lambda name: 0.0)
        _check_image_key(config, source)
        image_sources = _image_sources(config, preset, cameras, source)
        if config.pads_actions_to is not None and config.pads_actions_to < len(state_names):
            raise MappingError(
                f"{source}: key 'policy.pads_actions_to': {config.pads_actions_to} is narrower than the follower's "
                f"{len(state_names)} joints; a server pads its actions to at least as many columns as it uses"
            )
        actions_per_chunk = config.actions_per_chunk or preset.actions_per_chunk
        return cls(config, actions_per_chunk, state_names, image_sources, order, scale, offset)

    def observation(self, state: np.ndarray, images: Mapping[str, np.ndarray], prompt: str) -> dict[str, Any]:
        """The message for the server: `state` in rig order and joint units, `images` full-size RGB by
        camera name. Letterboxing happens here, so call this off the control tick."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (len(self.order),):
            raise ValueError(f"expected a state of {len(self.order)} joints, got shape {state.shape}")
        policy_state = (state[self.order] * self.scale + self.offset).astype(np.float32)
        sized = {name: letterbox(images[camera], self.config.image_size) for name, camera in self.image_sources.items()}
        return PRESETS[self.config.preset].layout(self.config, policy_state, sized, prompt)

    def actions(self, actions: np.ndarray) -> np.ndarray:
        """A server's [horizon, dim] chunk as [horizon, joints] float64 in rig order and joint units.
        dim must be the number of joints, or `policy.pads_actions_to` whose extra columns are dropped.
        NaN is left for the safety filter."""
        actions = np.asarray(actions, dtype=np.float64)
        n = len(self.order)
        padded = self.config.pads_actions_to
        widths = f"{n}" if padded in (None, n) else f"{n} or {padded} (policy.pads_actions_to)"
        if actions.ndim != 2 or actions.shape[1] < n:
            raise ReplyShapeError(
                f"expected actions of shape (horizon, {widths}) for {', '.join(self.state_names)}, got shape {actions.shape}"
            )
        if actions.shape[1] not in (n, padded):
            raise ActionWidthError(
                f"the server's actions are {actions.shape[1]} wide, the follower's action space is {n} wide "
                f"({', '.join(self.state_names)}): is the server serving a policy for another robot? If it pads its "
                f"actions with unused columns, set policy.pads_actions_to: {actions.shape[1]} in the robot config"
            )
        joints = np.empty((actions.shape[0], n), dtype=np.float64)
        joints[:, self.order] = (actions[:, :n] - self.offset) / self.scale
        return joints


def _policy_order(config: PolicyConfig, feature_names: Sequence[str], source: Path) -> tuple[str, ...]:
    if not config.joints:
        return tuple(feature_names)
    missing = [name for name in feature_names if name not in config.joints]
    unknown = [name for name in config.joints if name not in feature_names]
    repeated = sorted({name for name in config.joints if config.joints.count(name) > 1})
    problems = [
        f"{what}: {', '.join(names)}"
        for what, names in (("missing", missing), ("unknown", unknown), ("listed twice", repeated))
        if names
    ]
    if problems:
        raise MappingError(
            f"{source}: key 'policy.joints': must list every follower feature once ({'; '.join(problems)}); "
            f"the follower's features are {', '.join(feature_names)}"
        )
    return tuple(config.joints)


def _default_scale(preset: PresetSpec, name: str, unit: str, source: Path) -> float:
    if not preset.si_units:
        return 1.0
    if unit not in SI_SCALE:
        raise MappingError(f"{source}: key 'policy.scale.{name}': no default for a joint in {unit!r}; set it")
    return SI_SCALE[unit]


def _per_joint(
    values: Mapping[str, float], key: str, names: Sequence[str], source: Path, default: Callable[[str], float]
) -> np.ndarray:
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise MappingError(
            f"{source}: key 'policy.{key}': unknown joint features {', '.join(unknown)} (the follower's: {', '.join(names)})"
        )
    return np.array([values[name] if name in values else default(name) for name in names], dtype=np.float64)


def _check_image_key(config: PolicyConfig, source: Path) -> None:
    if config.preset != "custom":
        return
    try:
        config.image_key.format(camera="")
    except (KeyError, IndexError, ValueError) as exc:
        raise MappingError(
            f"{source}: key 'policy.image_key': {config.image_key!r} is not a template with only {{camera}} ({exc!r})"
        ) from None
    if "{camera}" not in config.image_key:
        raise MappingError(
            f"{source}: key 'policy.image_key': {config.image_key!r} must contain {{camera}}, or every camera lands on one key"
        )


def _image_sources(config: PolicyConfig, preset: PresetSpec, cameras: Sequence[str], source: Path) -> dict[str, str]:
    choices = (
        f"one of: {', '.join(cameras)}" if cameras else "a camera, but none are available (none configured, or --no-cameras)"
    )
    for name, camera in config.cameras.items():
        if preset.images is not None and name not in preset.images:
            raise MappingError(
                f"{source}: key 'policy.cameras.{name}': {config.preset} has no image {name!r} (its images: "
                f"{', '.join(preset.images)})"
            )
        if camera not in cameras:
            raise MappingError(f"{source}: key 'policy.cameras.{name}': there is no camera {camera!r}; use {choices}")
    if config.cameras:
        sources = dict(config.cameras)
    elif preset.images is None:
        sources = {camera: camera for camera in cameras}
    else:
        sources = {name: name for name in preset.images if name in cameras}
    for name in preset.required:
        if name not in sources:
            raise MappingError(
                f"{source}: key 'policy.cameras.{name}': {config.preset} needs this image; set policy.cameras.{name} to {choices}"
            )
    return sources
