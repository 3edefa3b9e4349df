"""How a follower's joints and cameras become a policy server's observation, and how the actions it
returns become joint targets again, for openpi's aloha, droid and libero layouts or a custom one.

The policy's values are the follower's features in the policy's order, scaled, with each Cartesian
pose's rotation in the policy's rotation format. Its actions are read segment by segment (absolute,
delta from the observed state, joint velocity, end-effector step; see ActionSegment) and always come
back as absolute targets in rig order and joint units, rotations as canonical rotation vectors.

Everything a config can get wrong is checked once, when the mapping is built, so a robot never starts
with a mapping that fails on the first inference."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from robot_runtime.policy.config import ActionSegment, PolicyConfig, RotationFormat
from robot_runtime.policy.images import letterbox
from robot_runtime.robot import JointSpec, PoseSpec
from robot_runtime.rotations import canonical_rotvec, from_quat_wxyz


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
    actions: tuple[ActionSegment, ...] | None = None
    """What its action values mean when `policy.actions` is unset; None: absolute targets throughout."""


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
        # DROID's runtime (RobotIKSolver) reads the 7 arm values as velocities normalised to [-1, 1], scaled down
        # together when one exceeds 1, each tick moving 0.2 rad per unit; the gripper is an absolute position.
        actions=(ActionSegment(kind="velocity", count=7, max_step=0.2), ActionSegment(kind="absolute", count=1)),
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

ROTATION_WIDTH: dict[str, int] = {"rotvec": 3, "quat_wxyz": 4, "quat_xyzw": 4, "rot6d": 6}
EEF_DELTA_WIDTH = 6
"""[dx, dy, dz, droll, dpitch, dyaw] per pose, whatever the rotation format."""
DEGENERATE = 1e-9
"""A quaternion or 6D column shorter than this names no rotation."""
EEF_OPTIONS = ("frame", "position_scale", "rotation_scale", "euler", "cumulative")


def encode_rotation(rotvec: np.ndarray, fmt: RotationFormat) -> np.ndarray:
    """Rotation vectors [..., 3] in `fmt` [..., width]; rotvec is sent as it is, quaternions with w >= 0."""
    if fmt == "rotvec":
        return np.asarray(rotvec, dtype=np.float64)
    rotation = Rotation.from_rotvec(rotvec)
    if fmt == "rot6d":
        matrix = rotation.as_matrix()
        return np.concatenate([matrix[..., :, 0], matrix[..., :, 1]], axis=-1)
    return rotation.as_quat(canonical=True, scalar_first=fmt == "quat_wxyz")


def decode_rotation(values: np.ndarray, fmt: RotationFormat) -> np.ndarray:
    """Rows [n, width] in `fmt` as canonical rotation vectors [n, 3]. A row that is not finite or names
    no rotation (a zero quaternion, parallel 6D columns) becomes NaN, for the safety filter to reject."""
    rotvecs = np.full((len(values), 3), np.nan)
    usable = np.isfinite(values).all(axis=1)
    finite = np.where(usable[:, None], values, 0.0)
    if fmt in ("quat_wxyz", "quat_xyzw"):
        usable &= np.linalg.norm(finite, axis=1) > DEGENERATE
    if fmt == "rot6d":
        matrices, orthogonalised = _gram_schmidt(finite[:, :3], finite[:, 3:])
        usable &= orthogonalised
    if not usable.any():
        return rotvecs
    if fmt == "rotvec":
        rotvecs[usable] = canonical_rotvec(values[usable])
    elif fmt == "quat_wxyz":
        rotvecs[usable] = from_quat_wxyz(values[usable])
    elif fmt == "quat_xyzw":
        rotvecs[usable] = Rotation.from_quat(values[usable]).as_rotvec()
    else:
        rotvecs[usable] = Rotation.from_matrix(matrices[usable]).as_rotvec()
    return rotvecs


def _gram_schmidt(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrices [n, 3, 3] whose first column is along `first` and whose second is `second` made
    orthogonal to it; False where a column is too short to give a direction."""
    first_norm = np.linalg.norm(first, axis=1, keepdims=True)
    x = first / np.maximum(first_norm, DEGENERATE)
    rest = second - np.sum(x * second, axis=1, keepdims=True) * x
    rest_norm = np.linalg.norm(rest, axis=1, keepdims=True)
    y = rest / np.maximum(rest_norm, DEGENERATE)
    usable = (first_norm[:, 0] > DEGENERATE) & (rest_norm[:, 0] > DEGENERATE)
    return np.stack([x, y, np.cross(x, y)], axis=-1), usable


@dataclass(frozen=True)
class RotationBlock:
    """One pose's rotation: its rig indices (rx, ry, rz) and its columns in the policy's state."""

    rig: np.ndarray
    columns: slice


@dataclass(frozen=True)
class EefPose:
    """Rig indices of one pose moved by an end-effector step."""

    position: np.ndarray
    rotation: np.ndarray


@dataclass(frozen=True)
class Segment:
    """One checked `policy.actions` entry: where its values sit in the reply and in the policy's state."""

    spec: ActionSegment
    action_columns: slice
    state_columns: slice
    step_s: float | None = None
    """velocity: the control period each value is integrated over."""
    poses: tuple[EefPose, ...] = ()
    """eef_delta: the poses it moves, in policy order."""


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
    """Per policy joint: policy value = joint value * scale + offset (1 and 0 for rotation values)."""
    scalars: np.ndarray = field(repr=False)
    """Policy joints sent as one value each (all but the poses' rotations)."""
    scalar_columns: np.ndarray = field(repr=False)
    """Their columns in the policy's state."""
    rotations: tuple[RotationBlock, ...] = ()
    segments: tuple[Segment, ...] = ()
    state_width: int = 0
    action_width: int = 0

    @classmethod
    def build(
        cls,
        config: PolicyConfig,
        joints: Sequence[JointSpec],
        feature_names: Sequence[str],
        cameras: Sequence[str],
        source: Path,
        poses: Sequence[PoseSpec] = (),
        rate_hz: float | None = None,
    ) -> PolicyIO:
        """`joints`, `feature_names` and `poses` are the follower rig's, in rig order; `cameras` the camera
        names available (none with --no-cameras); `rate_hz` the control rate velocity actions are
        integrated at. Raises MappingError naming `source` and the key to fix."""
        if len(joints) != len(feature_names):
            raise ValueError(f"{len(joints)} joints but {len(feature_names)} feature names")
        if any(pose.start < 0 or pose.start + 6 > len(joints) for pose in poses):
            raise ValueError(f"a pose lies outside the {len(joints)} joints: {poses}")
        if rate_hz is not None and not rate_hz > 0:
            raise ValueError(f"the control rate must be positive, got {rate_hz}")
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
        pose_starts = _pose_starts(config, poses, feature_names, state_names, source)
        rotation_names = {state_names[start + k] for start in pose_starts for k in range(3, 6)}
        for key, values in (("scale", config.scale), ("offset", config.offset)):
            fixed = sorted(rotation_names & set(values))
            if fixed:
                raise MappingError(
                    f"{source}: key 'policy.{key}': {', '.join(fixed)} belong to a pose's rotation, which is converted "
                    "(policy.rotation_format), never scaled or shifted"
                )
        scale = _per_joint(
            config.scale,
            "scale",
            state_names,
            source,
            lambda name: 1.0 if name in rotation_names else _default_scale(preset, name, units[name], source),
        )
        if (scale == 0).any():
            zero = [name for name, s in zip(state_names, scale, strict=True) if s == 0]
            raise MappingError(f"{source}: key 'policy.scale': a scale of 0 ({', '.join(zero)}) cannot be undone for the actions")
        offset = _per_joint(config.offset, "offset", state_names, source, lambda name: 0.0)
        _check_image_key(config, source)
        image_sources = _image_sources(config, preset, cameras, source)
        scalars, scalar_columns, rotations, column_spans = _state_layout(config.rotation_format, order, pose_starts)
        segments = _segments(config, preset, state_names, order, pose_starts, column_spans, rate_hz, source)
        state_width = column_spans[-1][1] if column_spans else 0
        action_width = segments[-1].action_columns.stop if segments else 0
        if config.pads_actions_to is not None and config.pads_actions_to < action_width:
            what = (
                f"the follower's {action_width} joints"
                if action_width == len(state_names)
                else f"the {action_width} action values for the follower's {len(state_names)} joints"
            )
            raise MappingError(
                f"{source}: key 'policy.pads_actions_to': {config.pads_actions_to} is narrower than {what}; "
                "a server pads its actions to at least as many columns as it uses"
            )
        actions_per_chunk = config.actions_per_chunk or preset.actions_per_chunk
        return cls(
            config,
            actions_per_chunk,
            state_names,
            image_sources,
            order,
            scale,
            offset,
            scalars,
            scalar_columns,
            rotations,
            segments,
            state_width,
            action_width,
        )

    def observation(self, state: np.ndarray, images: Mapping[str, np.ndarray], prompt: str) -> dict[str, Any]:
        """The message for the server: `state` in rig order and joint units, `images` full-size RGB by
        camera name. Letterboxing happens here, so call this off the control tick."""
        policy_state = self.policy_state(state).astype(np.float32)
        sized = {name: letterbox(images[camera], self.config.image_size) for name, camera in self.image_sources.items()}
        return PRESETS[self.config.preset].layout(self.config, policy_state, sized, prompt)

    def policy_state(self, state: np.ndarray) -> np.ndarray:
        """`state` (rig order, joint units) as the policy's values, float64: scaled, rotations in the policy's format."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (len(self.order),):
            raise ValueError(f"expected a state of {len(self.order)} joints, got shape {state.shape}")
        values = np.empty(self.state_width, dtype=np.float64)
        values[self.scalar_columns] = state[self.order[self.scalars]] * self.scale[self.scalars] + self.offset[self.scalars]
        for block in self.rotations:
            values[block.columns] = encode_rotation(state[block.rig], self.config.rotation_format)
        return values

    def actions(self, actions: np.ndarray, state_at_obs: np.ndarray | None = None) -> np.ndarray:
        """A server's [horizon, dim] chunk as absolute targets [horizon, joints] float64 in rig order and
        joint units. dim must be the policy's action width, or `policy.pads_actions_to` whose extra columns
        are dropped. `state_at_obs` is the state (rig order, joint units) the observation was made from;
        every kind but absolute needs it. Non-finite values are left for the safety filter."""
        actions = np.asarray(actions, dtype=np.float64)
        n = self.action_width
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
        relative = [segment for segment in self.segments if segment.spec.kind != "absolute"]
        if relative and state_at_obs is None:
            raise ValueError(f"{relative[0].spec.kind} actions need the state the observation was made from")
        state = np.zeros(len(self.order)) if state_at_obs is None else np.asarray(state_at_obs, dtype=np.float64)
        # the values the server saw (float32 on the wire), so a delta is undone against exactly them
        sent = self.policy_state(state).astype(np.float32).astype(np.float64) if relative else np.zeros(self.state_width)
        values = np.empty((actions.shape[0], self.state_width), dtype=np.float64)
        for segment in self.segments:
            reply, columns = actions[:, segment.action_columns], segment.state_columns
            if segment.spec.kind == "absolute":
                values[:, columns] = reply
            elif segment.spec.kind == "delta":
                values[:, columns] = sent[columns] + reply
            elif segment.spec.kind == "velocity":
                values[:, columns] = sent[columns] + np.cumsum(_velocity_steps(segment, reply), axis=0)
            else:
                values[:, columns] = sent[columns]  # replaced below, in joint units
        joints = self._joints(values)
        for segment in self.segments:
            if segment.spec.kind == "eef_delta":
                reply = actions[:, segment.action_columns]
                for i, pose in enumerate(segment.poses):
                    steps = reply[:, i * EEF_DELTA_WIDTH : (i + 1) * EEF_DELTA_WIDTH]
                    joints[:, pose.position], joints[:, pose.rotation] = _eef_targets(
                        segment.spec, steps, state[pose.position], state[pose.rotation]
                    )
        return joints

    def _joints(self, values: np.ndarray) -> np.ndarray:
        """Absolute policy values [horizon, state_width] as targets in rig order and joint units."""
        joints = np.empty((values.shape[0], len(self.order)), dtype=np.float64)
        scalars = self.scalars
        joints[:, self.order[scalars]] = (values[:, self.scalar_columns] - self.offset[scalars]) / self.scale[scalars]
        for block in self.rotations:
            joints[:, block.rig] = decode_rotation(values[:, block.columns], self.config.rotation_format)
        return joints


def _velocity_steps(segment: Segment, velocities: np.ndarray) -> np.ndarray:
    """Each tick's move in policy units: rad/s over the control period, or DROID's normalised velocities
    (all scaled down together when one exceeds 1) times `max_step`."""
    if segment.spec.max_step is None:
        assert segment.step_s is not None  # checked when built
        return velocities * segment.step_s
    largest = np.abs(velocities).max(axis=1, keepdims=True, initial=0.0)
    return velocities / np.maximum(largest, 1.0) * segment.spec.max_step


def _eef_targets(
    spec: ActionSegment, steps: np.ndarray, position_m: np.ndarray, rotvec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute positions and rotation vectors [horizon, 3] from end-effector steps [horizon, 6], each step
    from the observed pose, or from the previous target when cumulative. A non-finite step gives NaN
    targets (and, cumulative, so do all after it)."""
    positions = np.full((len(steps), 3), np.nan)
    rotvecs = np.full((len(steps), 3), np.nan)
    base_position, base_rotation = position_m, Rotation.from_rotvec(rotvec)
    for k, step in enumerate(steps):
        if not np.isfinite(step).all():
            if spec.cumulative:
                break
            continue
        move = step[:3] * spec.position_scale
        turn = Rotation.from_euler(spec.euler, step[3:] * spec.rotation_scale)
        if spec.frame == "world":
            position, rotation = base_position + move, turn * base_rotation
        else:
            position, rotation = base_position + base_rotation.apply(move), base_rotation * turn
        positions[k], rotvecs[k] = position, rotation.as_rotvec()
        if spec.cumulative:
            base_position, base_rotation = position, rotation
    return positions, rotvecs


def _pose_starts(
    config: PolicyConfig, poses: Sequence[PoseSpec], feature_names: Sequence[str], state_names: Sequence[str], source: Path
) -> list[int]:
    """Where each pose's six features start in the policy's order, in that order; they must stay together."""
    if config.rotation_format != "rotvec" and not poses:
        raise MappingError(
            f"{source}: key 'policy.rotation_format': {config.rotation_format} converts the rotation of a Cartesian "
            "pose, and the follower has none (its features: " + ", ".join(feature_names) + ")"
        )
    position = {name: i for i, name in enumerate(state_names)}
    starts = []
    for pose in poses:
        names = list(feature_names[pose.start : pose.start + 6])
        first = position[names[0]]
        if list(state_names[first : first + 6]) != names:
            raise MappingError(
                f"{source}: key 'policy.joints': a pose's six features must stay together and in order "
                f"({', '.join(names)}), so its rotation can be converted as one"
            )
        starts.append(first)
    return sorted(starts)


def _state_layout(
    fmt: RotationFormat, order: np.ndarray, pose_starts: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, tuple[RotationBlock, ...], list[tuple[int, int]]]:
    """Columns of the policy's state: one per scalar joint, ROTATION_WIDTH[fmt] per pose rotation. Returns
    the scalar joints (policy order), their columns, the rotation blocks and each joint's column span."""
    rotation_first = {start + 3 for start in pose_starts}
    scalars: list[int] = []
    columns: list[int] = []
    blocks: list[RotationBlock] = []
    spans: list[tuple[int, int]] = []
    column = 0
    i = 0
    while i < len(order):
        if i in rotation_first:
            width = ROTATION_WIDTH[fmt]
            blocks.append(RotationBlock(order[i : i + 3].copy(), slice(column, column + width)))
            spans.extend([(column, column + width)] * 3)
            column += width
            i += 3
        else:
            scalars.append(i)
            columns.append(column)
            spans.append((column, column + 1))
            column += 1
            i += 1
    return np.array(scalars, dtype=np.intp), np.array(columns, dtype=np.intp), tuple(blocks), spans


def _segments(
    config: PolicyConfig,
    preset: PresetSpec,
    state_names: Sequence[str],
    order: np.ndarray,
    pose_starts: Sequence[int],
    spans: Sequence[tuple[int, int]],
    rate_hz: float | None,
    source: Path,
) -> tuple[Segment, ...]:
    specs = config.actions if config.actions is not None else preset.actions
    if specs is None:
        specs = [ActionSegment(kind="absolute", count=len(state_names))] if state_names else []
    counted = sum(spec.count for spec in specs)
    if counted != len(state_names):
        raise MappingError(
            f"{source}: key 'policy.actions': the segments count {counted} features, the policy's order has "
            f"{len(state_names)} ({', '.join(state_names)}); a pose counts as its six"
        )
    rotations = {start + 3 for start in pose_starts}
    segments = []
    first = 0
    action_column = 0
    for index, spec in enumerate(specs):
        key = f"policy.actions[{index}]"
        end = first + spec.count
        names = state_names[first:end]
        for start in rotations:
            if first < start + 3 and start < end and not (first <= start and start + 3 <= end):
                raise MappingError(
                    f"{source}: key '{key}.count': the segment {', '.join(names)} splits the rotation "
                    f"{', '.join(state_names[start : start + 3])}, which is one value of the pose"
                )
        _check_options(spec, key, source)
        step_s = None
        poses: tuple[EefPose, ...] = ()
        if spec.kind == "velocity":
            if any(first <= start < end for start in rotations):
                raise MappingError(
                    f"{source}: key '{key}.kind': velocity is for joints, and the segment holds a pose's rotation "
                    f"({', '.join(names)}); use absolute, delta or eef_delta for a pose"
                )
            if spec.max_step is None:
                if rate_hz is None:
                    raise MappingError(
                        f"{source}: key '{key}.kind': velocity actions are integrated over the control period, and "
                        "this command has no control rate; use a command that runs the robot, or set max_step"
                    )
                step_s = 1.0 / rate_hz
        if spec.kind == "eef_delta":
            poses = _eef_poses(spec, key, names, first, end, order, pose_starts, source)
        width = len(poses) * EEF_DELTA_WIDTH if spec.kind == "eef_delta" else spans[end - 1][1] - spans[first][0]
        segments.append(
            Segment(spec, slice(action_column, action_column + width), slice(spans[first][0], spans[end - 1][1]), step_s, poses)
        )
        action_column += width
        first = end
    return tuple(segments)


def _check_options(spec: ActionSegment, key: str, source: Path) -> None:
    for option in spec.model_fields_set:
        owner = "velocity" if option == "max_step" else "eef_delta" if option in EEF_OPTIONS else None
        if owner is not None and spec.kind != owner:
            raise MappingError(f"{source}: key '{key}.{option}': only for kind {owner}, this segment is {spec.kind}")
    if spec.kind == "eef_delta":
        try:
            Rotation.from_euler(spec.euler, np.zeros(3))
        except ValueError as exc:
            raise MappingError(
                f"{source}: key '{key}.euler': {spec.euler!r} is not an Euler convention ({exc}); e.g. xyz "
                "(extrinsic) or XYZ (intrinsic)"
            ) from None


def _eef_poses(
    spec: ActionSegment,
    key: str,
    names: Sequence[str],
    first: int,
    end: int,
    order: np.ndarray,
    pose_starts: Sequence[int],
    source: Path,
) -> tuple[EefPose, ...]:
    starts = list(range(first, end, 6))
    if (end - first) % 6 or any(start not in pose_starts for start in starts):
        raise MappingError(
            f"{source}: key '{key}.kind': eef_delta moves whole Cartesian poses (six features each, x, y, z and the "
            f"rotation), and the segment {', '.join(names)} is not made of them"
        )
    return tuple(EefPose(order[start : start + 3].copy(), order[start + 3 : start + 6].copy()) for start in starts)


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
