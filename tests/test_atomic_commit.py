"""Crash-safe commits: a new file version appears whole or not at all, and an interrupted commit is
finished by the next open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recorders.atomic import Journal, remove_temporaries, temporary_for, write_atomic


def test_write_atomic_replaces_a_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "meta" / "info.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["info.json"]


def test_temporaries_are_hidden_from_loader_globs(tmp_path: Path) -> None:
    target = tmp_path / "data" / "chunk-000" / "file-000.parquet"
    assert not temporary_for(target).name.endswith(".parquet")
    assert temporary_for(target).name.startswith(".")


def test_a_commit_renames_every_file_into_place(tmp_path: Path) -> None:
    targets = [tmp_path / "data" / "a.parquet", tmp_path / "meta" / "info.json"]
    for i, target in enumerate(targets):
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary_for(target).write_text(f"new {i}")
    Journal(tmp_path).commit(targets)
    assert [t.read_text() for t in targets] == ["new 0", "new 1"]
    assert not Journal(tmp_path).path.exists()


def test_a_commit_interrupted_mid_rename_is_finished_by_recovery(tmp_path: Path) -> None:
    targets = [tmp_path / "videos" / "v.mp4", tmp_path / "data" / "d.parquet", tmp_path / "meta" / "info.json"]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("old")
        temporary_for(target).write_text("new")
    journal = Journal(tmp_path)
    journal.path.write_text(json.dumps([str(t.relative_to(tmp_path)) for t in targets]))
    os.replace(temporary_for(targets[0]), targets[0])  # the crash came after the first rename
    assert [p.name for p in journal.recover()] == ["d.parquet", "info.json"]
    assert [t.read_text() for t in targets] == ["new", "new", "new"]
    assert journal.recover() == []


def test_a_commit_refuses_to_start_when_a_file_was_not_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        Journal(tmp_path).commit([tmp_path / "meta" / "info.json"])
    assert not Journal(tmp_path).path.exists()


def test_temporaries_outside_a_commit_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "data" / "chunk-000" / "file-000.parquet"
    target.parent.mkdir(parents=True)
    target.write_text("kept")
    temporary_for(target).write_text("half written when the process died")
    assert remove_temporaries(tmp_path) == [temporary_for(target)]
    assert target.read_text() == "kept"
