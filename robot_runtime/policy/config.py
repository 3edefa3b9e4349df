"""The robot config's `policy:` section: how observations are laid out for a policy server and how the
actions it returns map back onto the follower's joints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Preset = Literal["aloha", "droid", "libero", "custom"]
ActionKind = Literal["absolute", "delta", "velocity", "eef_delta"]
RotationFormat = Literal["rotvec", "quat_wxyz", "quat_xyzw", "rot6d"]


class ActionSegment(BaseModel):
    """What a run of consecutive values of the policy's action vector means. `count` counts follower
    features in the policy's order (`policy.joints`); a Cartesian pose counts as its six features
    (x, y, z, rx, ry, rz) whatever `policy.rotation_format` sends for its rotation.

    absolute: the target itself (scale and offset undone).
    delta: the target minus the state sent with the observation, element by element in the policy's
      values, as openpi's DeltaActions makes it (every action of a chunk relative to that one state); undone
      by adding the state back element by element, as openpi's AbsoluteActions does, also inside a rotation
      (then read in `rotation_format` and stored as a canonical rotation vector). A delta mask
      make_bool_mask(6, -1, 6, -1) is [{kind: delta, count: 6}, {kind: absolute, count: 1}] twice.
    velocity: joint velocities in policy units per second, integrated from the observed state:
      target_k = state + sum_{i<=k} v_i / rate. With `max_step`, DROID's normalised velocities instead.
    eef_delta: a pose's step as [dx, dy, dz, droll, dpitch, dyaw] (six columns whatever the rotation
      format): the position step times `position_scale` in metres, the rotation step the Euler angles
      `euler` (scipy's notation: "xyz" extrinsic, "XYZ" intrinsic) times `rotation_scale` in radians, both
      in `frame`: world (the frame the pose is given in, the robot's base or world) adds the position and
      turns the state's rotation by the step (R_delta * R_state); tool rotates the position step into the
      tool's frame and applies the rotation after the state's (R_state * R_delta). Every step of a chunk is
      relative to the observed pose unless `cumulative`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ActionKind
    count: int = Field(gt=0)
    max_step: float | None = Field(None, gt=0)
    """velocity only: the values are DROID's normalised velocities (scaled down together when one exceeds 1)
    and 1 moves `max_step` policy units per tick (DROID's RobotIKSolver: 0.2 rad); the rate is not used."""
    frame: Literal["world", "tool"] = "world"
    """eef_delta only: the frame the step is expressed in."""
    position_scale: float = Field(1.0, gt=0)
    """eef_delta only: metres per unit of the position step."""
    rotation_scale: float = Field(1.0, gt=0)
    """eef_delta only: radians per unit of the Euler angles."""
    euler: str = "xyz"
    """eef_delta only: the Euler convention of the rotation step in scipy's notation (CogACT, SimplerEnv: "xyz", extrinsic)."""
    cumulative: bool = False
    """eef_delta only: each step of a chunk is relative to the previous step's target; unset, every step is
    relative to the state sent with the observation."""


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Preset = "custom"
    """aloha, droid and libero lay observations out as openpi's example clients do; custom uses the keys below."""
    cameras: dict[str, str] = {}
    """Policy image name -> camera name under `cameras` (e.g. cam_high: top). Image names: aloha cam_high,
    cam_low, cam_left_wrist, cam_right_wrist; droid exterior_image_1_left, wrist_image_left; libero image,
    wrist_image; custom any. Unset: cameras whose names are the policy's image names (custom: all)."""
    joints: list[str] = []
    """Follower features (`shoulder_pan.pos`) in the order the policy's state and actions use; unset: rig order."""
    scale: dict[str, float] = {}
    """Per joint feature: policy value = joint value * scale + offset. Unset: the preset's convention
    (aloha, droid and libero: radians and grippers 0..1; custom: the joint's own unit, as datasets record it)."""
    offset: dict[str, float] = {}
    image_size: int = Field(224, gt=0)
    """Images are letterboxed to this square size (openpi's resize_with_pad) before they are sent."""
    pads_actions_to: int | None = Field(None, gt=0)
    """The width the server pads its actions to with unused columns, e.g. 32 for a model served without
    openpi's output transforms (openpi's aloha, droid and libero configs trim to 14, 8 and 7 themselves).
    Replies this wide are cut to the joints; unset, a reply must be exactly as wide as the joints, so
    a server for another robot is refused instead of driving this one with the wrong columns."""
    actions_per_chunk: int | None = Field(None, gt=0)
    """Actions executed from each chunk; unset: the preset's (aloha 25, droid 8, libero 5, custom the whole chunk)."""
    state_key: str = "observation/state"
    """custom only: the observation key of the state vector, used as given (flat)."""
    image_key: str = "observation/images/{camera}"
    """custom only: where each image goes, `{camera}` being the policy image name."""
    image_layout: Literal["hwc", "chw"] = "hwc"
    """custom only: the image array layout (aloha is always chw, droid and libero hwc)."""
    actions: list[ActionSegment] | None = None
    """What the policy's action values mean, segment by segment in the policy's order; unset: absolute
    targets throughout, except droid: velocity for the 7 arm joints, the gripper absolute."""
    rotation_format: RotationFormat = "rotvec"
    """How each Cartesian pose's rotation is sent in the state and read back from the actions: rotvec
    (axis * angle, 3 values), quat_wxyz or quat_xyzw (4 values, scalar first or last: scipy's default is
    scalar last), rot6d (6 values: the rotation matrix's first column, then its second)."""
