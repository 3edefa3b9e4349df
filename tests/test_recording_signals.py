"""Signals never cost a commit. `robot-runtime record` runs on a terminal in a process group of its own,
and SIGINT (Ctrl-C at the terminal) or SIGTERM goes to the whole group at distinct moments: while an
episode records and a final encode runs, during the reset, during the final commit wait, twice in a row.
Afterwards `dataset check` passes, and any episode left staged is named, with `record --resume` to
commit it. Encoders sit in sessions of their own and never outlive the runtime."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from cli import WIDE, robot_cli, run_cli

from recorders.check import check_dataset
from recorders.video import VideoOutput, VideoSettings

CAMERAS = ("front", "wrist", "top")
PATIENT_CAMERAS = tuple(f"--set=cameras.{camera}.max_age_ms=1500" for camera in CAMERAS)
"""A loaded machine can hold a simulated camera's frame back for more than the default 250 ms."""
SAVED = re.compile(r"episode (\d+) saved")
LEFT_STAGED = re.compile(r"episode\(s\) ([\d, ]+) stay staged in .*: `record --resume` commits them")
WAITING = re.compile(r"committing (\d+) episode\(s\) \(final video encode\)")


class Recording:
    """`robot-runtime record` with a pseudo-terminal as stdin, leading a process group of its own as a
    shell's foreground job does; its stderr read as it comes."""

    def __init__(self, dataset: Path, *options: str) -> None:
        self.dataset = dataset
        master, slave = pty.openpty()
        command = robot_cli("record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "pick", *options)
        self.process = subprocess.Popen(
            command, stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=WIDE, start_new_session=True
        )
        os.close(slave)
        self._master = master
        self.stderr = ""
        self._matched_to = 0

    def wait_for(self, pattern: str | re.Pattern[str], timeout_s: float = 120) -> re.Match[str]:
        """The first match of `pattern` after the previous wait's match, reading stderr until it comes."""
        regex = re.compile(re.escape(pattern)) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout_s
        while (match := regex.search(self.stderr, self._matched_to)) is None:
            assert self._read(deadline), f"no {regex.pattern!r} within {timeout_s:g} s in:\n{self.stderr}"
        self._matched_to = match.end()
        return match

    def signal_group(self, signum: signal.Signals) -> None:
        """What a terminal does on Ctrl-C (SIGINT) or a service manager on stop (SIGTERM): the whole group."""
        os.killpg(self.process.pid, signum)

    def finish(self, timeout_s: float = 180) -> int:
        """The exit code, once the process has ended and all of its stderr is read."""
        deadline = time.monotonic() + timeout_s
        while self._read(deadline):
            pass
        return self.process.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        os.close(self._master)

    def _read(self, deadline: float) -> bool:
        """Read what stderr has; False at its end (the process closed it) or at the deadline."""
        assert self.process.stderr is not None
        while (remaining_s := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.process.stderr], [], [], min(remaining_s, 0.5))
            if ready:
                chunk = os.read(self.process.stderr.fileno(), 65536)
                self.stderr += chunk.decode(errors="replace")
                return bool(chunk)
        return False


@contextlib.contextmanager
def recording(dataset: Path, *options: str) -> Iterator[Recording]:
    run = Recording(dataset, *options)
    try:
        yield run
    finally:
        run.close()


def encoders_of(dataset: Path) -> list[int]:
    """Process ids of the final encodes working on `dataset`'s episodes, whoever their parent is."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().split(b"\0")
                if b"recorders.video" in command and any(str(dataset).encode() in part for part in command):
                    pids.append(int(entry.name))
    return pids


def wait_for_an_encoder(run: Recording, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while not (pids := encoders_of(run.dataset)):
        assert run.process.poll() is None, f"the recording ended before any final encode began:\n{run.stderr}"
        assert time.monotonic() < deadline, f"no final encode began within {timeout_s:g} s:\n{run.stderr}"
        time.sleep(0.02)
    return pids[0]


def staged_episodes(dataset: Path) -> list[int]:
    """Indices of the episodes waiting in .staging (each directory is episode-NNNNNN-<take id>)."""
    staging = dataset / ".staging"
    return sorted(int(d.name.split("-")[1]) for d in staging.iterdir()) if staging.exists() else []


def assert_checks_clean(dataset: Path, staged: list[int]) -> str:
    """`dataset check` passes; it mentions staged episodes, and only those left, with --resume."""
    result = run_cli("dataset", "check", str(dataset), timeout_s=180)
    assert result.returncode == 0, result.stdout + result.stderr
    output = " ".join((result.stdout + result.stderr).split())
    assert staged_episodes(dataset) == staged
    if staged:
        assert re.search(r"note: .*recorded but not committed, in \.staging: `record --resume` commits them", output), output
    else:
        assert "recorded but not committed" not in output
    return output


def assert_no_traceback_and_no_orphan(run: Recording) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert "exited with" not in run.stderr, run.stderr  # a final encode killed by the terminal's signal
    assert encoders_of(run.dataset) == [], "a final encode outlived the runtime"


def saved_episodes(run: Recording) -> list[int]:
    return sorted(int(n) for n in SAVED.findall(run.stderr))


def test_ctrl_c_while_an_episode_records_and_a_final_encode_runs_commits_every_saved_episode(tmp_path: Path) -> None:
    dataset = tmp_path / "demo"
    with recording(dataset, "--episodes", "4", "--episode-time", "1.5", "--reset-time", "0", *PATIENT_CAMERAS) as run:
        run.wait_for("episode 0 saved")
        encoder = wait_for_an_encoder(run)
        assert os.getsid(encoder) == encoder, "the final encode shares the terminal's session and gets its Ctrl-C"
        run.signal_group(signal.SIGINT)
        code = run.finish()
    assert code == 0, run.stderr
    assert "interrupted after" in run.stderr
    saved = saved_episodes(run)
    assert saved and saved == list(range(len(saved)))
    for index in saved:
        assert f"episode {index} committed to {dataset}" in run.stderr
    assert_no_traceback_and_no_orphan(run)
    assert_checks_clean(dataset, staged=[])
    assert check_dataset(dataset).episodes == len(saved)


@pytest.mark.parametrize(
    ("signum", "moment", "options"),
    [
        (signal.SIGTERM, "recording episode 1", ("--episodes", "3", "--episode-time", "1", "--reset-time", "0")),
        (signal.SIGINT, "reset the scene", ("--episodes", "2", "--episode-time", "1", "--reset-time", "60")),
    ],
    ids=["sigterm-during-an-episode", "sigint-during-the-reset"],
)
def test_a_signal_while_recording_stops_at_once_and_commits_what_was_saved(
    tmp_path: Path, signum: signal.Signals, moment: str, options: tuple[str, ...]
) -> None:
    dataset = tmp_path / "demo"
    with recording(dataset, "--no-cameras", *options) as run:
        run.wait_for(moment)
        run.signal_group(signum)
        code = run.finish()
    assert code == 0, run.stderr
    assert "interrupted (Ctrl-C)" in " ".join(run.stderr.split())  # SIGTERM takes Ctrl-C's way out
    assert saved_episodes(run) == [0]
    assert "episode 0 committed" in run.stderr
    assert_no_traceback_and_no_orphan(run)
    assert_checks_clean(dataset, staged=[])


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)],
    ids=["sigint", "sigterm", "double-sigint"],
)
def test_a_signal_during_the_final_commit_wait_stops_the_commits_and_names_what_stays_staged(
    tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    dataset = tmp_path / "demo"
    with recording(dataset, "--episodes", "2", "--episode-time", "2", "--reset-time", "0", *PATIENT_CAMERAS) as run:
        waiting = int(run.wait_for(WAITING).group(1))
        for signum in signals:
            run.signal_group(signum)
        run.wait_for("stopping the commits")
        code = run.finish()
    assert 1 <= waiting <= 2, "episode(s) counts episodes, not the tasks behind them"
    assert code == 1, run.stderr  # not everything recorded was committed
    assert_no_traceback_and_no_orphan(run)
    named = LEFT_STAGED.search(" ".join(run.stderr.split()))
    assert named is not None, run.stderr
    staged = [int(n) for n in named.group(1).split(", ")]
    committed = [int(n) for n in re.findall(r"episode (\d+) committed", run.stderr)]
    assert sorted(committed + staged) == [0, 1] and len(staged) >= 1
    assert_checks_clean(dataset, staged=staged)
    if signals == (signal.SIGINT,):  # what the runtime says to do works
        resumed = run_cli(
            *("record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "pick", "--resume"),
            *("--episode-time", "0.5", *PATIENT_CAMERAS),
            timeout_s=240,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert_checks_clean(dataset, staged=[])
        assert check_dataset(dataset).episodes == 3


def test_the_reason_a_recording_stopped_is_printed_before_the_arm_parks_and_the_commits_are_waited_for(
    tmp_path: Path,
) -> None:
    dataset = tmp_path / "demo"
    options = ("--episodes", "3", "--episode-time", "1.5", "--reset-time", "0", "--sim-fault", "camera:wrist:disconnect@2")
    with recording(dataset, *options, *PATIENT_CAMERAS) as run:
        run.wait_for("error: camera 'wrist'")
        run.wait_for("parking the follower")
        code = run.finish()
    assert code == 1
    assert_no_traceback_and_no_orphan(run)
    assert_checks_clean(dataset, staged=[])


def test_a_rate_the_av1_encoder_cannot_take_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    dataset = tmp_path / "demo"
    result = run_cli("record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "pick", "--fps", "241")
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "--fps 241: the av1 encoder (libsvtav1) takes at most 240 fps, not 241" in message
    assert "--video-codec h264" in message
    assert "recording episode" not in message and not dataset.exists()
    with pytest.raises(ValueError, match="at most 240 fps"):
        VideoSettings(codec="av1", fps=241, width=64, height=48)
    assert VideoSettings(codec="av1", fps=240, width=64, height=48).fps == 240
    assert VideoSettings(codec="h264", fps=1000, width=64, height=48).fps == 1000


ENCODE_AND_WAIT = """
import sys
from pathlib import Path
from recorders.video import VideoSettings, encode_final
encode_final(Path(sys.argv[1]), Path(sys.argv[2]), VideoSettings(codec="av1", fps=30, width=640, height=480))
"""


def test_a_final_encode_dies_with_a_runtime_killed_outright(tmp_path: Path) -> None:
    settings = VideoSettings(codec="av1", fps=30, width=640, height=480)
    intermediate = tmp_path / "demo" / "episode.mp4"
    intermediate.parent.mkdir()
    live = VideoOutput(intermediate, settings, "libx264", settings.live_options)
    rows, columns = np.mgrid[0:480, 0:640]
    for index in range(900):  # 30 s of a moving pattern: its AV1 encode takes far longer than the bound below
        image = ((rows + 3 * index) ^ columns).astype(np.uint8)
        live.write(av.VideoFrame.from_ndarray(np.stack([image, image // 2, 255 - image], axis=-1), format="rgb24"))
    live.close()
    runtime = subprocess.Popen(
        [sys.executable, "-c", ENCODE_AND_WAIT, str(intermediate), str(tmp_path / "demo" / "final.mp4")],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (encoders := encoders_of(tmp_path / "demo")):
            assert runtime.poll() is None and time.monotonic() < deadline, "the final encode never began"
            time.sleep(0.02)
        runtime.kill()
        runtime.wait(timeout=30)
        deadline = time.monotonic() + 5  # far less than the encode would take
        while encoders_of(tmp_path / "demo"):
            assert time.monotonic() < deadline, f"final encode {encoders} outlived the runtime killed with SIGKILL"
            time.sleep(0.05)
    finally:
        runtime.kill()
        runtime.wait(timeout=30)
