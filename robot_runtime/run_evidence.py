"""Evidence a control run leaves on disk, for a process that dies where no `finally` runs (a fatal signal,
SIGKILL, power loss): its log, where `faulthandler` writes the trace of a fatal signal, and a marker that it
drives these arms, which only the safe stop clears. The next run that opens one of those arms, or a dataset
the dead run wrote, is told that the last run ended without a safe stop, and where its log is."""

from __future__ import annotations

import datetime
import faulthandler
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Self

from recorders.atomic import write_json_atomic
from recorders.manifest import new_run_id
from robot_runtime.config import ArmSpec

log = logging.getLogger(__name__)

STATE_DIR_ENV = "ROBOT_RUNTIME_STATE_DIR"
KEPT_LOGS = 200
"""Run logs kept in the state directory; older ones are deleted as new runs start."""
FATAL_TRACE = "Fatal Python error"
"""How faulthandler's trace of a fatal signal begins."""


def state_dir() -> Path:
    """Where runs keep their logs and markers: $ROBOT_RUNTIME_STATE_DIR, else $XDG_STATE_HOME/robot-runtime,
    else ~/.local/state/robot-runtime."""
    if explicit := os.environ.get(STATE_DIR_ENV):
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "robot-runtime"


class RunLog:
    """A control run's log file (`<state>/logs/<run id>.log`): what ran, warnings, an unexpected error's
    traceback, how it ended, and, written by `faulthandler` while the run is open, the trace of every
    thread if the process dies from a fatal signal (SIGSEGV, SIGABRT, SIGBUS, SIGILL, SIGFPE)."""

    def __init__(self, title: str) -> None:
        self.run_id = new_run_id()
        self.title = title
        directory = state_dir() / "logs"
        directory.mkdir(parents=True, exist_ok=True)
        for old in sorted(directory.glob("*.log"))[:-KEPT_LOGS]:
            old.unlink(missing_ok=True)
        self.path = directory / f"{self.run_id}.log"
        self._file: IO[str] = self.path.open("a", buffering=1, encoding="utf-8")
        self._handler = logging.StreamHandler(self._file)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def __enter__(self) -> Self:
        self.note(f"{self.title}: pid {os.getpid()}, command line {' '.join(sys.argv)}")
        self._traced_before = faulthandler.is_enabled()
        faulthandler.enable(self._file, all_threads=True)
        logging.getLogger().addHandler(self._handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger().removeHandler(self._handler)
        if self._traced_before and sys.__stderr__ is not None:  # back to the terminal, where fatal signals went before
            faulthandler.enable(sys.__stderr__, all_threads=True)
        else:
            faulthandler.disable()
        self._file.close()

    def note(self, text: str) -> None:
        self._file.write(f"{_now()} {text}\n")

    def exception(self, text: str, exc: BaseException) -> None:
        """An unexpected error with its traceback, which the terminal shows only with -v."""
        record = logging.LogRecord("run", logging.ERROR, __file__, 0, text, None, (type(exc), exc, exc.__traceback__))
        self._handler.handle(record)


@dataclass
class RunMarker:
    """`<state>/running/<run id>.json`: this process drives these arms and writes these datasets. Written
    before the first arm connects; the safe stop takes the arms off it and the end of the run deletes it.
    A marker whose process is gone is a run that ended without a safe stop."""

    path: Path
    record: dict[str, Any]
    active: ClassVar[RunMarker | None] = None
    """This process's marker while a run is open: a dataset opened during the run is added to it."""

    @classmethod
    def create(cls, run_log: RunLog, arms: dict[str, str]) -> RunMarker:
        """`arms`: arm key (see `arm_key`) -> how messages name the arm."""
        record: dict[str, Any] = {
            "pid": os.getpid(),
            "process": process_token(os.getpid()),
            "title": run_log.title,
            "started": _now(),
            "log": str(run_log.path),
            "arms": arms,
            "datasets": [],
        }
        marker = cls(_markers_dir() / f"{run_log.run_id}.json", record)
        marker._save()
        cls.active = marker
        return marker

    @classmethod
    def add_dataset(cls, path: Path) -> None:
        """The running process writes this dataset (a no-op outside a control run)."""
        marker = cls.active
        if marker is not None and str(path.resolve()) not in marker.record["datasets"]:
            marker.record["datasets"].append(str(path.resolve()))
            marker._save()

    def release_arms(self) -> None:
        """The arms stopped safely: a later crash of this process no longer leaves them under torque."""
        self.record["arms"] = {}
        self._save()

    def close(self, *, arms_safe: bool) -> None:
        """The run ended in its own time: the marker goes, unless an arm could not be stopped safely."""
        RunMarker.active = None
        if arms_safe:
            self.path.unlink(missing_ok=True)
        else:
            self.record["datasets"] = []
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.record)


def arm_key(spec: ArmSpec, *, simulated: bool) -> str:
    """An arm as the markers know it: its family and where it is in the config (a port, an address), so that
    another setup naming the same port is the same arm; a simulated arm is another arm than the real one."""
    return f"{spec.family.name} {spec.family.describe(spec.config)}" + (" (simulated)" if simulated else "")


def arm_name(spec: ArmSpec, *, simulated: bool) -> str:
    return f"the {spec.label} at {spec.family.describe(spec.config)}" + (" (simulated)" if simulated else "")


def unsafe_ends(*, arms: Iterable[str] = (), dataset: Path | None = None) -> list[str]:
    """Messages about runs that ended without a safe stop and drove one of these arms (keys) or wrote this
    dataset; each is told once: what it reports is taken off its marker."""
    arms, messages = set(arms), []
    wrote = str(dataset.resolve()) if dataset is not None else None
    for path in sorted(_markers_dir().glob("*.json")) if _markers_dir().is_dir() else ():
        try:
            record = json.loads(path.read_text())
            pid, token, title, log_path = record["pid"], record["process"], record["title"], record["log"]
            held, datasets = dict(record["arms"]), list(record["datasets"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            messages.append(f"{path}: a run marker that cannot be read ({exc}); delete it")
            continue
        if _running(pid, token):
            continue
        run = f"({title!r}, pid {pid}, started {record.get('started')})"
        trace = _trace_note(Path(log_path))
        left = [held.pop(key) for key in sorted(arms & set(held))]
        if left:
            messages.append(
                f"the last run on {' and '.join(left)} {run} ended without a safe stop: check the arm before relying on "
                f"it (it may be off its park pose, and under torque); {trace}"
            )
        if wrote in datasets:
            datasets.remove(wrote)
            messages.append(
                f"the last run writing {wrote} {run} ended without finishing: `dataset check` lists episodes left "
                f"staged, `record --resume` commits them; {trace}"
            )
        if not held and not datasets:
            path.unlink(missing_ok=True)
        elif (held, datasets) != (record["arms"], record["datasets"]):
            write_json_atomic(path, {**record, "arms": held, "datasets": datasets})
    return messages


def _trace_note(log_path: Path) -> str:
    try:
        crashed = FATAL_TRACE in log_path.read_text(errors="replace")
    except OSError:
        return f"its log {log_path} is gone"
    if crashed:
        return f"the trace of its fatal signal is in {log_path}"
    return f"it left no trace (killed by SIGKILL, or the power went); its log: {log_path}"


def _markers_dir() -> Path:
    return state_dir() / "running"


def process_token(pid: int) -> str | None:
    """The process's start time since boot (Linux), so a reused pid is not taken for the run."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _running(pid: int, token: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return token is None or process_token(pid) == token


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
