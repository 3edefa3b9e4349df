"""Crash-safe file updates. A dataset commit touches several files (videos, data, episodes, stats, info);
each new version is written in full beside its target under a hidden temporary name, flushed to disk,
and only then listed in a journal. Renaming them all into place follows; a crash during the renames
leaves the journal, and the next open finishes them. So a kill -9 at any moment leaves either the old
dataset or the new one, never a half-written file under a name a loader reads."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

TMP_SUFFIX = ".tmp"


def temporary_for(path: Path) -> Path:
    """Hidden name beside `path` that no loader globs (`.file-000.parquet.tmp` is not `*.parquet`)."""
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """A rename is durable only once its directory is flushed."""
    fsync_file(path)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, value: object) -> None:
    write_atomic(path, (json.dumps(value, indent=4, default=_json_default) + "\n").encode())


def _json_default(value: object) -> object:
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return tolist()


class Journal:
    """The list of renames that make up one commit, kept in `meta/commit.json` until they are all done."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "meta" / "commit.json"

    def commit(self, targets: Iterable[Path]) -> None:
        """Every target's temporary file must be complete and flushed before this is called."""
        targets = list(targets)
        for target in targets:
            if not temporary_for(target).exists():
                raise FileNotFoundError(f"commit of {target}: its temporary file {temporary_for(target)} is missing")
        write_json_atomic(self.path, [str(t.relative_to(self.root)) for t in targets])
        self.recover()

    def recover(self) -> list[Path]:
        """Finish an interrupted commit: rename whatever temporary files are left, then drop the journal.
        Returns the files renamed (empty when there was nothing to finish)."""
        if not self.path.exists():
            return []
        done = []
        for name in json.loads(self.path.read_text()):
            target = self.root / name
            tmp = temporary_for(target)
            if tmp.exists():
                os.replace(tmp, target)
                done.append(target)
        for directory in {t.parent for t in done}:
            fsync_dir(directory)
        self.path.unlink()
        fsync_dir(self.path.parent)
        return done


def remove_temporaries(root: Path) -> list[Path]:
    """Delete temporary files a crash left outside any journal (an update that never reached its commit)."""
    removed = [p for p in root.rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for path in removed:
        path.unlink()
    return removed
