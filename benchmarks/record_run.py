"""Recording with three simulated cameras (section 6): one long `record --sim` run with the default AV1,
a shorter one with H.264, and a teleop run without recording as the baseline.

Each CLI process is watched from outside: its stderr lines are stamped as they arrive (the parent's
time.monotonic is the same clock as the child's), its resident memory is sampled from /proc every
POLL_S, and its CPU comes from wait4. The rest comes from its --stats-json and the dataset it wrote.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from benchmarks.teleop_jitter import _teleop_command
from benchmarks.timing import ratio

POLL_S = 0.5
START_ROWS = 3
"""Rows counted as an episode's start: the first tick opens the episode's live encoders."""
STARTUP_AND_PARK_S = 60.0
COMMIT_ALLOWANCE = 3.0
"""A run may take this many times its planned recording phase on top, for the final commits, before it is killed."""

RECORDING = re.compile(r"^recording episode (\d+) ")
RESET = re.compile(r"^reset the scene")
SAVED = re.compile(r"^episode (\d+) saved ")
COMMITTED = re.compile(r"^episode (\d+) committed ")
PARKING = re.compile(r"^parking the follower")
COMMITTING = re.compile(r"^committing \d+ episode")
ERROR = re.compile(r"^error: ")


@dataclass(frozen=True)
class Watched:
    """One CLI process seen from outside. Times are the parent's time.monotonic() in seconds."""

    args: tuple[str, ...]
    lines: tuple[tuple[float, str], ...]
    """stderr lines, each stamped when it arrived."""
    rss_mb: tuple[tuple[float, float], ...]
    """(time, VmRSS of the process plus any children) every POLL_S."""
    hwm_mb: float
    """VmHWM (the kernel's peak RSS) at the last sample before the exit."""
    maxrss_mb: float
    """ru_maxrss from wait4: the peak RSS up to the exit."""
    start_s: float
    exit_s: float
    cpu_s: float
    returncode: int | None
    """None when the process was killed after its time limit."""
    stats: dict[str, Any] | None

    @property
    def wall_s(self) -> float:
        return self.exit_s - self.start_s

    @property
    def peak_rss_mb(self) -> float:
        return max((mb for _, mb in self.rss_mb), default=math.nan)

    def stamps(self, pattern: re.Pattern[str]) -> list[tuple[float, re.Match[str]]]:
        return [(t, m) for t, line in self.lines if (m := pattern.match(line))]

    def last_error(self) -> str | None:
        errors = [line for _, line in self.lines if ERROR.match(line)]
        return errors[-1] if errors else None


def _status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of one process in MB; empty once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {
        k: int(v.split()[0]) / 1024 for k, _, v in (line.partition(":") for line in text.splitlines()) if k in ("VmRSS", "VmHWM")
    }


def _descendants(pid: int) -> list[int]:
    out = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            out += [int(c) for c in children.read_text().split()]
    return out + [d for c in out for d in _descendants(c)]


def _sample_memory(pid: int, done: threading.Event, samples: list[tuple[float, float]], hwm: list[float]) -> None:
    while not done.is_set():
        own = _status_mb(pid)
        if "VmRSS" in own:  # a zombie waiting to be reaped has none
            samples.append((time.monotonic(), own["VmRSS"] + sum(_status_mb(c).get("VmRSS", 0.0) for c in _descendants(pid))))
            hwm[0] = own["VmHWM"]
        done.wait(POLL_S)


def _read_lines(stream: Any, lines: list[tuple[float, str]]) -> None:
    for line in stream:
        lines.append((time.monotonic(), line.rstrip("\n")))


def watch(args: Sequence[str], stats_path: Path, timeout_s: float) -> Watched:
    """Run one CLI command with stdin from /dev/null, stamping its stderr and sampling its memory until it exits."""
    env = {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}  # one message per line, none wrapped
    lines: list[tuple[float, str]] = []
    samples: list[tuple[float, float]] = []
    hwm = [math.nan]
    start_s = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    done = threading.Event()
    threads = [
        threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True),
        threading.Thread(target=_sample_memory, args=(proc.pid, done, samples, hwm), daemon=True),
    ]
    for thread in threads:
        thread.start()
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        os.kill(proc.pid, signal.SIGKILL)  # safe until reaped: a pid is not reused before wait4 returns

    killer = threading.Timer(timeout_s, kill)
    killer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    exit_s = time.monotonic()
    killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait for it again
    done.set()
    for thread in threads:
        thread.join()
    assert proc.stderr is not None
    proc.stderr.close()
    stats = _read_json(stats_path)
    return Watched(
        tuple(args), tuple(lines), tuple(samples), hwm[0], usage.ru_maxrss / 1024, start_s, exit_s,
        usage.ru_utime + usage.ru_stime, None if killed.is_set() else proc.returncode, stats,
    )  # fmt: skip


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Lateness:
    """Tick lateness of dataset rows (recording ticks only): tick start minus its deadline."""

    rows: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_rows: int
    """Rows later than a tenth of a period (the loop's own "late" threshold)."""


def _lateness(values_s: np.ndarray, period_s: float) -> Lateness:
    if not len(values_s):
        return Lateness(0, math.nan, math.nan, math.nan, 0)
    ms = values_s * 1e3
    return Lateness(
        len(ms),
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        float(ms.max()),
        int((values_s > 0.1 * period_s).sum()),
    )


def row_lateness_s(tick_s: np.ndarray, period_s: float) -> np.ndarray:
    """Lateness of each row of one episode from `timing.tick_s` (seconds from its first deadline).

    Row i runs in deadline slot i plus the slots the loop skipped before it (missed deadlines). A tick never
    starts before its deadline, so the skips before row i are at most floor(tick_s[j] / period) - j for every
    later row j; the smallest such bound is taken (a single tick late by more than a period is not a skip).
    """
    rows = np.arange(len(tick_s))
    bound = np.floor(tick_s / period_s - rows + 1e-9)
    skipped = np.maximum(np.minimum.accumulate(bound[::-1])[::-1], 0)
    return tick_s - (rows + skipped) * period_s


@dataclass(frozen=True)
class Timeline:
    """What the stderr stamps say, in seconds from the process start."""

    episode_starts_s: dict[int, float]
    """Episode index to its "recording episode" line."""
    episode_ends_s: list[float]
    """Each episode's "reset the scene" line; the last one (no reset follows) is its start plus --episode-time."""
    next_ready_s: list[float]
    """Episode end to the next "recording episode" line."""
    commit_pending_s: list[tuple[float, float]]
    """Per episode, from its "saved" line to its "committed" line (or the exit): the commit running or queued."""
    commit_work_s: list[float]
    """Per committed episode, from when the committer could start it (saved, and the one before committed) to committed."""
    parking_s: float
    """The "parking the follower" line, printed once the loop has ended."""
    commit_wait_s: float
    """The "committing N episode(s)" line, printed after parking if commits remain (nan: none remained)."""


def timeline(w: Watched, episode_s: float) -> Timeline:
    rel = w.start_s
    starts = {int(m[1]): t - rel for t, m in w.stamps(RECORDING)}
    resets = [t - rel for t, _ in w.stamps(RESET)]
    begins = list(starts.values())
    ends = []
    for i, begin in enumerate(begins):
        following = [r for r in resets if r > begin and (i + 1 >= len(begins) or r < begins[i + 1])]
        ends.append(following[0] if following else begin + episode_s)
    ready = [begins[i + 1] - ends[i] for i in range(len(begins) - 1)]
    saved = {int(m[1]): t - rel for t, m in w.stamps(SAVED)}
    committed = {int(m[1]): t - rel for t, m in w.stamps(COMMITTED)}
    pending = [(t, committed.get(k, w.wall_s)) for k, t in saved.items()]
    work = [committed[k] - max(saved[k], committed.get(k - 1, 0.0)) for k in saved if k in committed]
    parking = [t - rel for t, _ in w.stamps(PARKING)]
    waiting = [t - rel for t, _ in w.stamps(COMMITTING)]
    return Timeline(starts, ends, ready, pending, work, parking[0] if parking else math.nan, waiting[0] if waiting else math.nan)


@dataclass(frozen=True)
class Episode:
    """One committed episode: its metadata and its rows' lateness."""

    index: int
    frames: int
    repeated_frames: dict[str, int]
    overflowed_frames: int
    late_ticks: int
    lateness_s: np.ndarray


def read_dataset(root: Path, period_s: float) -> list[Episode]:
    """Episodes from meta/episodes and their rows' `timing.tick_s` from data/, as LeRobot would load them."""
    meta_files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    data_files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not meta_files or not data_files:
        return []
    meta = [row for f in meta_files for row in pq.read_table(f).to_pylist()]
    data = [pq.read_table(f, columns=["episode_index", "frame_index", "timing.tick_s"]) for f in data_files]
    index = np.concatenate([t["episode_index"].to_numpy() for t in data])
    frame = np.concatenate([t["frame_index"].to_numpy() for t in data])
    tick = np.concatenate([t["timing.tick_s"].to_numpy() for t in data])
    out = []
    for row in meta:
        mine = index == row["episode_index"]
        ticks = tick[mine][np.argsort(frame[mine])]
        repeated = {k.split("/")[1]: v for k, v in row.items() if k.startswith("recording/") and k.endswith("/repeated_frames")}
        out.append(
            Episode(
                row["episode_index"], row["length"], repeated, row.get("recording/overflowed_frames", 0),
                row.get("recording/late_ticks", 0), row_lateness_s(ticks, period_s),
            )
        )  # fmt: skip
    return out


def _tree_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6 if root.exists() else 0.0


class _StatsView:
    """What a run's --stats-json says about its loop and cameras."""

    process: Watched

    @property
    def loop(self) -> dict[str, Any] | None:
        return self.process.stats["loop"] if self.process.stats else None

    @property
    def cameras(self) -> list[dict[str, Any]]:
        return (self.process.stats or {}).get("cameras", {}).get("cameras", [])


@dataclass(frozen=True)
class RecordRun(_StatsView):
    label: str
    codec: str
    episodes_planned: int
    episode_s: float
    reset_s: float
    process: Watched
    timeline: Timeline
    episodes: list[Episode]
    dataset_mb: float
    videos_mb: float
    outcome: str

    @property
    def episode_times(self) -> list[dict[str, Any]]:
        return (self.process.stats or {}).get("episode_times", [])

    @property
    def fps(self) -> float:
        return self.loop["target_hz"] if self.loop else math.nan

    @property
    def recorded_s(self) -> float:
        return sum(e.frames for e in self.episodes) / self.fps if self.episodes else 0.0

    @property
    def planned_phase_s(self) -> float:
        return self.episodes_planned * self.episode_s + (self.episodes_planned - 1) * self.reset_s

    @property
    def last_end_s(self) -> float:
        """When the loop ended: the "parking" line, printed at once after the last episode (or a failure)."""
        t = self.timeline
        return t.parking_s if not math.isnan(t.parking_s) else (t.episode_ends_s[-1] if t.episode_ends_s else math.nan)

    @property
    def end_wait_s(self) -> float:
        """Loop end to the process exit: what the user waits for after the last episode."""
        return self.process.wall_s - self.last_end_s

    @property
    def parking_s(self) -> float:
        """The "parking" line to the "committing" line (or the exit when no commit remained)."""
        t = self.timeline
        return (t.commit_wait_s if not math.isnan(t.commit_wait_s) else self.process.wall_s) - t.parking_s

    @property
    def max_pending(self) -> int:
        """Most episodes ended but not yet committed at one time (the commit backlog)."""
        pending = self.timeline.commit_pending_s
        return max((sum(b <= t < e for b, e in pending) for t, _ in pending), default=0)

    @property
    def commit_wait_s(self) -> float:
        """The "committing" line to the exit (0 when no commit remained at the end)."""
        t = self.timeline
        return self.process.wall_s - t.commit_wait_s if not math.isnan(t.commit_wait_s) else 0.0

    def lateness(self, rows: str = "all") -> Lateness:
        """Row lateness of `all` rows, `start` (first START_ROWS of each episode), `committing` or `idle` rows."""
        period_s = 1.0 / self.fps
        picked = []
        for episode in self.episodes:
            values = episode.lateness_s
            if rows == "start":
                values = values[:START_ROWS]
            elif rows in ("committing", "idle"):
                at_s = self.timeline.episode_starts_s.get(episode.index, math.nan) + np.arange(len(values)) * period_s
                busy = np.zeros(len(values), bool)
                for begin, end in self.timeline.commit_pending_s:
                    busy |= (at_s >= begin) & (at_s < end)
                values = values[busy if rows == "committing" else ~busy]
            picked.append(values)
        return _lateness(np.concatenate(picked) if picked else np.zeros(0), period_s)

    def rss_at_mb(self, at_s: float) -> float:
        """The first memory sample at or after `at_s` (seconds from the process start)."""
        after = [mb for t, mb in self.process.rss_mb if t - self.process.start_s >= at_s]
        return after[0] if after else math.nan

    def peak_rss_between_mb(self, begin_s: float, end_s: float) -> float:
        inside = [mb for t, mb in self.process.rss_mb if begin_s <= t - self.process.start_s <= end_s]
        return max(inside, default=math.nan)


def run_record(
    label: str, codec: str, episodes: int, episode_s: float, reset_s: float, extra_args: Sequence[str] = ()
) -> RecordRun:
    """One `record --sim` run into a fresh dataset, deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="robot-runtime-bench-") as tmp:
        dataset, stats = Path(tmp) / "dataset", Path(tmp) / "stats.json"
        args = [
            *_teleop_command(), "record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "bench",
            "--episodes", str(episodes), "--episode-time", f"{episode_s:g}", "--reset-time", f"{reset_s:g}",
            "--video-codec", codec, "--stats-json", str(stats), *extra_args,
        ]  # fmt: skip
        phase_s = episodes * episode_s + (episodes - 1) * reset_s
        process = watch(args, stats, phase_s * (1 + COMMIT_ALLOWANCE) + STARTUP_AND_PARK_S)
        fps = process.stats["loop"]["target_hz"] if process.stats else 30.0
        episodes_read = read_dataset(dataset, 1.0 / fps)
        dataset_mb, videos_mb = _tree_mb(dataset), _tree_mb(dataset / "videos")
    return RecordRun(
        label,
        codec,
        episodes,
        episode_s,
        reset_s,
        process,
        timeline(process, episode_s),
        episodes_read,
        dataset_mb,
        videos_mb,
        _outcome(process),
    )


def _outcome(w: Watched) -> str:
    if w.returncode is None:
        return f"killed after {w.wall_s:.0f} s"
    said = str((w.stats or {}).get("outcome", "no stats written"))
    if w.returncode == 0:
        return said
    error = w.last_error()
    if error is None:
        return f"{said}, exit {w.returncode}"
    error = error.removeprefix("error: ")
    return f"{said}, exit {w.returncode}: `{error if len(error) <= 160 else error[:160] + '...'}`"


@dataclass(frozen=True)
class TeleopBaseline(_StatsView):
    label: str
    duration_s: float
    process: Watched


def run_baseline(duration_s: float) -> TeleopBaseline:
    """`teleop --sim` with the same cameras and rate as the recording, recording nothing."""
    with tempfile.TemporaryDirectory(prefix="robot-runtime-bench-") as tmp:
        stats = Path(tmp) / "stats.json"
        args = [
            *_teleop_command(), "teleop", "--robot", "so100", "--sim", "--duration", f"{duration_s:g}",
            "--stats-json", str(stats),
        ]
        process = watch(args, stats, duration_s + STARTUP_AND_PARK_S)
    return TeleopBaseline("teleop, no recording", duration_s, process)


TOLERANT_BUS = tuple(
    arg for arm in ("followers.0", "leaders.0") for arg in ("--set", f"{arm}.reply_timeout_ms=100", "--set", f"{arm}.retries=5")
)
"""The longest reply wait and most retries the config allows: the simulated servos answer from a thread of the
recording process itself, so a stall of that process delays their replies, which real servos would not."""


@dataclass(frozen=True)
class RecordResult:
    runs: list[RecordRun]
    """The AV1 run; if it failed, the AV1 run again on a tolerant simulated bus; the H.264 run."""
    baseline: TeleopBaseline

    @property
    def long(self) -> RecordRun:
        """The longest AV1 run that got furthest (the tolerant one when the default one failed)."""
        av1 = [run for run in self.runs if run.codec == "av1"]
        return max(av1, key=lambda run: len(run.episodes))


def _logged(run: RecordRun, log: Any) -> RecordRun:
    log(
        f"record {run.label}: {run.outcome}, {len(run.episodes)} episodes, end wait {run.end_wait_s:.1f} s, peak RSS "
        f"{run.process.peak_rss_mb:.0f} MB"
    )
    return run


def record_benchmark(
    episodes: int, episode_s: float, reset_s: float, h264_episodes: int, baseline_s: float, log: Any = print
) -> RecordResult:
    """The long AV1 run (again on a tolerant simulated bus if it failed), the H.264 run, then the teleop baseline, one at a "
    "time."""
    runs = [_logged(run_record("AV1 (default)", "av1", episodes, episode_s, reset_s), log)]
    if runs[0].process.returncode != 0:
        runs.append(_logged(run_record("AV1, tolerant sim bus", "av1", episodes, episode_s, reset_s, TOLERANT_BUS), log))
    runs.append(_logged(run_record("H.264", "h264", h264_episodes, episode_s, reset_s), log))
    baseline = run_baseline(baseline_s)
    log(f"teleop baseline: exit {baseline.process.returncode}, peak RSS {baseline.process.peak_rss_mb:.0f} MB")
    return RecordResult(runs, baseline)


# ---- markdown -------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _p50_max(values: Sequence[float], digits: int = 2) -> str:
    values = [v for v in values if v is not None]
    return f"{_f(float(np.median(values)), digits)} / {_f(max(values), digits)}" if values else "-"


def _ratio(a: float | None, b: float | None) -> str:
    """`ratio`, also for a figure a failed run could not give."""
    return "n/a" if a is None or b is None or math.isnan(a) or math.isnan(b) else ratio(a, b)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return [*lines, ""]


def _cpu(w: Watched) -> str:
    return f"{100 * w.cpu_s / w.wall_s:.0f} %" if w.wall_s > 0 else "-"


def loop_cells(loop: dict[str, Any] | None) -> tuple[object, ...]:
    """ticks, Hz, period, lateness, late ticks, missed deadlines: the loop columns every table shares."""
    if loop is None:
        return ("-",) * 6
    return (
        loop["ticks"],
        f"{loop['achieved_hz']:.2f}",
        f"{loop['period_p50_ms']:.2f} / {loop['period_p99_ms']:.2f} / {loop['period_max_ms']:.2f}",
        f"{loop['lateness_p50_ms']:.3f} / {loop['lateness_p99_ms']:.3f}",
        f"{loop['late_ticks']} (> {loop['late_threshold_ms']:.1f} ms)",
        loop["missed_deadlines"],
    )


def _loop_row(label: str, loop: dict[str, Any] | None, w: Watched) -> tuple[object, ...]:
    return (label, *loop_cells(loop), _cpu(w))


def _frames_row(run: RecordRun) -> tuple[object, ...]:
    cams = [c["name"] for c in run.cameras] or sorted({c for e in run.episodes for c in e.repeated_frames})
    repeated = " / ".join(str(sum(e.repeated_frames.get(c, 0) for e in run.episodes)) for c in cams)
    dropped = " / ".join(str(c["dropped"]) for c in run.cameras) or "-"
    reused = " / ".join(str(c["reused"]) for c in run.cameras) or "-"
    return (
        run.label,
        sum(e.frames for e in run.episodes),
        repeated or "-",
        sum(e.overflowed_frames for e in run.episodes),
        dropped,
        reused,
        sum(e.late_ticks for e in run.episodes),
    )


def _episode_row(run: RecordRun) -> tuple[object, ...]:
    times = run.episode_times
    t = run.timeline
    return (
        run.label,
        f"{len(run.episodes)} / {run.episodes_planned}",
        _p50_max([e["staged_after_s"] for e in times]),
        _p50_max([e["committed_after_s"] for e in times], 1),
        _p50_max(t.commit_work_s, 1),
        run.max_pending,
        _p50_max(t.next_ready_s),
        _f(run.end_wait_s),
        _f(run.parking_s),
        _f(run.commit_wait_s),
    )


def _lateness_rows(run: RecordRun) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for what, rows_key in (
        ("all recorded ticks", "all"), (f"first {START_ROWS} ticks of each episode", "start"),
        ("while a commit was running or queued", "committing"), ("while no commit was pending", "idle"),
    ):  # fmt: skip
        lat = run.lateness(rows_key)
        share = f"{1000 * lat.late_rows / lat.rows:.1f}" if lat.rows else "-"
        rows.append(
            (
                run.label,
                what,
                lat.rows,
                f"{_f(lat.p50_ms, 3)} / {_f(lat.p99_ms, 3)} / {_f(lat.max_ms, 1)}",
                f"{lat.late_rows} ({share})",
            )
        )
    return rows


def _memory_row(label: str, w: Watched, run: RecordRun | None) -> tuple[object, ...]:
    if run is None:
        return (label, "-", "-", f"{w.peak_rss_mb:.0f}", "-", f"{w.hwm_mb:.0f} / {w.maxrss_mb:.0f}")
    ends = run.timeline.episode_ends_s
    first = run.rss_at_mb(ends[0]) if ends else math.nan
    last = run.rss_at_mb(ends[-1]) if ends else math.nan
    during = run.peak_rss_between_mb(min(run.timeline.episode_starts_s.values()), run.last_end_s) if ends else math.nan
    after = run.peak_rss_between_mb(run.last_end_s, w.wall_s) if ends else math.nan
    return (
        label,
        f"{_f(first, 0)} / {_f(last, 0)}",
        _f(during, 0),
        f"{w.peak_rss_mb:.0f}",
        _f(after, 0),
        f"{w.hwm_mb:.0f} / {w.maxrss_mb:.0f}",
    )


def _size_row(run: RecordRun) -> tuple[object, ...]:
    minutes = run.recorded_s / 60
    per_min = run.dataset_mb / minutes if minutes else math.nan
    return (run.label, _f(run.recorded_s, 0), _f(run.dataset_mb), _f(run.videos_mb), _f(per_min))


def _outcome_line(run: RecordRun) -> str:
    starts = run.timeline.episode_starts_s
    where = ""
    if run.process.returncode != 0 and starts:
        where = (
            f", the loop ended {run.last_end_s - min(starts.values()):.0f} s into the recording, "
            f"in episode {len(starts)} of {run.episodes_planned}"
        )
    return f"- {run.label}: {run.outcome}{where}; {len(run.episodes)} episodes committed."


def _vs_baseline(run: RecordRun, base: TeleopBaseline) -> str:
    assert run.loop is not None and base.loop is not None
    return (
        f"- {run.label} / {base.label}: lateness p99 {_ratio(run.loop['lateness_p99_ms'], base.loop['lateness_p99_ms'])}, "
        f"period p99 {_ratio(run.loop['period_p99_ms'], base.loop['period_p99_ms'])}, "
        f"process CPU {_ratio(run.process.cpu_s / run.process.wall_s, base.process.cpu_s / base.process.wall_s)}, "
        f"peak RSS {_ratio(run.process.peak_rss_mb, base.process.peak_rss_mb)}."
    )


def _rss_at_ends(run: RecordRun) -> str:
    return ", ".join(_f(run.rss_at_mb(end), 0) for end in run.timeline.episode_ends_s) or "-"


def record_section(r: RecordResult, number: int = 6) -> list[str]:
    runs, base, long = r.runs, r.baseline, r.long
    plans = "; ".join(
        f"**{run.label}**: {run.episodes_planned} episodes ({run.planned_phase_s:g} s with the resets)" for run in runs
    )
    out = [
        f"## {number}. Recording with three simulated cameras",
        "",
        (
            "`robot-runtime record --robot so100 --sim --dataset DIR --task bench --episodes N --episode-time "
            f"{long.episode_s:g} "
            f"--reset-time {long.reset_s:g} --video-codec CODEC --stats-json ...` run as a subprocess with stdin from /dev/null "
            "(unattended), with so100.yaml's rate and its three cameras, simulated at 640x480 @ 30 fps as in section 5. "
            f"{plans}. **{base.label}**: "
            f"`teleop --robot so100 --sim --duration {base.duration_s:g}`, the same process without a recorder. "
            "The runs went one after the other; compare them as ratios. Each episode is encoded live to an H.264 "
            "intermediate; after it ends it is saved to staging (rows and intermediates safe on disk) and then committed "
            "into the dataset (final encode in a process of its own on idle scheduling, appended to the camera's video file) by "
            "background threads "
            f"while the next episodes record ({_codec_versions()}; {_code_version()}). Times marked *stderr* are when the "
            "app's messages reached the benchmark. Memory and CPU include child processes (the final encode may run in one)."
        ),
        "",
        "Outcome:",
        "",
        *[_outcome_line(run) for run in runs],
        f"- {base.label}: exit {base.process.returncode}.",
        "",
    ]
    if len([run for run in runs if run.codec == "av1"]) > 1:
        out += [
            (
                f"The default AV1 run failed, so it ran again with `{' '.join(TOLERANT_BUS)}`: the simulated servos answer from "
                "a thread of the recording process itself, so when that process stalls their replies are late, which real "
                "servos' would not be; the stall itself still shows as lateness."
            ),
            "",
        ]
    out += [
        (
            "Loop timing over the whole run (resets included), from `--stats-json`; process CPU is user+system over wall "
            "time including start-up, parking and the wait for the last commits:"
        ),
        "",
    ]
    out += _table(
        (
            "run", "ticks", "achieved Hz", "period p50 / p99 / max ms", "lateness p50 / p99 ms", "late ticks", "missed deadlines",
            "process CPU",
        ),
        [_loop_row(run.label, run.loop, run.process) for run in runs] + [_loop_row(base.label, base.loop, base.process)],
    )
    out += [_vs_baseline(run, base) for run in runs if run.loop and base.loop]
    out += [
        "",
        (
            "Lateness of the recorded ticks, from each committed row's `timing.tick_s` (tick start on the episode's deadline "
            "grid); rows are split by whether a commit was pending at the time (*stderr*: from `episode k saved` to `episode k "
            "committed`). Late: more than a tenth of a period, per 1000 rows in brackets."
        ),
        "",
    ]
    out += _table(
        ("run", "ticks", "rows", "lateness p50 / p99 / max ms", "late rows (per 1000)"),
        [row for run in runs for row in _lateness_rows(run)],
    )
    out += [
        (
            "Frames. *Repeated* (per camera, from the dataset's `recording/<camera>/repeated_frames`) and *overflowed* "
            "(`recording/overflowed_frames`) count video frames the recorder lost: a live encoder queue was full, so the row "
            "repeats the previous image. *Dropped* and *reused* (per camera, from the camera statistics, whole run including "
            "resets) are about selection, not loss: a frame the camera delivered that no tick took, and a tick that took the "
            "same frame as the tick before. *Late ticks* is the per-episode count kept in `recording/late_ticks`."
        ),
        "",
    ]
    out += _table(
        ("run", "rows", "repeated", "overflowed", "dropped", "reused", "late ticks (episodes)"),
        [_frames_row(run) for run in runs],
    )
    out += [
        (
            "Episode end to safe and to committed (`episode_times` from `--stats-json`); commit work: from when the "
            "committer could start an episode (saved, and the one before committed) to its commit (*stderr*); most "
            "pending: the largest number of ended episodes waiting for their commit at once (*stderr*); episode end "
            f"to the next episode's first tick (*stderr*: `reset the scene` to `recording episode k+1`; by design the reset "
            f"time, {long.reset_s:g} s, give or take a loop period); and from the loop's end (the last episode's end, or the "
            "failure) to the process exit: parking the follower, then waiting for the remaining commits."
        ),
        "",
    ]
    out += _table(
        ("run", "episodes", "staged after s p50 / max", "committed after s p50 / max", "commit work s p50 / max",
         "most pending", "end to next episode s p50 / max", "loop end to exit s", "of which parking s", "of which commit wait s"),
        [_episode_row(run) for run in runs],
    )  # fmt: skip
    out += [
        (
            f"Memory (MB), sampled from `/proc/<pid>/status` every {POLL_S:g} s: VmRSS of the process plus its children "
            "alive at the time (a final-encode process, for instance), at the first and last episode end, the peak while "
            "recording, the peak overall and the peak after the loop ended; then the kernel's own peaks, VmHWM of the "
            "recording process alone (at the last sample) and ru_maxrss from wait4 (the largest single process, children "
            "included):"
        ),
        "",
    ]
    out += _table(
        ("run", "at first / last episode end", "peak while recording", "peak", "peak after the loop", "VmHWM / ru_maxrss"),
        [_memory_row(run.label, run.process, run) for run in runs] + [_memory_row(base.label, base.process, None)],
    )
    out += [f"- {run.label}, RSS at each episode end: {_rss_at_ends(run)}." for run in runs]
    out += ["", "Dataset on disk (all files under the dataset directory after the run; MB = 10^6 bytes):", ""]
    out += _table(
        ("run", "recorded s", "dataset MB", "of which videos MB", "MB per minute recorded"), [_size_row(run) for run in runs]
    )
    h264 = next((run for run in runs if run.codec == "h264"), None)
    if h264 is not None:
        out += [
            f"- MB per minute {h264.label} / {long.label}: {_ratio(_num(_size_row(h264)[-1]), _num(_size_row(long)[-1]))}.",
            "",
        ]
    return out


def _code_version() -> str:
    """The commit measured, and whether the recorder's code had changes not yet committed."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "apps", "recorders", "robot_runtime", "cameras", "drivers"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "code version unknown"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def _codec_versions() -> str:
    try:
        import av

        return f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}"
    except ImportError:
        return "PyAV not installed"


def _num(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan
