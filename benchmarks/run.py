"""`python -m benchmarks.run`: measure the bus, a missing motor, the teleop loop with and without cameras,
recording, the policy client and chunk scheduling, the bimanual WidowX AI and Flexiv setups, and write
docs/benchmarks.md. `--only record`, `--only policy`, `--only trossen` or `--only flexiv` runs that section alone
(and prints it).

Everything is measured in one run on one machine and compared as ratios within it, because absolute
numbers from a shared 2-core VM say little on their own. There are deliberately no pass/fail thresholds.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.bus_cycle import (
    BAUD_BPS,
    IN_PROCESS,
    MISSING_SERVO_ID,
    OUR_DEFAULTS,
    OUR_POSITION,
    OUR_SPAN,
    SERVO_IDS,
    SPAN_BYTES,
    STOCK,
    STOCK_TIMEOUT_MS,
    SUBPROCESS,
    CycleRow,
    MissingMotorResult,
    bus_cycles,
    missing_motor,
)
from benchmarks.flexiv import flexiv_benchmark, flexiv_section
from benchmarks.machine import Machine, describe_machine
from benchmarks.policy import LATENCIES_MS, SCHEDULINGS, policy_benchmark, policy_section
from benchmarks.record_run import loop_cells, record_benchmark, record_section
from benchmarks.teleop_jitter import TeleopRun, cpu_hogs, run_teleop
from benchmarks.timing import ratio
from benchmarks.trossen import RATES_HZ as TROSSEN_RATES_HZ
from benchmarks.trossen import trossen_benchmark, trossen_section

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
console = Console(stderr=True, highlight=False)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return [*lines, ""]


def _ms(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def machine_section(m: Machine) -> list[str]:
    load = " / ".join(f"{x:.2f}" for x in m.load_average_1_5_15)
    rows = [
        ("CPU", m.cpu_model),
        ("cores (os.cpu_count)", m.cores),
        ("Python", m.python),
        ("OS / kernel", m.os_kernel),
        ("date", m.date_utc),
        ("load average 1/5/15 min at start", load),
        *((f"{name} version", version) for name, version in m.packages.items()),
    ]
    return ["## 1. Machine", "", *_table(("what", "value"), rows)]


def bus_section(rows: list[CycleRow], cycles: int, warmup: int) -> list[str]:
    out = [
        "## 2. Bus cycle against the simulator",
        "",
        (
            f"Six simulated STS3215 servos (ids {SERVO_IDS[0]}-{SERVO_IDS[-1]}) on a pseudo-terminal at {BAUD_BPS} baud. "
            f"Each row: {cycles} timed cycles after {warmup} warm-up cycles. One cycle is one sync read plus one sync write."
        ),
        "",
        (
            f"- **{IN_PROCESS}**: the `FeetechBusSimulator` thread runs inside the benchmark process, so *CPU per cycle "
            "includes the simulator* answering the packets, and it competes with the client for the GIL."
        ),
        f"- **{SUBPROCESS}**: `python -m drivers.feetech.sim_bus` in its own process; CPU per cycle is the client alone.",
        (
            "- The stock SDK row uses `scservo_sdk.PortHandler` as shipped: reads poll the port in a loop (busy-wait). "
            "`FeetechBus` uses `BoundedPortHandler`, which blocks in `select()`."
        ),
        (
            f"- The first row reads {REGISTER_NOTE}; the stock SDK row reads Present_Position only ({FIRST_SIZE_NOTE}). "
            "The middle row reads the same 2 bytes with `FeetechBus`, for a like-for-like comparison."
        ),
        "",
    ]
    out += _table(
        ("setup", "client and cycle", "cycles", "median ms", "p99 ms", "max ms", "CPU per cycle ms"),
        [
            (
                r.setup,
                r.client,
                r.timing.samples,
                _ms(r.timing.median_ms),
                _ms(r.timing.p99_ms),
                _ms(r.timing.max_ms),
                _ms(r.timing.cpu_per_call_ms),
            )
            for r in rows
        ],
    )
    ratio_rows = []
    for setup in (IN_PROCESS, SUBPROCESS):
        by_client = {r.client: r.timing for r in rows if r.setup == setup}
        stock = by_client[STOCK]
        for ours_label, ours_name in ((OUR_SPAN, f"span, {SPAN_BYTES} B"), (OUR_POSITION, "Present_Position, 2 B")):
            ours = by_client[ours_label]
            ratio_rows.append(
                (
                    setup,
                    f"FeetechBus ({ours_name})",
                    ratio(stock.cpu_per_call_ms, ours.cpu_per_call_ms),
                    ratio(stock.median_ms, ours.median_ms),
                    ratio(stock.p99_ms, ours.p99_ms),
                )
            )
    out += ["Ratios stock SDK / ours (above 1: the stock SDK costs more; below 1: ours costs more):", ""]
    out += _table(("setup", "ours", "CPU per cycle", "median wall", "p99 wall"), ratio_rows)
    return out


REGISTER_NOTE = f"Present_Position..Present_Load ({SPAN_BYTES} bytes per motor), as the arm driver does every tick"
FIRST_SIZE_NOTE = "2 bytes per motor"


def missing_motor_section(r: MissingMotorResult) -> list[str]:
    ours_settings = f"reply_timeout_ms={OUR_DEFAULTS['reply_timeout_ms']:g}, retries={OUR_DEFAULTS['retries']} (defaults)"
    stock_settings = f"SDK default window {STOCK_TIMEOUT_MS:g} ms + transfer time, no retry"
    out = [
        "## 3. Cost of a missing motor",
        "",
        (
            f"`Fault.NO_REPLY` injected on servo {MISSING_SERVO_ID} of the in-process simulator (its CPU is included, but "
            f"a silent servo costs it nothing). One sync read of Present_Position..Present_Load ({SPAN_BYTES} B) from all "
            "six servos, timed per failing read after one untimed one. `FeetechBus` tries the read twice, then pings the "
            "other motors to name the missing one and raises `MotorNotRespondingError`; the stock "
            "`GroupSyncRead.txRxPacket()` returns an error code after one timeout."
        ),
        "",
    ]
    out += _table(
        ("client", "settings", "reads", "wall median ms", "wall max ms", "CPU per read ms (mean)"),
        [
            (
                "FeetechBus",
                ours_settings,
                r.ours.samples,
                _ms(r.ours.median_ms, 2),
                _ms(r.ours.max_ms, 2),
                _ms(r.ours.cpu_per_call_ms, 2),
            ),
            (
                "stock SDK",
                stock_settings,
                r.stock.samples,
                _ms(r.stock.median_ms, 2),
                _ms(r.stock.max_ms, 2),
                _ms(r.stock.cpu_per_call_ms, 2),
            ),
        ],
    )
    out += [
        (
            f"Ratios stock SDK / ours: wall {ratio(r.stock.median_ms, r.ours.median_ms)}, CPU "
            f"{ratio(r.stock.cpu_per_call_ms, r.ours.cpu_per_call_ms)}. "
            f"CPU / wall: ours {ratio(r.ours.cpu_per_call_ms, r.ours.median_ms)}, stock "
            f"{ratio(r.stock.cpu_per_call_ms, r.stock.median_ms)} "
            "(near 1x means the read spins a core while it waits)."
        ),
        "",
        f"What each reports: ours `{r.our_error}`; stock `{r.stock_result}`.",
        "",
    ]
    return out


def teleop_section(runs: list[TeleopRun], duration_s: float) -> list[str]:
    out = [
        "## 4. Loop timing during simulated teleop",
        "",
        (
            f"`robot-runtime teleop --robot so100 --sim --no-cameras --duration {duration_s:g} --fps N --stats-json ...` "
            "run as a subprocess, one run at a time (leader and follower each on their own in-process bus simulator). "
            "Samples are loop ticks; lateness is tick start minus its deadline. "
            "Process CPU is user+system time of the whole process "
            "(start-up and parking included) over its wall time. Under load a busy-arithmetic Python process is pinned to "
            "each listed CPU; teleop itself is not pinned, so with one hog the scheduler can keep it on the free core."
        ),
        "",
    ]
    rows = []
    for run in runs:
        cpu = f"{100 * run.cpu_s / run.wall_s:.1f} %"
        rows.append((run.label, *loop_cells(run.loop), cpu, run.outcome))
    out += _table(
        (
            "run",
            "ticks",
            "achieved Hz",
            "period p50 / p99 / max ms",
            "lateness p50 / p99 ms",
            "late ticks",
            "missed deadlines",
            "process CPU",
            "outcome",
        ),
        rows,
    )
    quiet = next((run.loop for run in runs if run.label == "50 Hz"), None)
    for run in runs:
        if quiet and run.loop and "hog" in run.label:
            out.append(
                f"- {run.label} / 50 Hz quiet: lateness p99 {ratio(run.loop['lateness_p99_ms'], quiet['lateness_p99_ms'])}, "
                f"period p99 {ratio(run.loop['period_p99_ms'], quiet['period_p99_ms'])}, "
                f"period max {ratio(run.loop['period_max_ms'], quiet['period_max_ms'])}."
            )
    out.append("")
    return out


def _worst(cameras: list[dict[str, Any]], key: str) -> float:
    return max(c[key] for c in cameras)


def camera_section(runs: list[TeleopRun], baselines: dict[float, TeleopRun], duration_s: float) -> list[str]:
    out = [
        "## 5. Loop timing with three simulated cameras",
        "",
        (
            f"The same teleop process as section 4 (`--duration {duration_s:g}`), now with so100.yaml's three cameras "
            "(`front`, `wrist`, `top`), which `--sim` replaces with simulated 640x480 @ 30 fps cameras. Each has its own "
            "capture thread rendering the simulated follower and stamping every frame; each tick takes the newest frame of "
            "every camera. Frame age is the follower read time minus the chosen frame's capture time (worst camera shown); "
            "skew is the spread of capture times across the three cameras within one tick. The cameras run free, each at "
            "its own phase, as real cameras without a sync cable do. Ratios compare with the camera-less run at the same "
            "rate in section 4."
        ),
        "",
    ]
    rows = []
    for run in runs:
        cpu = f"{100 * run.cpu_s / run.wall_s:.1f} %"
        if run.loop is None or run.cameras is None:
            rows.append((run.label, *["-"] * 8, cpu, run.outcome))
            continue
        loop, cams = run.loop, run.cameras["cameras"]
        rows.append(
            (
                run.label,
                f"{loop['achieved_hz']:.2f}",
                f"{loop['lateness_p50_ms']:.3f} / {loop['lateness_p99_ms']:.3f}",
                loop["missed_deadlines"],
                " / ".join(f"{c['achieved_fps']:.2f}" for c in cams),
                f"{_worst(cams, 'age_p50_ms'):.1f} / {_worst(cams, 'age_p99_ms'):.1f}",
                f"{run.cameras['skew_p50_ms']:.1f} / {run.cameras['skew_p99_ms']:.1f}",
                sum(c["dropped"] for c in cams),
                sum(c["reused"] for c in cams),
                cpu,
                run.outcome,
            )
        )
    out += _table(
        ("run", "achieved Hz", "lateness p50 / p99 ms", "missed deadlines", "camera fps", "frame age p50 / p99 ms",
         "skew p50 / p99 ms", "dropped", "reused", "process CPU", "outcome"),
        rows,
    )  # fmt: skip
    for run in runs:
        base = baselines.get(run.fps)
        if run.loop and base and base.loop and "hog" not in run.label:
            out.append(
                f"- {run.label} / no cameras: lateness p99 {ratio(run.loop['lateness_p99_ms'], base.loop['lateness_p99_ms'])}, "
                f"process CPU {ratio(run.cpu_s / run.wall_s, base.cpu_s / base.wall_s)}."
            )
    out += [
        "",
        (
            "Dropped: frames a camera delivered that no tick took (a camera faster than the loop, or one whose phase "
            "drifts against it). Reused: ticks that got the same frame as the tick before (at 50 Hz, two ticks often "
            "fall within one 33 ms frame period)."
        ),
        "",
    ]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the robot-runtime benchmarks and write docs/benchmarks.md.")
    parser.add_argument("--cycles", type=int, default=2000, help="timed bus cycles per row (section 2)")
    parser.add_argument("--warmup-cycles", type=int, default=200)
    parser.add_argument("--missing-reads", type=int, default=10, help="timed failing reads per client (section 3)")
    parser.add_argument("--teleop-duration-s", type=float, default=20.0, help="--duration of each teleop run (section 4)")
    parser.add_argument("--record-episodes", type=int, default=10, help="episodes of the AV1 recording run (section 6)")
    parser.add_argument("--record-episode-s", type=float, default=25.0, help="--episode-time of both recording runs")
    parser.add_argument("--record-reset-s", type=float, default=5.0, help="--reset-time of both recording runs")
    parser.add_argument("--record-h264-episodes", type=int, default=3, help="episodes of the shorter H.264 run")
    parser.add_argument("--record-baseline-s", type=float, default=60.0, help="--duration of the teleop run without recording")
    parser.add_argument("--policy-samples", type=int, default=300, help="timed calls per client overhead figure (section 7)")
    parser.add_argument("--policy-duration-s", type=float, default=12.0, help="--duration of each policy run (section 7)")
    parser.add_argument(
        "--trossen-duration-s", type=float, default=12.0, help="--duration of each bi_widowxai teleop run (section 8)"
    )
    parser.add_argument("--trossen-samples", type=int, default=300, help="timed calls per rig call figure (section 8)")
    parser.add_argument("--flexiv-duration-s", type=float, default=8.0, help="--duration of the bi_flexiv swing (section 9)")
    parser.add_argument("--flexiv-samples", type=int, default=300, help="timed calls per in-process figure (section 9)")
    parser.add_argument(
        "--only",
        choices=("record", "policy", "trossen", "flexiv"),
        help="run only this section (after the machine); printed unless --output is given",
    )
    parser.add_argument("--output", type=Path, help=f"default: {OUTPUT.relative_to(OUTPUT.parent.parent)} (stdout with --only)")
    args = parser.parse_args(argv)

    start_s = time.perf_counter()
    machine = describe_machine()
    console.log(f"machine: {machine.cpu_model}, {machine.cores} cores, load {machine.load_average_1_5_15[0]:.2f}")
    sections = [] if args.only else _loop_sections(args)
    if args.only in (None, "record"):
        sections += _record_section(args)
    if args.only in (None, "policy"):
        sections += _policy_section(args)
    if args.only in (None, "trossen"):
        sections += _trossen_section(args)
    if args.only in (None, "flexiv"):
        sections += _flexiv_section(args)
    elapsed_s = time.perf_counter() - start_s

    command = "python -m benchmarks.run" + (f" --only {args.only}" if args.only else "")
    lines = [
        "# Benchmarks",
        "",
        (
            f"Generated by `{command}` (run from the repository root; this run took {elapsed_s:.0f} s). "
            "Regenerate it rather than editing it. Every figure comes from one run on the machine listed in section 1: "
            "compare figures as ratios within this page, not with figures from another machine. "
            "There are no pass/fail thresholds."
        ),
        "",
        *machine_section(machine),
        *sections,
        (
            f"Load average 1/5/15 min at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} "
            "(the benchmark itself adds to it; a high value at the start means something else was running)."
        ),
    ]
    text = "\n".join(lines).rstrip() + "\n"
    output = args.output if args.output is not None or args.only else OUTPUT
    if output is None:
        print(text, end="")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    console.log(f"wrote {output}")


def _record_section(args: argparse.Namespace) -> list[str]:
    """Section 6: the long AV1 recording, the H.264 one and the teleop baseline."""
    phase_s = args.record_episodes * (args.record_episode_s + args.record_reset_s)
    with console.status(f"recording (section 6): about {phase_s / 60:.0f} min of AV1, then H.264 and a teleop baseline ..."):
        record = record_benchmark(
            args.record_episodes,
            args.record_episode_s,
            args.record_reset_s,
            args.record_h264_episodes,
            args.record_baseline_s,
            console.log,
        )
    return record_section(record)


def _policy_section(args: argparse.Namespace) -> list[str]:
    """Section 7: client overhead per query, then the loop at each server latency, sync and async."""
    runs = len(LATENCIES_MS) * len(SCHEDULINGS)
    with console.status(
        f"policy client (section 7): overhead, then {runs} runs of {args.policy_duration_s:g} s and an openpi baseline ..."
    ):
        return policy_section(policy_benchmark(args.policy_samples, args.policy_duration_s, console.log))


def _trossen_section(args: argparse.Namespace) -> list[str]:
    """Section 8: bi_widowxai teleop at each rate without and with cameras, then the rig calls in process."""
    runs = 2 * len(TROSSEN_RATES_HZ)
    with console.status(
        f"bimanual WidowX AI (section 8): {runs} teleop runs of {args.trossen_duration_s:g} s (each about 15 s more to start and "
        "park), then rig calls ..."
    ):
        return trossen_section(trossen_benchmark(args.trossen_duration_s, args.trossen_samples, console.log))


def _flexiv_section(args: argparse.Namespace) -> list[str]:
    """Section 9: bi_flexiv taught a swing, then following it with cameras; tracking; per-tick costs in process."""
    with console.status(
        f"bimanual Flexiv (section 9): two runs of about {args.flexiv_duration_s:g} s, then {args.flexiv_samples} calls ..."
    ):
        return flexiv_section(flexiv_benchmark(args.flexiv_duration_s, args.flexiv_samples, console.log))


def _loop_sections(args: argparse.Namespace) -> list[str]:
    """Sections 2 to 5: the bus, a missing motor, teleop without and with cameras."""
    with console.status("bus cycles (section 2) ..."):
        cycles = bus_cycles(args.cycles, args.warmup_cycles)
    for row in cycles:
        console.log(
            f"{row.setup}: {row.client}: median {row.timing.median_ms:.3f} ms, CPU {row.timing.cpu_per_call_ms:.3f} ms/cycle"
        )
    with console.status("missing motor (section 3) ..."):
        missing = missing_motor(args.missing_reads)
    console.log(f"missing motor: ours {missing.ours.median_ms:.1f} ms, stock {missing.stock.median_ms:.1f} ms")
    cpus = sorted(os.sched_getaffinity(0))
    teleop_plan: list[tuple[str, float, list[int]]] = [
        ("30 Hz", 30.0, []),
        ("50 Hz", 50.0, []),
        (f"50 Hz, CPU hog pinned to CPU {cpus[-1]}", 50.0, cpus[-1:]),
        (f"50 Hz, CPU hogs on all {len(cpus)} CPUs", 50.0, cpus),
    ]
    runs = _run_plan(teleop_plan, args.teleop_duration_s, "section 4", ["--no-cameras"])
    camera_plan: list[tuple[str, float, list[int]]] = [
        ("30 Hz, 3 cameras", 30.0, []),
        ("50 Hz, 3 cameras", 50.0, []),
        (f"50 Hz, 3 cameras, CPU hogs on all {len(cpus)} CPUs", 50.0, cpus),
    ]
    camera_runs = _run_plan(camera_plan, args.teleop_duration_s, "section 5")
    baselines = {run.fps: run for run, (_, _, hog_cpus) in zip(runs, teleop_plan, strict=True) if not hog_cpus}
    return [
        *bus_section(cycles, args.cycles, args.warmup_cycles),
        *missing_motor_section(missing),
        *teleop_section(runs, args.teleop_duration_s),
        *camera_section(camera_runs, baselines, args.teleop_duration_s),
    ]


def _run_plan(
    plan: list[tuple[str, float, list[int]]], duration_s: float, section: str, extra_args: Sequence[str] = ()
) -> list[TeleopRun]:
    """One teleop run per (label, fps, CPUs to load) entry, one at a time, each logged as it ends."""
    runs = []
    for label, fps, hog_cpus in plan:
        with console.status(f"teleop {label} for {duration_s:g} s ({section}) ..."), cpu_hogs(hog_cpus):
            run = run_teleop(label, fps, duration_s, extra_args)
        runs.append(run)
        if run.loop is None:
            console.log(f"[red]teleop {run.label}: {run.outcome}[/]")
        else:
            console.log(
                f"teleop {run.label}: {run.loop['achieved_hz']:.2f} Hz, lateness p99 {run.loop['lateness_p99_ms']:.3f} ms, "
                f"missed {run.loop['missed_deadlines']}"
            )
    return runs


if __name__ == "__main__":
    main()
