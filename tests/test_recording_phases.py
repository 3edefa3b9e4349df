"""The phases of a recording run, driven tick by tick with scripted keys: episodes and resets follow the
plan, → ends an episode or a reset early, ← throws the take away and records it again, Esc saves the
episode and stops, and a key on an episode's very first tick is harmless."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from cameras.base import Frame
from recorders.dataset import DatasetWriter
from recorders.layout import DatasetSpec
from recorders.pipeline import Pipeline
from recorders.reader import DatasetReader
from recorders.video import VideoSettings
from robot_runtime.keys import NEXT, RERECORD, STOP
from robot_runtime.loop import Tick
from robot_runtime.recording import Phase, RecordingRun, RecordPlan
from robot_runtime.robot import JointState
from robot_runtime.teleop import Teleop, TeleopStep

FPS = 30
VIDEO = VideoSettings(codec="h264", fps=FPS, width=96, height=64)
SPEC = DatasetSpec("test_arm", FPS, ("a.pos",), {"cam": (64, 96)}, {"cam": VIDEO.info})


class ScriptedTeleop:
    """Stands in for the arm: the follower's position is the tick index, so rows say which tick made them."""

    def tick(self, tick: Tick) -> TeleopStep:
        image = np.zeros((64, 96, 3), np.uint8)
        image.flags.writeable = False
        frame = Frame(image, tick.start_s, tick.start_s, tick.index, tick.index, "sim")
        state = JointState(tick.start_s, np.array([float(tick.index)]))
        return TeleopStep(tick, state, np.array([0.0]), state, {"cam": frame})


def scripted() -> Teleop:
    """A ScriptedTeleop where a recording run expects teleoperation: it uses only tick() (no e-stop key here)."""
    return cast(Teleop, ScriptedTeleop())


def run(
    tmp_path: Path, plan: RecordPlan, keys_at: dict[int, list[str]], max_ticks: int = 1000
) -> tuple[RecordingRun, DatasetReader, list[str]]:
    writer = DatasetWriter(tmp_path / "ds", SPEC, {"cam": VIDEO}, resume=False)
    pipeline = Pipeline(writer, on_event=lambda _: None)
    said: list[str] = []
    ticks = iter(range(max_ticks))
    current = {"index": 0}

    def keys() -> list[str]:
        return keys_at.get(current["index"], [])

    recording = RecordingRun(scripted(), writer, pipeline, plan, {"cam": VIDEO}, keys, said.append, first_index=0)
    for k in ticks:
        current["index"] = k
        recording.tick(Tick(index=k, deadline_s=k / FPS, start_s=k / FPS, elapsed_s=k / FPS))
        if recording.done:
            break
    assert pipeline.close(), pipeline.errors
    return recording, DatasetReader(tmp_path / "ds"), said


def first_ticks(reader: DatasetReader) -> list[tuple[int, int]]:
    """(first tick, frames) of every episode, from the recorded follower positions."""
    out = []
    for e in range(len(reader.episodes)):
        states = reader.episode(e).states[:, 0]
        assert np.array_equal(states, states[0] + np.arange(len(states))), "rows must come from consecutive ticks"
        out.append((int(states[0]), len(states)))
    return out


def test_episodes_and_resets_follow_the_plan(tmp_path: Path) -> None:
    recording, reader, said = run(tmp_path, RecordPlan(episodes=2, episode_s=1.0, reset_s=0.5, task="t"), {})
    assert recording.phase is Phase.DONE and recording.recorded == 2
    assert first_ticks(reader) == [(0, 30), (45, 30)]  # 30 ticks recorded, 15 of reset, 30 recorded: no tick lost
    assert any("reset the scene" in line for line in said)


def test_next_ends_an_episode_or_a_reset_early(tmp_path: Path) -> None:
    _, reader, _ = run(tmp_path, RecordPlan(episodes=2, episode_s=1.0, reset_s=10.0, task="t"), {10: [NEXT], 12: [NEXT]})
    assert first_ticks(reader) == [(0, 10), (12, 30)]


def test_rerecord_throws_the_take_away_and_records_the_episode_again(tmp_path: Path) -> None:
    recording, reader, said = run(tmp_path, RecordPlan(episodes=1, episode_s=1.0, reset_s=0.0, task="t"), {20: [RERECORD]})
    assert recording.rerecorded == 1
    assert first_ticks(reader) == [(20, 30)]
    assert "re-recording episode 0: the take is discarded" in said
    assert not any((tmp_path / "ds" / ".staging").iterdir())


def test_stop_saves_the_current_episode_and_ends_the_run(tmp_path: Path) -> None:
    recording, reader, _ = run(tmp_path, RecordPlan(episodes=5, episode_s=1.0, reset_s=0.0, task="t"), {40: [STOP]})
    assert recording.done and recording.recorded == 2
    assert first_ticks(reader) == [(0, 30), (30, 10)]


def test_a_key_on_an_episodes_first_tick_starts_it_again(tmp_path: Path) -> None:
    _, reader, _ = run(tmp_path, RecordPlan(episodes=1, episode_s=0.5, reset_s=0.0, task="t"), {0: [NEXT]})
    assert first_ticks(reader) == [(0, 15)]


def test_interrupting_discards_the_episode_in_progress_and_keeps_saved_ones(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", SPEC, {"cam": VIDEO}, resume=False)
    pipeline = Pipeline(writer, on_event=lambda _: None)
    recording = RecordingRun(
        scripted(), writer, pipeline, RecordPlan(3, 0.5, 0.0, "t"), {"cam": VIDEO}, list, lambda _: None, 0
    )
    for k in range(25):
        recording.tick(Tick(index=k, deadline_s=k / FPS, start_s=k / FPS, elapsed_s=k / FPS))
    recording.interrupt()
    assert pipeline.close()
    assert [e["length"] for e in DatasetReader(tmp_path / "ds").episodes] == [15]
    assert not any((tmp_path / "ds" / ".staging").iterdir())
