"""The action log of a policy run: one JSON line per tick (what the policy asked for, what was or would
have been sent, and the timing), written by a thread so the tick only queues a row. JSON lines survive
a crash up to the last flushed line and can be followed with `tail -f` during a run."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FLUSH_ROWS = 50
"""Rows per flush: about a second at 50 Hz, so a crash loses at most that much."""


class ActionLogError(OSError):
    """The log could not be written; the message names the file."""


class ActionLog:
    def __init__(self, path: Path, header: Mapping[str, Any], queue_rows: int = 4096) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ActionLogError(f"cannot write the action log {path}: {exc.strerror or exc}") from exc
        self._file.write(json.dumps({"header": dict(header)}) + "\n")
        self._rows: queue.Queue[Mapping[str, Any] | None] = queue.Queue(maxsize=queue_rows)
        self.written = 0
        self.overflowed = 0
        """Rows dropped because the writer fell behind (a stalled disk); counted, never silent."""
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._write, name="action-log", daemon=True)
        self._thread.start()

    def add(self, row: Mapping[str, Any]) -> None:
        """Queue a row (numpy arrays allowed); never blocks the tick."""
        try:
            self._rows.put_nowait(row)
        except queue.Full:
            self.overflowed += 1

    def close(self) -> None:
        self._rows.put(None)
        self._thread.join()
        self._file.close()
        if self.error is not None:
            raise ActionLogError(
                f"the action log {self.path} stopped after {self.written} rows: {self.error.strerror or self.error}"
            )

    def _write(self) -> None:
        while (row := self._rows.get()) is not None:
            if self.error is not None:
                continue
            try:
                self._file.write(json.dumps(row, default=_plain) + "\n")
                self.written += 1
                if self.written % FLUSH_ROWS == 0 or self._rows.empty():
                    self._file.flush()
            except OSError as exc:
                self.error = exc


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return [round(float(v), 4) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot log {type(value).__name__}")


def read_action_log(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, rows) of a log; a torn last line (a crash mid-write) is left out."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])["header"]
    rows = []
    for line in lines[1:]:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return header, rows
