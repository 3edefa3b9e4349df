"""The policy client (section 7): what preparing and encoding one observation costs next to openpi's own
client code, and how the control loop keeps time while a policy server takes 0 to 300 ms per chunk,
with synchronous and asynchronous chunk scheduling, next to openpi's ActionChunkBroker.

The loop runs are the real `robot-runtime run --sim --mode autonomous` against a real
`robot-runtime serve-policy --script` process, so the figures include everything the CLI does (simulated
bus and cameras, the inference thread letterboxing and encoding, the websocket round trip).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from openpi_client import image_tools, msgpack_numpy
from openpi_client.action_chunk_broker import ActionChunkBroker
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from benchmarks.record_run import TOLERANT_BUS, Watched, _cpu, _f, _outcome, _read_lines, _StatsView, _table, loop_cells, watch
from benchmarks.teleop_jitter import STARTUP_AND_PARK_S, _teleop_command
from benchmarks.timing import CallTiming, ratio, time_calls
from robot_runtime.config import load_robot_config
from robot_runtime.loop import FixedRateLoop, Tick, percentile_ms
from robot_runtime.policy.config import PolicyConfig
from robot_runtime.policy.mapping import PolicyIO
from robot_runtime.robot import JointSpec
from robot_runtime.session import Session

PROMPT = "bench"
RATE_HZ = 50.0
HORIZON = 50
"""Actions per reply, as pi0; at RATE_HZ a chunk covers HORIZON / RATE_HZ = 1 s."""
LATENCIES_MS = (0.0, 100.0, 300.0)
BROKER_LATENCY_MS = 100.0
SCHEDULINGS = ("sync", "async")
SERVER_START_S = 30.0
WARMUP_CALLS = 10
"""Untimed calls before each overhead figure (first calls pay for allocations and caches)."""
ALOHA_ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
ALOHA_CAMERAS = {"cam_high": "top", "cam_left_wrist": "wrist", "cam_right_wrist": "front"}
"""The three simulated so100 cameras under ALOHA's image names (cam_low is unused by the released models)."""
LISTENING = re.compile(r"on (ws://\S+?):? ")


# ---- A. client overhead per query ---------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """One tick's follower state and full-size camera images, and the mappings to time on them."""

    position: np.ndarray
    """The follower's joint positions in rig order and joint units."""
    images: dict[str, np.ndarray]
    so100: PolicyIO
    aloha: PolicyIO


@dataclass(frozen=True)
class OverheadRow:
    """One way of turning the same state and images into a message: prepare (letterbox, layout), encode, both."""

    layout: str
    client: str
    prepare: CallTiming
    encode: CallTiming
    total: CallTiming
    message_kb: float


def capture_inputs() -> Inputs:
    """The so100 mapping `run --sim` builds and one tick of its simulated follower and 640x480 cameras
    (a rendered scene, smooth like a real one, not noise), plus a 14-joint ALOHA mapping of the same cameras."""
    config = load_robot_config("so100")
    with Session(config, sim=True, with_leaders=False, observe_only=True) as session:
        follower = session.follower
        so100 = PolicyIO.build(config.policy, follower.joints, follower.feature_names, list(session.cameras), config.source)
        state = follower.read()
        frames = session.cameras.frames_at(state.timestamp_s)
    images = {name: frame.image for name, frame in frames.items()}
    return Inputs(state.position, images, so100, _aloha_io(list(images), config.source))


def _aloha_io(cameras: Sequence[str], source: Path) -> PolicyIO:
    """Two 7-joint arms (degrees, grippers in percent), as the mapping tests build one."""
    joints = [JointSpec(n, "percent" if n == "gripper" else "deg", -180.0, 180.0) for _ in ("left", "right") for n in ALOHA_ARM]
    names = [f"{side}_{n}.pos" for side in ("left", "right") for n in ALOHA_ARM]
    return PolicyIO.build(PolicyConfig(preset="aloha", cameras=ALOHA_CAMERAS), joints, names, cameras, source)


def _is_chw(config: PolicyConfig) -> bool:
    return config.preset == "aloha" or (config.preset == "custom" and config.image_layout == "chw")


def openpi_observation(io: PolicyIO, state: np.ndarray, images: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The message `io.observation` makes for the aloha and custom presets (the two timed here), made as
    openpi's example clients make it: PIL resize_with_pad per image, then for CHW a transpose view (as
    einops.rearrange gives; encoding copies it into C order)."""
    config, size = io.config, io.config.image_size
    sized = {
        name: image_tools.convert_to_uint8(image_tools.resize_with_pad(images[camera], size, size))
        for name, camera in io.image_sources.items()
    }
    arranged = {name: image.transpose(2, 0, 1) for name, image in sized.items()} if _is_chw(config) else sized
    policy_state = (np.asarray(state, dtype=np.float64)[io.order] * io.scale + io.offset).astype(np.float32)
    if config.preset == "aloha":
        return {"state": policy_state, "images": arranged, "prompt": PROMPT}
    return {
        config.state_key: policy_state,
        **{config.image_key.format(camera=name): image for name, image in arranged.items()},
        "prompt": PROMPT,
    }


def _overhead_row(layout: str, client: str, prepare: Callable[[], dict[str, Any]], samples: int) -> OverheadRow:
    packer = msgpack_numpy.Packer()
    message = prepare()
    return OverheadRow(
        layout,
        client,
        time_calls(prepare, samples, WARMUP_CALLS),
        time_calls(lambda: packer.pack(message), samples, WARMUP_CALLS),
        time_calls(lambda: packer.pack(prepare()), samples, WARMUP_CALLS),
        len(packer.pack(message)) / 1024,
    )


def client_overhead(samples: int) -> list[OverheadRow]:
    """Ours and openpi's way for the so100 and ALOHA layouts, on the same inputs."""
    inputs = capture_inputs()
    rows = []
    for name, io in (("so100", inputs.so100), ("ALOHA", inputs.aloha)):
        layout = f"{name} ({io.config.preset}, {'CHW' if _is_chw(io.config) else 'HWC'} {io.config.image_size})"
        state = np.resize(inputs.position, len(io.order))  # the so100 position repeated onto ALOHA's 14 joints
        ours = functools.partial(io.observation, state, inputs.images, PROMPT)
        rows.append(_overhead_row(layout, "PolicyIO.observation", ours, samples))
        openpi = functools.partial(openpi_observation, io, state, inputs.images)
        rows.append(_overhead_row(layout, "openpi resize_with_pad", openpi, samples))
    return rows


# ---- B. loop timing with a slow policy server ---------------------------------------------------


@contextlib.contextmanager
def policy_server(latency_ms: float) -> Iterator[str]:
    """`serve-policy --script` on a free loopback port, replying after `latency_ms`; yields its URL."""
    args = [
        *_teleop_command(), "serve-policy", "--script", "--latency-ms", f"{latency_ms:g}", "--horizon", str(HORIZON),
        "--fps", f"{RATE_HZ:g}", "--host", "127.0.0.1", "--port", "0",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}  # the URL on one line
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[tuple[float, str]] = []
    threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True).start()  # drains stderr until the exit
    try:
        yield _wait_for_url(proc, lines)
    finally:
        proc.terminate()
        proc.wait()


def _wait_for_url(proc: subprocess.Popen[str], lines: list[tuple[float, str]]) -> str:
    deadline_s = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline_s and proc.poll() is None:
        for _, line in lines:
            if match := LISTENING.search(line):
                return match[1]
        time.sleep(0.05)
    said = " / ".join(line for _, line in lines[-3:]) or "nothing"
    raise RuntimeError(f"serve-policy did not start listening within {SERVER_START_S:g} s (exit {proc.poll()}): {said}")


@dataclass(frozen=True)
class PolicyPhase:
    """From the action log: when the policy took over (after the first chunk and the approach move) and
    the ticks it held because no action was fresh, at the hand-over and later."""

    start_s: float
    held_at_start: int
    """Policy ticks before its first action: the chunk asked for from the pose the approach reached."""
    held_later: int


def read_policy_phase(path: Path) -> PolicyPhase | None:
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines()[1:]]  # the first line is the header
    except (OSError, ValueError):
        return None
    policy = [row for row in rows if row["phase"] == "policy"]
    if not policy:
        return None
    held = [row["chunk"] is None for row in policy]
    at_start = held.index(False) if False in held else len(held)
    return PolicyPhase(policy[0]["t_s"], at_start, sum(held) - at_start)


@dataclass(frozen=True)
class RunPlan:
    """One `run` to make: the server's latency, the scheduling, and the setup around it."""

    latency_ms: float
    scheduling: str
    with_cameras: bool = True
    tolerant_bus: bool = False
    """Retried on TOLERANT_BUS after the run failed on the default simulated bus."""

    @property
    def label(self) -> str:
        extras = ("" if self.with_cameras else ", no cameras") + (", tolerant sim bus" if self.tolerant_bus else "")
        return f"{self.scheduling}, {self.latency_ms:g} ms{extras}"

    def options(self) -> list[str]:
        return [*([] if self.with_cameras else ["--no-cameras"]), *(TOLERANT_BUS if self.tolerant_bus else ())]


@dataclass(frozen=True)
class PolicyRun(_StatsView):
    plan: RunPlan
    process: Watched
    phase: PolicyPhase | None

    @property
    def label(self) -> str:
        return self.plan.label

    @property
    def failed(self) -> bool:
        return self.process.returncode != 0

    @property
    def policy_stats(self) -> dict[str, Any]:
        return (self.process.stats or {}).get("policy_stats", {})

    @property
    def held(self) -> int | None:
        return (self.process.stats or {}).get("safety_interventions", {}).get("held")


def run_policy(url: str, plan: RunPlan, duration_s: float) -> PolicyRun:
    """One `run --sim --mode autonomous` at RATE_HZ against `url`, with its stats and action log."""
    with tempfile.TemporaryDirectory(prefix="robot-runtime-bench-") as tmp:
        stats, action_log = Path(tmp) / "stats.json", Path(tmp) / "actions.jsonl"
        args = [
            *_teleop_command(), "run", "--robot", "so100", "--sim", "--mode", "autonomous", "--fps", f"{RATE_HZ:g}",
            "--scheduling", plan.scheduling, "--task_prompt", PROMPT, "--policy", url, "--duration", f"{duration_s:g}",
            "--stats-json", str(stats), "--action-log", str(action_log), *plan.options(),
        ]  # fmt: skip
        process = watch(args, stats, duration_s + STARTUP_AND_PARK_S)
        phase = read_policy_phase(action_log)
    return PolicyRun(plan, process, phase)


@dataclass(frozen=True)
class BrokerRun:
    """openpi's ActionChunkBroker around its WebsocketClientPolicy, called once per tick of a plain loop."""

    latency_ms: float
    loop: dict[str, Any]
    chunks: int
    inference_p50_ms: float
    inference_p99_ms: float
    """Ticks that asked the server (every HORIZON-th): the whole round trip, spent inside the tick."""


def run_broker(url: str, latency_ms: float, duration_s: float) -> BrokerRun:
    """The loop users of openpi_client write: a small observation (state and prompt, no images) each tick."""
    client = WebsocketClientPolicy(url)
    broker = ActionChunkBroker(client, action_horizon=HORIZON)
    observation = {"state": np.zeros(6, dtype=np.float32), "prompt": PROMPT}
    calls_s: list[float] = []

    def tick(_: Tick) -> None:
        start_s = time.perf_counter()
        broker.infer(observation)
        calls_s.append(time.perf_counter() - start_s)

    try:
        loop = FixedRateLoop(RATE_HZ).run(tick, duration_s=duration_s)
    finally:
        client._ws.close()  # WebsocketClientPolicy has no close()
    asking = np.asarray(calls_s[::HORIZON])
    return BrokerRun(latency_ms, loop.as_dict(), len(asking), percentile_ms(asking, 50), percentile_ms(asking, 99))


@dataclass(frozen=True)
class PolicyResult:
    overhead: list[OverheadRow]
    overhead_samples: int
    runs: list[PolicyRun]
    broker: BrokerRun
    duration_s: float
    cameras_kept_rate: bool
    """Whether the asynchronous run without latency kept RATE_HZ with the three cameras; if not, the runs
    were repeated with --no-cameras."""


def _kept_rate(run: PolicyRun) -> bool:
    return run.loop is not None and run.loop["achieved_hz"] >= 0.99 * RATE_HZ and run.loop["missed_deadlines"] == 0


def _loop_runs(duration_s: float, with_cameras: bool, log: Callable[[str], None]) -> list[PolicyRun]:
    """Sync then async at each latency, one server per latency; a failed run is retried on a tolerant simulated bus."""
    runs = []
    for latency_ms in LATENCIES_MS:
        with policy_server(latency_ms) as url:
            for scheduling in SCHEDULINGS:
                plan = RunPlan(latency_ms, scheduling, with_cameras)
                runs.append(_logged(run_policy(url, plan, duration_s), log))
                if runs[-1].failed:
                    runs.append(_logged(run_policy(url, replace(plan, tolerant_bus=True), duration_s), log))
    return runs


def _logged(run: PolicyRun, log: Callable[[str], None]) -> PolicyRun:
    said = f"run {run.label}: {_outcome(run.process)}"
    if run.loop is not None:
        loop = run.loop
        said += (
            f", {loop['achieved_hz']:.2f} Hz, period max {loop['period_max_ms']:.1f} ms, "
            f"lateness p99 {loop['lateness_p99_ms']:.2f} ms, held {run.held}"
        )
    log(f"[red]{said}[/]" if run.failed else said)
    return run


def policy_benchmark(samples: int, duration_s: float, log: Callable[[str], None] = print) -> PolicyResult:
    """Client overhead, the loop runs (again without cameras if the cameras alone cost the rate), then openpi's broker."""
    overhead = client_overhead(samples)
    for row in overhead:
        log(f"{row.layout}, {row.client}: prepare + encode {row.total.median_ms:.2f} ms median, {row.message_kb:.0f} KB")
    runs = _loop_runs(duration_s, True, log)
    quick_async = [run for run in runs if replace(run.plan, tolerant_bus=False) == RunPlan(0.0, "async")][-1]
    kept = _kept_rate(quick_async)
    if not kept:
        runs += _loop_runs(duration_s, False, log)
    with policy_server(BROKER_LATENCY_MS) as url:
        broker = run_broker(url, BROKER_LATENCY_MS, duration_s)
    log(
        f"openpi ActionChunkBroker, {BROKER_LATENCY_MS:g} ms: period max {broker.loop['period_max_ms']:.1f} ms, lateness p99 "
        f"{broker.loop['lateness_p99_ms']:.2f} ms"
    )
    return PolicyResult(overhead, samples, runs, broker, duration_s, kept)


# ---- markdown -------------------------------------------------------------------------------


def _p50_p99(timing: CallTiming) -> str:
    return f"{timing.median_ms:.2f} / {timing.p99_ms:.2f}"


def _overhead_rows(rows: list[OverheadRow]) -> list[tuple[object, ...]]:
    return [
        (
            r.layout, r.client, _p50_p99(r.prepare), _p50_p99(r.encode), _p50_p99(r.total), f"{r.total.cpu_per_call_ms:.2f}",
            f"{r.message_kb:.0f}",
        )
        for r in rows
    ]


def _overhead_ratios(rows: list[OverheadRow]) -> list[str]:
    out = []
    for layout in dict.fromkeys(r.layout for r in rows):
        ours, openpi = (r for r in rows if r.layout == layout)
        out.append(
            f"- {layout}, ours / openpi: prepare median {ratio(ours.prepare.median_ms, openpi.prepare.median_ms)}, "
            f"prepare + encode median {ratio(ours.total.median_ms, openpi.total.median_ms)}, p99 "
            f"{ratio(ours.total.p99_ms, openpi.total.p99_ms)}, "
            f"CPU {ratio(ours.total.cpu_per_call_ms, openpi.total.cpu_per_call_ms)}."
        )
    return out


def _policy_row(run: PolicyRun) -> tuple[object, ...]:
    stats, phase = run.policy_stats, run.phase
    return (
        run.label,
        "-" if run.held is None else run.held,
        "-" if phase is None else f"{phase.held_at_start} / {phase.held_later}",
        "-" if phase is None else _f(phase.start_s, 2),
        stats.get("chunks", "-"),
        f"{_f(stats.get('inference_p50_ms'))} / {_f(stats.get('inference_p99_ms'))}" if stats else "-",
        stats.get("skipped_steps", "-"),
        _outcome(run.process),
    )


def policy_section(r: PolicyResult, number: int = 7) -> list[str]:
    b = r.broker
    out = [
        f"## {number}. Policy client and chunk scheduling",
        "",
        "### Client overhead per query",
        "",
        (
            "One observation from three 640x480 camera images (one tick of `run --robot so100 --sim`'s simulated cameras: a "
            "rendered arm over a gradient and a floor grid, smooth as a real scene is, not noise) and the follower's state, "
            f"made ready for the server. Each figure is over {r.overhead_samples} calls after {WARMUP_CALLS} warm-up calls, in "
            "this process "
            "alone. *Prepare*: letterbox each image to the square size in the layout column and lay the message out; ours is "
            "`PolicyIO.observation` "
            "(OpenCV, contiguous arrays), openpi's is `image_tools.resize_with_pad` (PIL) per image plus, for ALOHA, a CHW "
            "transpose view as its example client makes. *Encode*: `openpi_client.msgpack_numpy.Packer().pack`, which both "
            "clients send with (it copies a transposed view into C order). so100 uses so100.yaml's policy section; ALOHA maps "
            "the same cameras to `cam_high`, `cam_left_wrist` and "
            "`cam_right_wrist` of a 14-joint rig. CPU is process CPU per prepare + encode call (above the wall time: more "
            "than one core was busy)."
        ),
        "",
    ]
    out += _table(
        (
            "layout", "client", "prepare median / p99 ms", "encode median / p99 ms", "prepare + encode median / p99 ms",
            "CPU per call ms", "message KB",
        ),
        _overhead_rows(r.overhead),
    )
    out += [*_overhead_ratios(r.overhead), ""]
    out += [
        "### Loop timing while the server thinks",
        "",
        (
            f"`robot-runtime run --robot so100 --sim --mode autonomous --fps {RATE_HZ:g} --scheduling sync|async --task_prompt "
            f"{PROMPT} --policy URL --duration {r.duration_s:g} --stats-json ... --action-log ...` as a subprocess, with "
            "so100.yaml's "
            "three simulated cameras, against `robot-runtime serve-policy --script --horizon "
            f"{HORIZON} --fps {RATE_HZ:g} --latency-ms X` on loopback (a process of its own, one per latency; it sleeps X ms "
            f"before each reply). Each reply is {HORIZON} actions, {HORIZON / RATE_HZ:g} s at {RATE_HZ:g} Hz; executed per chunk "
            f"(so100.yaml's policy.actions_per_chunk, unset: the whole chunk): {_executed(r.runs)}. *sync* asks for the next "
            "chunk when the current one is used up and waits for it "
            "inside the tick, as openpi's ActionChunkBroker does; *async* asks early, from the latencies seen, on the "
            "inference thread, and never waits. Every run starts by holding until the first chunk arrives and then moves "
            "smoothly to its first action (at least safety.ramp_s); the policy takes over after that, at *policy from s* "
            "(from the action log), and these ticks are in the loop figures too. Inference is the client's latency per "
            "chunk: image preparation, encoding, the round trip with the server's sleep, decoding."
        ),
        "",
    ]
    if any(run.plan.tolerant_bus for run in r.runs):
        out += [
            (
                f"A run that failed on the default simulated bus ran again with `{' '.join(TOLERANT_BUS)}` (rows marked "
                "*tolerant sim "
                "bus*): the simulated servos answer from a thread of the run process itself, so when that process stalls their "
                "replies are late, which real servos' would not be; the stall itself still shows as lateness."
            ),
            "",
        ]
    if not r.cameras_kept_rate:
        out += [
            (
                f"The asynchronous run without latency did not keep {RATE_HZ:g} Hz with the three cameras, so every run was "
                "repeated with `--no-cameras` (rows marked so)."
            ),
            "",
        ]
    out += _table(
        (
            "run", "ticks", "achieved Hz", "period p50 / p99 / max ms", "lateness p50 / p99 ms", "late ticks", "missed deadlines",
            "process CPU",
        ),
        [(run.label, *loop_cells(run.loop), _cpu(run.process)) for run in r.runs]
        + [(f"openpi ActionChunkBroker, {b.latency_ms:g} ms", *loop_cells(b.loop), "-")],
    )
    out += [
        (
            "Policy side, from `--stats-json` (`safety_interventions.held`, `policy_stats`) and the action log: *held* ticks "
            "had no fresh action and kept the previous target (split into the hand-over, the first ticks of "
            "the policy phase before its first chunk was there, and later); *skipped steps* are actions of chunks that arrived "
            "after their "
            "tick had passed (an asynchronous chunk answers an observation taken before it arrived)."
        ),
        "",
    ]
    out += _table(
        (
            "run", "held ticks", "held at hand-over / later", "policy from s", "chunks", "inference p50 / p99 ms",
            "skipped steps", "outcome",
        ),
        [_policy_row(run) for run in r.runs]
        + [
            (
                f"openpi ActionChunkBroker, {b.latency_ms:g} ms", "-", "-", "-", b.chunks,
                f"{_f(b.inference_p50_ms)} / {_f(b.inference_p99_ms)}", "-", "-",
            )
        ],
    )
    out += [*_sync_async_ratios(r.runs), ""]
    out += [
        (
            "How to read it: with *sync*, every chunk boundary is one tick as long as the inference (period max ≈ inference "
            "latency) and the deadline slots it overran are skipped (counted as missed deadlines; the loop does not burst to "
            "catch "
            "up, so a stall shows in period max and missed deadlines more than in lateness); the arm stands still for that "
            "time, once per chunk. With *async* the period should stay at the loop's own whatever the latency, the "
            "inference running on its own thread; held ticks at the hand-over would be a wait for the policy's first chunk "
            "(the approach executes the first reply; asynchronous scheduling asks for the next one before the approach "
            "ends, from the latency of the first, so that it is there when the approach is); a later held tick would mean a "
            "chunk arrived after the previous one ran out, which asynchronous "
            "scheduling avoids as long as one inference is shorter than the actions executed per chunk "
            f"(a whole chunk of {HORIZON} is {HORIZON / RATE_HZ:g} s at {RATE_HZ:g} Hz). "
            f"The openpi ActionChunkBroker row is the loop openpi's client gives: a {RATE_HZ:g} Hz `FixedRateLoop` in this "
            f"process calling `ActionChunkBroker(WebsocketClientPolicy(URL), action_horizon={HORIZON}).infer(obs)` each tick "
            f"against the {b.latency_ms:g} ms server, with a small observation (6 state values and the prompt, no images: "
            "the preparation above would come on top)."
        ),
        "",
    ]
    return out


def _executed(runs: list[PolicyRun]) -> str:
    """Actions executed per chunk, as the runs reported it ("whole chunk" unless the config limits it)."""
    return next((str(run.process.stats["actions per chunk"]) for run in runs if run.process.stats), "-")


def _sync_async_ratios(runs: list[PolicyRun]) -> list[str]:
    out = []
    last = {replace(run.plan, tolerant_bus=False): run for run in runs}  # a retry stands for its failed run
    for plan, sync in last.items():
        paired = last.get(replace(plan, scheduling="async"))
        if plan.scheduling != "sync" or paired is None or sync.loop is None or paired.loop is None:
            continue
        out.append(
            f"- {sync.label} / {paired.label}: period max {ratio(sync.loop['period_max_ms'], paired.loop['period_max_ms'])}, "
            f"lateness p99 {ratio(sync.loop['lateness_p99_ms'], paired.loop['lateness_p99_ms'])}, "
            f"missed deadlines {sync.loop['missed_deadlines']} vs {paired.loop['missed_deadlines']}."
        )
    return out
