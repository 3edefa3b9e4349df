"""The robot config's `policy:` section: how observations are laid out for a policy server and how the
actions it returns map back onto the follower's joints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Preset = Literal["aloha", "droid", "libero", "custom"]


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
