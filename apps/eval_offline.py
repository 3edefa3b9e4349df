"""`robot-runtime eval-offline`: query a policy server along a recorded episode and measure how far its
actions are from the demonstrator's, to check a policy and the robot's `policy:` mapping before either
drives an arm. No hardware is opened."""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from apps.common import add_robot_choice, console, number, policy_url, print_error
from calibration.store import CalibrationError
from recorders.layout import image_key
from recorders.reader import DatasetReader
from robot_runtime.config import RobotConfig, load_robot_config
from robot_runtime.policy.client import PolicyClient, PolicyError
from robot_runtime.policy.mapping import PolicyIO, ReplyShapeError
from robot_runtime.rig import Rig
from robot_runtime.robot import JointSpec, PoseSpec

DEFAULT_STRIDE = 10
"""Frames between queries when neither --stride nor the mapping's actions_per_chunk says."""
REQUEST_TIMEOUT_S = 60.0
"""Nothing waits on a reply in real time here, and a freshly started model can compile for over 10 s."""
IMAGE_KEY_PREFIX = image_key("")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-offline", help="compare a policy server's actions with a recorded episode's, without hardware"
    )
    add_robot_choice(parser)
    parser.add_argument("--dataset", type=Path, required=True, help="dataset directory")
    parser.add_argument("--policy", type=policy_url, required=True, metavar="URL", help="policy server, e.g. ws://gpu-box:8000")
    parser.add_argument("--api-key", help="sent as 'Authorization: Api-Key KEY'")
    parser.add_argument("--episode", type=number(int, at_least=0), default=0, help="episode index (default 0)")
    parser.add_argument("--task_prompt", help="the prompt sent with every observation (default: the episode's task)")
    parser.add_argument(
        "--stride", type=number(int, at_least=1), help="frames between queries (default: the policy's actions_per_chunk, else 10)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: DATASET/eval/EPISODE)")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Query:
    """One inference along the episode: the frame it was asked at and the chunk it answered."""

    frame: int
    actions: np.ndarray
    """[horizon, joints] in rig order and joint units."""
    round_trip_ms: float


@dataclass(frozen=True)
class JointErrors:
    """Absolute differences from the recorded actions, in the joint's unit."""

    joint: str
    unit: str
    first_mae: float
    first_max: float
    """Of each chunk's first action, against the action recorded at the query frame."""
    chunk_mae: float
    chunk_max: float
    """Over the part of each chunk that would run (its first `stride` actions), against the frames they stand for."""


def run(args: argparse.Namespace) -> int:
    config = load_robot_config(args.robot, args.overrides)
    dataset = DatasetReader(args.dataset)
    episode = dataset.episode(args.episode)
    recorded_names = dataset.action_names
    joints, poses, units_from = follower_joints(config, recorded_names)
    cameras = [key.removeprefix(IMAGE_KEY_PREFIX) for key in dataset.video_keys]
    io = PolicyIO.build(config.policy, joints, recorded_names, cameras, config.source, poses=poses, rate_hz=dataset.fps)
    stride = args.stride or io.actions_per_chunk or DEFAULT_STRIDE
    prompt = args.task_prompt or episode.task
    out = args.out or args.dataset / "eval" / str(args.episode)
    states, actions = episode.states, episode.actions
    console.print(
        escape(
            f"querying {args.policy} every {stride} frames along episode {args.episode} of {args.dataset} ({len(states)} frames, "
            f"prompt {prompt!r})"
        )
    )
    try:
        with PolicyClient(args.policy, api_key=args.api_key, request_timeout_s=REQUEST_TIMEOUT_S) as client:
            queries = query_episode(client, io, states, _episode_images(dataset, args.episode, io, len(states)), stride, prompt)
    except (PolicyError, ReplyShapeError) as exc:
        print_error(exc)
        return 1
    errors = joint_errors(actions, queries, stride, joints, recorded_names)
    round_trips_ms = [q.round_trip_ms for q in queries]
    out.mkdir(parents=True, exist_ok=True)
    title = f"episode {args.episode} of {args.dataset.name}: {args.policy} every {stride} frames"
    plot(out / "eval.png", title, actions, queries, stride, joints, recorded_names)
    write_csv(out / "eval.csv", errors)
    summary = {
        "robot": config.name,
        "dataset": str(args.dataset),
        "episode": args.episode,
        "policy": args.policy,
        "prompt": prompt,
        "stride": stride,
        "queries": len(queries),
        "horizon": len(queries[0].actions),
        "units_from": units_from,
        "joints": [asdict(e) for e in errors],
        "round_trip_ms": {"p50": float(np.percentile(round_trips_ms, 50)), "p99": float(np.percentile(round_trips_ms, 99))},
        "round_trips_ms": round_trips_ms,
    }
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    console.print(error_table(errors, summary))
    console.print(escape(f"wrote {out / 'eval.png'}, {out / 'eval.csv'} and {out / 'eval.json'}"))
    return 0


def follower_joints(config: RobotConfig, recorded_names: Sequence[str]) -> tuple[list[JointSpec], tuple[PoseSpec, ...], str]:
    """The follower's joints and poses as its arm family builds them (never connected), so the policy
    mapping uses the units the robot will run with; and where they came from.

    Building a bus arm reads its calibration. Where that is not on this machine (a dataset evaluated away
    from the robot), the recorded feature names stand in: degrees, grippers in percent, as LeRobot's
    degree-normalised arms record them. Limits are then unknown; nothing here is ever commanded."""
    try:
        rig = Rig({spec.prefix: spec.family.build(spec.config, spec.label) for spec in config.followers}, name="follower")
    except CalibrationError as exc:
        console.print(
            f"[yellow]note:[/] {escape(str(exc))}\n      so joint units are taken from the recorded names: degrees, and percent "
            "for grippers"
        )
        return [
            JointSpec(name.removesuffix(".pos"), "percent" if "gripper" in name else "deg", -math.inf, math.inf)
            for name in recorded_names
        ], (), "recorded names"
    if rig.feature_names != list(recorded_names):
        raise ValueError(
            f"the dataset records actions for {list(recorded_names)}, but {config.name}'s follower has {rig.feature_names}"
        )
    return list(rig.joints), rig.poses, "follower calibration"


def _episode_images(dataset: DatasetReader, episode: int, io: PolicyIO, length: int) -> Iterator[dict[str, np.ndarray]]:
    """Each frame's images from the cameras the policy uses, decoded in step: one frame per camera in memory."""
    cameras = sorted(set(io.image_sources.values()))
    streams = [dataset.frames(episode, image_key(camera)) for camera in cameras]
    for _, *frames in zip(range(length), *streams, strict=False):
        yield {camera: image for camera, (_, image) in zip(cameras, frames, strict=True)}


def query_episode(
    client: PolicyClient, io: PolicyIO, states: np.ndarray, images: Iterator[dict[str, np.ndarray]], stride: int, prompt: str
) -> list[Query]:
    """Ask the policy at every `stride`-th frame with that frame's recorded state and images."""
    queries = []
    for frame, (state, frame_images) in enumerate(zip(states, images, strict=False)):
        if frame % stride == 0:
            reply = client.infer(io.observation(state, frame_images, prompt))
            queries.append(Query(frame, io.actions(reply.actions, state), reply.round_trip_s * 1e3))
    return queries


def joint_errors(
    recorded: np.ndarray, queries: Sequence[Query], stride: int, joints: Sequence[JointSpec], names: Sequence[str]
) -> list[JointErrors]:
    """Per joint: how far the first action and the executed part of each chunk are from the recording."""
    differences = [np.abs(_executed_difference(q, stride, recorded)) for q in queries]
    first = np.array([d[0] for d in differences])
    executed = np.concatenate(differences)
    return [
        JointErrors(
            name,
            joint.unit,
            float(first[:, i].mean()),
            float(first[:, i].max()),
            float(executed[:, i].mean()),
            float(executed[:, i].max()),
        )
        for i, (name, joint) in enumerate(zip(names, joints, strict=True))
    ]


def _executed_difference(query: Query, stride: int, recorded: np.ndarray) -> np.ndarray:
    """Predicted minus recorded over the actions of a chunk that would run before the next query."""
    chunk = query.actions[: min(stride, len(recorded) - query.frame)]
    return chunk - recorded[query.frame : query.frame + len(chunk)]


def write_csv(path: Path, errors: Sequence[JointErrors]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(asdict(errors[0])))
        writer.writeheader()
        writer.writerows(asdict(e) for e in errors)


def error_table(errors: Sequence[JointErrors], summary: dict) -> Table:
    round_trip = summary["round_trip_ms"]
    table = Table(
        title=f"policy vs recorded actions: {summary['queries']} queries, every {summary['stride']} frames",
        caption=(
            f"round trip p50 / p99: {round_trip['p50']:.1f} / {round_trip['p99']:.1f} ms; "
            f"units from the {summary['units_from']}"
        ),
    )
    for column in ("joint", "unit", "first MAE", "first max", "chunk MAE", "chunk max"):
        table.add_column(column, justify="left" if column in ("joint", "unit") else "right", no_wrap=True)
    for e in errors:
        table.add_row(e.joint, e.unit, *(f"{v:.2f}" for v in (e.first_mae, e.first_max, e.chunk_mae, e.chunk_max)))
    return table


def plot(
    path: Path,
    title: str,
    recorded: np.ndarray,
    queries: Sequence[Query],
    stride: int,
    joints: Sequence[JointSpec],
    names: Sequence[str],
) -> None:
    """One panel per joint: the recorded actions, and each chunk from its query frame (the executed part
    solid, the rest faint)."""
    from matplotlib.figure import Figure  # imported here: it costs every other command half a second at start-up

    figure = Figure(figsize=(11, 1.9 * len(names) + 0.6), layout="constrained")
    axes = figure.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    frames = np.arange(len(recorded))
    for i, (ax, name, joint) in enumerate(zip(axes, names, joints, strict=True)):
        ax.plot(frames, recorded[:, i], color="black", linewidth=1.2, label="recorded")
        for q in queries:
            span = q.frame + np.arange(len(q.actions))
            executed = min(stride, len(q.actions))
            (line,) = ax.plot(span[:executed], q.actions[:executed, i], linewidth=1.4)
            ax.plot(span[executed - 1 :], q.actions[executed - 1 :, i], color=line.get_color(), linewidth=0.8, alpha=0.35)
        ax.set_ylabel(f"{name}\n({joint.unit})", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel("frame")
    figure.savefig(path, dpi=90)
