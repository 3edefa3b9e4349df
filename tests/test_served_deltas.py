"""serve-policy --deltas: a recorded episode served as a delta policy (openpi's DeltaActions without its
AbsoluteActions), and the client's `delta` action kind adding the observed state back, so the arm gets the
episode's absolute targets again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_runtime.policy.config import ActionSegment, PolicyConfig
from robot_runtime.policy.mapping import PolicyIO
from robot_runtime.policy.served import DeltaActions, EpisodePolicy, bool_mask
from robot_runtime.robot import JointSpec, PoseSpec

ARM = [*(JointSpec(f"tcp_{a}", "m", -1.0, 1.0) for a in "xyz"), *(JointSpec(f"tcp_r{a}", "rad", -4.0, 4.0) for a in "xyz")]
JOINTS = [*ARM, JointSpec("gripper_width", "m", 0.0, 0.1)] * 2
NAMES = [f"{side}_{j.name}.pos" for side in ("left", "right") for j in JOINTS[:7]]
DELTA_MASK = [
    ActionSegment(kind="delta", count=6),
    ActionSegment(kind="absolute", count=1),
    ActionSegment(kind="delta", count=6),
    ActionSegment(kind="absolute", count=1),
]


def test_make_bool_mask_counts() -> None:
    np.testing.assert_array_equal(bool_mask([2, -1, 1]), [True, True, False, True])
    with pytest.raises(ValueError, match="non-zero counts"):
        bool_mask([6, 0])


def test_a_delta_server_and_a_delta_client_give_back_the_episodes_targets() -> None:
    rng = np.random.default_rng(0)
    episode = np.concatenate([rng.uniform(-0.5, 0.5, (40, 3)), rng.uniform(-1, 1, (40, 3)), rng.uniform(0, 0.1, (40, 1))], axis=1)
    episode = np.concatenate([episode, episode[::-1]], axis=1)
    served = DeltaActions(EpisodePolicy(episode, fps=25, horizon=10, clock=lambda: 0.0), bool_mask([6, -1, 6, -1]))
    io = PolicyIO.build(
        PolicyConfig(state_key="observation/state", actions=DELTA_MASK),
        JOINTS,
        NAMES,
        (),
        Path("bi.yaml"),
        poses=(PoseSpec(0), PoseSpec(7)),
    )
    state = episode[5] + 0.01
    obs = io.observation(state, {}, "fold")
    reply = served.connection().infer(obs)
    assert not np.allclose(reply["actions"][:, :6], episode[:10, :6])  # deltas on the wire
    np.testing.assert_allclose(reply["actions"][:, 6], episode[:10, 6])  # grippers stay absolute
    targets = io.actions(reply["actions"], state)
    np.testing.assert_allclose(targets, episode[:10], atol=1e-6)  # within float32 rounding of the sent state


def test_a_state_of_another_width_is_an_error_for_the_client() -> None:
    served = DeltaActions(EpisodePolicy(np.zeros((5, 14)), fps=25, clock=lambda: 0.0), bool_mask([6, -1, 6, -1]))
    with pytest.raises(ValueError, match="state 7, actions 14, mask 14"):
        served.connection().infer({"observation/state": np.zeros(7)})
