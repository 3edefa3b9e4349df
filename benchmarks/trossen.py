"""The bimanual WidowX AI setup against simulated controllers (section 8): the real `teleop --robot bi_widowxai
--sim` at 30 and 50 Hz, with and without its four simulated cameras, and what one read and one write of its
rigs cost inside a process.

Each `--sim` arm is a simulated controller process of its own on its own loopback address, spoken to over the
controller's real protocol by the vendor driver, so the figures include the driver's network I/O and the four
controllers competing with the loop for the machine's cores.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record_run import PARKING, Watched, _cpu, _f, _outcome, _ratio, _StatsView, _table, loop_cells, watch
from benchmarks.teleop_jitter import _teleop_command
from benchmarks.timing import CallTiming, time_calls
from robot_runtime.config import load_robot_config
from robot_runtime.session import Session

ROBOT = "bi_widowxai"
RATES_HZ = (30.0, 50.0)
STARTUP_AND_PARK_S = 60.0
"""Allowance on top of --duration before a stuck run is killed (the four arms park together in about 5 s)."""
SETTLE_S = 1.0
"""Wait after connecting before timing rig calls: the controllers and drivers are still settling into their cycle."""
WARMUP_CALLS = 20
GAP_S = 0.002
"""Pause before each timed rig call: in a loop every call follows a pause, and a call repeated back to back
without one measures a best case the loop never sees (the table shows it for one arm's read)."""
QUICK_PARK = tuple(
    f"{role}.{i}.park_speed_per_s=3.0" for role in ("followers", "leaders") for i in range(2)
)  # fmt: skip
"""The fastest parking speed the config allows, for the in-process session only: its stop is not measured."""
STARTED = re.compile(r"^teleop \S+ on ")
"""The line teleop prints once every arm is connected and the loop is about to start."""
ONE_ARM_HOT = "one follower arm: read, back to back (no pause)"
ONE_ARM_READ = "one follower arm: read"
RIG_READ = "follower rig (2 arms): read"
TICK_IO = "a teleop tick's arm I/O: leader read, follower write, follower read"


# ---- A. teleop runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrossenRun(_StatsView):
    """One `teleop --robot bi_widowxai --sim` run, watched from outside (stderr stamps, memory, CPU with the controllers)."""

    fps: float
    with_cameras: bool
    duration_s: float
    process: Watched

    @property
    def label(self) -> str:
        return f"{self.fps:g} Hz, " + ("4 cameras" if self.with_cameras else "no cameras")

    @property
    def startup_s(self) -> float:
        """Process start to the "teleop ... on" line: interpreter, four controllers started, every arm connected."""
        started = self.process.stamps(STARTED)
        return started[0][0] - self.process.start_s if started else math.nan

    @property
    def stop_s(self) -> float:
        """The "parking the follower" line (printed when the loop has ended) to the process exit."""
        parking = self.process.stamps(PARKING)
        return self.process.exit_s - parking[0][0] if parking else math.nan

    @property
    def parked(self) -> str:
        """Arms the stop reports confirm parked and torque safe, out of those reported."""
        stops = (self.process.stats or {}).get("stop", [])
        return f"{sum(1 for s in stops if s['parked'] and s['torque_safe'])} / {len(stops)}" if stops else "-"

    @property
    def camera_set(self) -> dict[str, Any] | None:
        return (self.process.stats or {}).get("cameras")


def run_bimanual(fps: float, with_cameras: bool, duration_s: float) -> TrossenRun:
    with tempfile.TemporaryDirectory(prefix="robot-runtime-bench-") as tmp:
        stats = Path(tmp) / "stats.json"
        args = [
            *_teleop_command(), "teleop", "--robot", ROBOT, "--sim", "--duration", f"{duration_s:g}", "--fps", f"{fps:g}",
            "--stats-json", str(stats), *([] if with_cameras else ["--no-cameras"]),
        ]  # fmt: skip
        process = watch(args, stats, duration_s + STARTUP_AND_PARK_S)
    return TrossenRun(fps, with_cameras, duration_s, process)


# ---- B. rig calls in process -------------------------------------------------------------------


@dataclass(frozen=True)
class RigCall:
    what: str
    timing: CallTiming


def time_paced(call: Callable[[], object], samples: int, gap_s: float = GAP_S, warmup: int = WARMUP_CALLS) -> CallTiming:
    """Like `timing.time_calls`, but each call starts `gap_s` after the previous one ended; CPU is this process's
    over the timed calls only (all its threads), not over the pauses."""
    for _ in range(warmup):
        time.sleep(gap_s)
        call()
    wall_s, cpu_s = np.empty(samples), 0.0
    for i in range(samples):
        time.sleep(gap_s)
        cpu_start_s, start_s = time.process_time(), time.perf_counter()
        call()
        wall_s[i] = time.perf_counter() - start_s
        cpu_s += time.process_time() - cpu_start_s
    ms = wall_s * 1e3
    return CallTiming(samples, float(np.median(ms)), float(np.percentile(ms, 99)), float(ms.max()), 1e3 * cpu_s / samples)


def rig_calls(samples: int) -> list[RigCall]:
    """The rigs `teleop --sim` builds (cameras left out), each call timed `samples` times, paced."""
    with Session(load_robot_config(ROBOT, QUICK_PARK), sim=True, with_cameras=False) as session:
        follower, leader = session.follower, session.leader
        assert leader is not None
        time.sleep(SETTLE_S)
        held = follower.read().position  # writing the present pose keeps the followers still
        one_arm = next(iter(follower.arms.values()))

        def tick_io() -> None:  # what Teleop.tick does with the arms, without the safety filter and cameras
            leader.read()
            follower.write(held)
            follower.read()

        calls: list[tuple[str, Callable[[], object]]] = [
            (ONE_ARM_READ, one_arm.read),
            (RIG_READ, follower.read),
            ("leader rig (2 arms): read", leader.read),
            ("follower rig: write its present pose", lambda: follower.write(held)),
            ("follower rig: read, then write what it read", lambda: follower.write(follower.read().position)),
            (TICK_IO, tick_io),
        ]
        hot = RigCall(ONE_ARM_HOT, time_calls(one_arm.read, samples, WARMUP_CALLS))
        return [hot, *(RigCall(what, time_paced(call, samples)) for what, call in calls)]


# ---- both -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrossenResult:
    runs: list[TrossenRun]
    calls: list[RigCall]
    samples: int
    duration_s: float


def _logged(run: TrossenRun, log: Callable[[str], None]) -> TrossenRun:
    said = f"teleop {ROBOT} {run.label}: {_outcome(run.process)}"
    if run.loop is not None:
        loop = run.loop
        said += f", {loop['achieved_hz']:.2f} Hz, lateness p99 {loop['lateness_p99_ms']:.2f} ms"
        said += f", missed {loop['missed_deadlines']}"
    said += f", start-up {_f(run.startup_s)} s, stop {_f(run.stop_s)} s"
    log(f"[red]{said}[/]" if run.process.returncode != 0 else said)
    return run


def trossen_benchmark(duration_s: float, samples: int, log: Callable[[str], None] = print) -> TrossenResult:
    """The four teleop runs one at a time (without cameras first), then the rig calls."""
    runs = [_logged(run_bimanual(fps, cameras, duration_s), log) for cameras in (False, True) for fps in RATES_HZ]
    calls = rig_calls(samples)
    for call in calls:
        log(f"{call.what}: median {call.timing.median_ms * 1e3:.0f} µs, p99 {call.timing.p99_ms * 1e3:.0f} µs")
    return TrossenResult(runs, calls, samples, duration_s)


# ---- markdown -------------------------------------------------------------------------------


def _us(ms: float) -> str:
    return f"{ms * 1e3:.0f}"


def _process_row(run: TrossenRun) -> tuple[object, ...]:
    w = run.process
    return (run.label, _cpu(w), _f(w.peak_rss_mb, 0), _f(run.startup_s), _f(run.stop_s), _f(w.wall_s), run.parked, _outcome(w))


def _camera_row(run: TrossenRun) -> tuple[object, ...]:
    cams = run.cameras
    stats = run.camera_set or {}
    return (
        run.label,
        " / ".join(f"{c['achieved_fps']:.1f}" for c in cams),
        f"{max(c['age_p50_ms'] for c in cams):.1f} / {max(c['age_p99_ms'] for c in cams):.1f}",
        f"{_f(stats.get('skew_p50_ms'))} / {_f(stats.get('skew_p99_ms'))}",
        sum(c["dropped"] for c in cams),
        sum(c["reused"] for c in cams),
    )


def _camera_ratios(runs: Sequence[TrossenRun]) -> list[str]:
    out = []
    for run in runs:
        base = next((b for b in runs if b.fps == run.fps and not b.with_cameras), None)
        if not run.with_cameras or base is None or run.loop is None or base.loop is None:
            continue
        out.append(
            f"- {run.label} / {base.label}: lateness p99 {_ratio(run.loop['lateness_p99_ms'], base.loop['lateness_p99_ms'])}, "
            f"period p99 {_ratio(run.loop['period_p99_ms'], base.loop['period_p99_ms'])}, "
            f"process CPU {_ratio(run.process.cpu_s / run.process.wall_s, base.process.cpu_s / base.process.wall_s)}."
        )
    return out


def _call_ratios(calls: Sequence[RigCall]) -> list[str]:
    by_what = {c.what: c.timing for c in calls}
    hot, one, rig_read, tick = by_what[ONE_ARM_HOT], by_what[ONE_ARM_READ], by_what[RIG_READ], by_what[TICK_IO]
    shares = ", ".join(
        f"{100 * tick.median_ms * hz / 1e3:.1f} % of a {hz:g} Hz period at the median, {100 * tick.p99_ms * hz / 1e3:.1f} % at "
        "p99"
        for hz in RATES_HZ
    )
    return [
        (
            f"- One arm's read, paced / back to back: median {_ratio(one.median_ms, hot.median_ms)}, CPU "
            f"{_ratio(one.cpu_per_call_ms, hot.cpu_per_call_ms)}."
        ),
        (
            f"- Follower rig read / one arm's read, both paced: median {_ratio(rig_read.median_ms, one.median_ms)}, p99 "
            f"{_ratio(rig_read.p99_ms, one.p99_ms)}."
        ),
        f"- A tick's arm I/O: {shares}.",
    ]


def trossen_section(r: TrossenResult, number: int = 8) -> list[str]:
    no_cams = [run for run in r.runs if not run.with_cameras]
    cams = [run for run in r.runs if run.with_cameras and run.cameras]
    out = [
        f"## {number}. Bimanual WidowX AI against simulated controllers",
        "",
        (
            f"`robot-runtime teleop --robot {ROBOT} --sim --duration {r.duration_s:g} --fps N [--no-cameras] --stats-json ...` "
            f"run as a subprocess, one run at a time. {ROBOT}.yaml is two WidowX AI followers driven by two WidowX AI leaders; "
            "with `--sim` each of the four arms is a simulated controller in a process of its own, on its own loopback "
            "address (127.0.0.x), which the vendor driver (`trossen_arm`) talks to over the controller's real TCP and UDP "
            "protocol, and the leaders play the config's demo. The four cameras (`cam_high`, `cam_low`, `cam_left_wrist`, "
            "`cam_right_wrist`) are simulated at 640x480 @ 30 fps, as in section 5. The arms' `goal_time_s` is left at its "
            "default, one 30 Hz period, in the 50 Hz runs too."
        ),
        "",
        "Loop timing, from `--stats-json` (lateness is tick start minus its deadline):",
        "",
    ]
    out += _table(
        ("run", "ticks", "achieved Hz", "period p50 / p99 / max ms", "lateness p50 / p99 ms", "late ticks", "missed deadlines"),
        [(run.label, *loop_cells(run.loop)) for run in r.runs],
    )
    out += _camera_ratios(r.runs)
    slow_loop, fast_loop = (no_cams[0].loop, no_cams[1].loop) if len(no_cams) == 2 else (None, None)
    if slow_loop is not None and fast_loop is not None:
        slow, fast = no_cams
        out.append(
            f"- {fast.label} / {slow.label}: lateness p99 {_ratio(fast_loop['lateness_p99_ms'], slow_loop['lateness_p99_ms'])}, "
            f"process CPU {_ratio(fast.process.cpu_s / fast.process.wall_s, slow.process.cpu_s / slow.process.wall_s)}."
        )
    out += [
        "",
        (
            "The process as a whole, seen from outside. Process CPU is user+system time of the teleop process and its "
            "four controller processes over the wall time, start-up and stop included (100 % is one core); peak RSS is "
            "the process plus its children, sampled every 0.5 s. *Start-up*: process start to the `teleop ... on "
            "simulated hardware` line (interpreter, four controllers started, four arms connected, cameras opened). "
            "*Loop end to exit* (the stop): from the `parking the follower` line, printed when the loop ends, to the exit: "
            "cameras closed, each of the four arms moved through the staged pose (raised clear of the table) to its folded park "
            "pose and "
            "confirmed there, all four at once (leaders too: they have motors and would otherwise sag), the "
            "controllers stopped. Start-up, the duration and the stop add up to the wall time. *Parked*: arms whose stop "
            "report says parked and torque safe."
        ),
        "",
    ]
    out += _table(
        ("run", "process CPU", "peak RSS MB", "start-up s", "loop end to exit s", "wall s", "parked", "outcome"),
        [_process_row(run) for run in r.runs],
    )
    if cams:
        out += [
            (
                "Cameras, from `--stats-json`: achieved fps per camera (in the order above), frame age (follower read "
                "time minus the chosen frame's capture time) of the worst camera, skew of capture times across the four "
                "cameras within one tick, and dropped and reused frames summed over the cameras (as in section 5)."
            ),
            "",
        ]
        out += _table(
            ("run", "camera fps", "frame age p50 / p99 ms", "skew p50 / p99 ms", "dropped", "reused"),
            [_camera_row(run) for run in cams],
        )
    out += [
        "### One rig read and write",
        "",
        (
            f'In this process: `Session(load_robot_config("{ROBOT}"), sim=True, with_cameras=False)`, the same four '
            f"controller processes and rigs as the runs above (their parking sped up, as it is not measured here), from "
            f"{SETTLE_S:g} s after connecting; each call timed {r.samples} times after {WARMUP_CALLS} warm-up calls, each "
            f"call {1e3 * GAP_S:g} ms after the previous one ended, as calls in a loop come after a pause (the first row "
            "is the exception: one arm's read repeated back to back, the best case). A rig read returns each of its arms' "
            "latest controller state as the driver holds it (no request goes out: the driver's own UDP cycle keeps it "
            "fresh); a write sends each arm one position goal. The writes target the followers' present pose, so they "
            "stay still. The last row is the arm I/O of one teleop tick, without the safety filter and the cameras. CPU "
            "per call is this process's CPU during the calls, including the four drivers' background threads, not the "
            "controllers'."
        ),
        "",
    ]
    out += _table(
        ("call", "median µs", "p99 µs", "max µs", "CPU per call µs"),
        [
            (c.what, _us(c.timing.median_ms), _us(c.timing.p99_ms), _us(c.timing.max_ms), _us(c.timing.cpu_per_call_ms))
            for c in r.calls
        ],
    )
    out += [*_call_ratios(r.calls), ""]
    out += [
        (
            "How to read it: the loop figures say whether the runtime keeps the rate with four arms on the network "
            "and four controllers sharing the machine; a p99 or max period well above the target period, late ticks or "
            "missed deadlines mean it did not, and the camera rows show what the four capture threads add. Process CPU "
            "includes the four simulated controllers, work that real arms do on their own controllers, and with the "
            "machine's cores nearly all busy it is bounded by what they can give: compare it across these rows, not with "
            "the single-arm sections, and read equal figures as no more than that. The rig "
            "calls are the part of each tick spent talking to the arms: against the period they show how much of the "
            "tick is left for the rest, and their p99 and max (against the median) how much a call waits when the "
            "controllers and drivers take the cores. The stop is mostly parking, which is paced by the arms' parking "
            "speed, not by the machine; it is the time an operator waits after the loop ends."
        ),
        "",
    ]
    return out
