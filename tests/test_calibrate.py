"""Calibrating an SO-100 in the terminal UI, driven by Textual's pilot against simulated servos on a real
pty: the test is the operator's hands, moving the simulated joints through their travel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cli import WIDE, read_until, robot_cli, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.content import Content
from textual.widgets import Static

from apps.calibrate_app import CalibrationApp, Outcome
from calibration.normalization import Normalizer
from calibration.procedure import CalibrationProcedure, Step
from calibration.store import CalibrationError, load_calibration, save_calibration
from drivers.feetech.bus import FeetechBus
from drivers.feetech.calibration import FeetechCalibrationBus, calibration_path
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.control_table import RESOLUTION_TICKS
from drivers.feetech.models import MODELS, ArmModel, norm_modes
from drivers.feetech.sim_calibration import CalibrationBench, sim_operator, uncalibrated_arm
from drivers.feetech.sim_servo import Fault
from robot_runtime.config import load_robot_config

FOLLOWER = MODELS["so100_follower"]
NAMES = [m.name for m in FOLLOWER.motors]
MODES = norm_modes(NAMES, "degrees")
LEROBOT_KEYS = ["id", "drive_mode", "homing_offset", "range_min", "range_max"]
SIMULATED_BUS_TIMING = tuple(
    f"--set={arm}.0.{key}" for arm in ("followers", "leaders") for key in ("reply_timeout_ms=50", "retries=3")
)
"""The simulated servos answer from this test's process, which shares two loaded cores with teleop's and
may wait longer for the CPU than the 5 ms a real servo is given; the config allows for it, as for a slow adapter."""


@contextlib.contextmanager
def bench_and_procedure(tmp_path: Path, *, model: ArmModel = FOLLOWER) -> Iterator[tuple[CalibrationBench, CalibrationProcedure]]:
    with contextlib.ExitStack() as stack:
        bench = uncalibrated_arm(model.motors, stack)
        bus = FeetechBus(bench.port, model.motors, reply_timeout_ms=20)  # the simulator shares this process with the UI
        bus.open()
        stack.callback(bus.close)
        path = tmp_path / "calibration" / "arm.json"
        procedure = CalibrationProcedure(FeetechCalibrationBus(bus), path, full_turn=model.full_turn)
        yield bench, procedure


def shown(app: CalibrationApp, selector: str) -> str:
    """The text a user sees in a panel, without markup."""
    visual = app.query_one(selector, Static).visual
    assert isinstance(visual, Content)
    return visual.plain


async def until(pilot, condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    """Let the app refresh until `condition` holds (the UI samples the motors on its own timer)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await pilot.pause(0.05)


async def move(pilot, bench: CalibrationBench, procedure: CalibrationProcedure, motor: str, fraction: float) -> None:
    """Put a joint at a fraction of its travel and wait until the UI's own sampling has recorded it."""
    bench.move(motor, fraction)
    present = round(bench.servos[motor].present_ticks()) % RESOLUTION_TICKS
    span = procedure.ranges[motor]
    await until(pilot, lambda: span.low <= present <= span.high, f"{motor} at {fraction:g} of its travel recorded")


async def move_every_joint_through_its_travel(pilot, bench: CalibrationBench, procedure: CalibrationProcedure) -> None:
    for motor in procedure.ranges:
        for fraction in (0.0, 1.0, 0.5):
            await move(pilot, bench, procedure, motor, fraction)


def calibrate_in_the_tui(
    bench: CalibrationBench, procedure: CalibrationProcedure, *, confirm: bool = True
) -> tuple[Outcome | None, list[str]]:
    """Homing at mid-range, every joint to both end stops, review, write, confirm; returns the outcome and
    the guide texts shown along the way."""
    app = CalibrationApp(procedure, "calibrate so100 follower", MODES)
    guides: list[str] = []

    async def operate() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: procedure.step is Step.HOMING, "all motors answer")
            guides.append(shown(app, "#guide"))
            bench.hold_mid_range()
            await pilot.press("enter")
            assert procedure.step is Step.RANGES, app.error
            guides.append(shown(app, "#guide"))
            await move_every_joint_through_its_travel(pilot, bench, procedure)
            await pilot.press("enter")
            assert procedure.step is Step.REVIEW, procedure.problems
            await pilot.press("w")
            await pilot.press("y" if confirm else "n")
            await pilot.pause(0.1)
            await pilot.press("q")

    asyncio.run(operate())
    return app.return_value, guides


def test_a_full_calibration_in_the_tui_writes_lerobots_schema_and_the_motors_hold_it(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        outcome, guides = calibrate_in_the_tui(bench, procedure)
        held = procedure.bus.held()
    assert "middle of its travel" in guides[0] and "both ends" in guides[1]
    assert outcome is not None and outcome.written is not None
    raw = json.loads(procedure.path.read_text())
    assert list(raw) == NAMES and all(list(entry) == LEROBOT_KEYS for entry in raw.values())
    calibration = load_calibration(procedure.path)
    assert calibration == outcome.written
    assert {m: (c.homing_offset, c.range_min, c.range_max) for m, c in calibration.items()} == held
    assert [c.id for c in calibration.values()] == [1, 2, 3, 4, 5, 6]
    assert (calibration["wrist_roll"].range_min, calibration["wrist_roll"].range_max) == (0, 4095)
    for motor in NAMES:
        travel = bench.travels[motor]
        cal = calibration[motor]
        # Homing made mid-travel read half a turn, so every limited range sits inside the turn, not across its wrap.
        assert abs(cal.homing_offset - (round(travel.mid) % RESOLUTION_TICKS - 2047)) <= 1, motor
        if motor != "wrist_roll":
            assert abs((cal.range_max - cal.range_min) - (travel.high - travel.low)) <= 2, motor


def test_the_mid_range_pose_reads_zero_degrees_under_the_written_calibration(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        outcome, _ = calibrate_in_the_tui(bench, procedure)
        bench.hold_mid_range()
        positions = procedure.bus.read()
    assert outcome is not None and outcome.written is not None
    normalizer = Normalizer.from_calibration(outcome.written, MODES, RESOLUTION_TICKS)
    units = normalizer.to_units(np.array([positions[m].position for m in NAMES]))
    assert np.abs(units[:5]).max() < 1.0  # degrees
    assert 45 < units[5] < 55  # the gripper half open


def test_declining_the_confirmation_writes_nothing_and_the_motors_get_back_what_they_held(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        before = procedure.bus.held()
        outcome, _ = calibrate_in_the_tui(bench, procedure, confirm=False)
        after = procedure.bus.held()
    assert outcome is not None and outcome.written is None and outcome.restored
    assert not procedure.path.exists()
    assert after == before


def test_a_missing_motor_is_named_with_the_cable_to_check_and_nothing_proceeds_until_it_answers(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        bench.servos["elbow_flex"].inject(Fault.NO_REPLY)
        app = CalibrationApp(procedure, "calibrate", MODES)

        async def operate() -> str:
            async with app.run_test(size=(160, 40)) as pilot:
                await pilot.pause(0.2)
                notes = shown(app, "#notes")
                await pilot.press("enter")
                assert procedure.step is Step.CHECK  # homing is refused while a motor is missing
                bench.servos["elbow_flex"].clear()
                await pilot.press("r")
                assert procedure.step is Step.HOMING
                await pilot.press("q")
                return notes

        notes = asyncio.run(operate())
    assert "missing: motor 3 (elbow_flex)" in notes
    assert "motors after it still answer" in notes and "check motor 3 itself" in notes


def test_a_joint_never_moved_and_a_range_too_small_are_rejected_and_nothing_is_written(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        app = CalibrationApp(procedure, "calibrate", MODES)

        async def operate() -> str:
            async with app.run_test(size=(160, 40)) as pilot:
                await until(pilot, lambda: procedure.step is Step.HOMING, "all motors answer")
                bench.hold_mid_range()
                await pilot.press("enter")
                for motor in ("shoulder_pan", "shoulder_lift", "elbow_flex"):
                    for fraction in (0.0, 1.0):
                        await move(pilot, bench, procedure, motor, fraction)
                await move(pilot, bench, procedure, "gripper", 0.55)  # a nudge, not the full travel
                await pilot.press("enter")
                notes = shown(app, "#notes")
                await pilot.press("q")
                return notes

        notes = asyncio.run(operate())
        assert procedure.step is Step.RANGES
        assert [p.motor for p in procedure.problems] == ["wrist_flex", "gripper"]
    assert "wrist_flex: never moved" in notes
    assert "gripper: range" in notes and "move it all the way to both ends" in notes
    assert not procedure.path.exists()


def test_a_joint_moved_across_the_encoder_wrap_is_rejected(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        procedure.check()
        # Homing with the elbow near one end stop instead of mid-range: its travel then crosses the wrap.
        bench.hold_mid_range()
        bench.move("elbow_flex", 0.02)
        procedure.set_homing()
        for motor in procedure.ranges:
            for fraction in np.linspace(0, 1, 40):  # a hand passes through every pose in between
                bench.move(motor, fraction)
                procedure.read()
        problems = procedure.finish_ranges()
        procedure.abandon()
    assert [p.motor for p in problems] == ["elbow_flex"]
    assert "passed the encoder's wrap point" in problems[0].reason and "set homing again" in problems[0].reason


@settings(max_examples=20, deadline=None)
@given(shaft_ticks=st.integers(-5000, 9000))
def test_homing_makes_the_pose_read_half_a_turn_wherever_the_shafts_are(tmp_path_factory, shaft_ticks: int) -> None:
    with bench_and_procedure(tmp_path_factory.mktemp("homing")) as (bench, procedure):
        procedure.check()
        for servo in bench.servos.values():
            servo.set_physical_position(shaft_ticks)
        if shaft_ticks % RESOLUTION_TICKS == RESOLUTION_TICKS - 1:  # offset 2048: one past the register
            with pytest.raises(CalibrationError, match="beyond"):
                procedure.set_homing()
            return
        procedure.set_homing()
        assert {r.position for r in procedure.bus.read().values()} == {2047}


def test_a_homing_offset_beyond_the_register_is_refused_before_it_is_written(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        procedure.check()
        bench.hold_mid_range()
        bench.servos["wrist_flex"].set_physical_position(4095)  # reads 4095 at offset 0: offset 2048 does not fit
        with pytest.raises(Exception, match=r"homing offsets beyond \+-2047: wrist_flex reads 4095 \(offset 2048\)"):
            procedure.set_homing()
        assert procedure.abandon()
        assert procedure.bus.held()["wrist_flex"] == (0, 0, 4095)


def test_an_eeprom_write_that_does_not_take_is_an_error_naming_the_motor_and_register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        servo = bench.servos["shoulder_lift"]
        original = servo.write

        def worn_eeprom(address: int, data: bytes) -> None:  # Homing_Offset (31..32) never sticks
            if address != 31:
                original(address, data)

        monkeypatch.setattr(servo, "write", worn_eeprom)
        procedure.check()
        bench.hold_mid_range()
        did_not_take = r"EEPROM write on .* did not take: motor 2 \(shoulder_lift\) Homing_Offset holds 0 after writing"
        with pytest.raises(Exception, match=did_not_take):
            procedure.set_homing()


def test_the_existing_calibration_is_shown_against_what_the_motors_hold(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        calibrate_in_the_tui(bench, procedure)
        written = load_calibration(procedure.path)
        stale = {**written, "elbow_flex": type(written["elbow_flex"])(3, 0, 100, 900, 3000)}
        save_calibration(procedure.path, stale)
        again = CalibrationProcedure(procedure.bus, procedure.path, full_turn=FOLLOWER.full_turn)
        app = CalibrationApp(again, "calibrate", MODES)

        async def operate() -> str:
            async with app.run_test(size=(200, 40)) as pilot:
                await until(pilot, lambda: again.step is Step.HOMING, "all motors answer")
                notes = shown(app, "#notes")
                await pilot.press("q")
                return notes

        notes = asyncio.run(operate())
    held = written["elbow_flex"]
    assert "does not match what the motors hold" in notes
    assert f"elbow_flex.homing_offset: 100 -> {held.homing_offset}" in notes
    assert f"elbow_flex.range_min: 900 -> {held.range_min}" in notes


def test_the_simulated_hand_of_calibrate_sim_fills_every_range(tmp_path: Path) -> None:
    with bench_and_procedure(tmp_path) as (bench, procedure):
        app = CalibrationApp(procedure, "calibrate", MODES, on_step=sim_operator(bench))

        def filled() -> bool:
            return all(r.span > 0.95 * (bench.travels[m].high - bench.travels[m].low) for m, r in procedure.ranges.items())

        async def operate() -> None:
            async with app.run_test(size=(160, 40)) as pilot:
                await until(pilot, lambda: procedure.step is Step.HOMING, "all motors answer")
                await pilot.pause(0.2)
                await pilot.press("enter")
                await until(pilot, filled, "every range filled", timeout_s=30)
                await pilot.press("enter", "w", "y")
                await pilot.pause(0.1)
                await pilot.press("q")

        asyncio.run(operate())
    assert procedure.step is Step.WRITTEN and load_calibration(procedure.path) == procedure.proposed


def test_teleop_uses_the_calibrations_written_in_the_tui(tmp_path: Path) -> None:
    """Both arms calibrated in the TUI, then `robot-runtime teleop` on those buses: it accepts the files
    (they match what the motors hold) and the follower follows the leader in the new units."""
    stats = tmp_path / "stats.json"
    with contextlib.ExitStack() as stack:
        follower_bench, follower = stack.enter_context(bench_and_procedure(tmp_path / "f"))
        leader_bench, leader = stack.enter_context(bench_and_procedure(tmp_path / "l", model=MODELS["so100_leader"]))
        for bench, procedure in ((follower_bench, follower), (leader_bench, leader)):
            calibrate_in_the_tui(bench, procedure)
            bench.hold_mid_range()
            assert isinstance(procedure.bus, FeetechCalibrationBus)
            procedure.bus.bus.close()  # the port is teleop's now
        teleop = subprocess.Popen(
            robot_cli(
                "teleop", "--robot", "so100", "--no-cameras", "--duration", "6", "--stats-json", str(stats),
                "--set", f"followers.0.port={follower_bench.port}", "--set", "followers.0.id=arm",
                "--set", f"followers.0.calibration_dir={follower.path.parent}",
                "--set", f"leaders.0.port={leader_bench.port}", "--set", "leaders.0.id=arm",
                "--set", f"leaders.0.calibration_dir={leader.path.parent}",
                *SIMULATED_BUS_TIMING,
            ),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=WIDE,
        )  # fmt: skip
        leader_units = Normalizer.from_calibration(load_calibration(leader.path), MODES, RESOLUTION_TICKS)
        follower_units = Normalizer.from_calibration(load_calibration(follower.path), MODES, RESOLUTION_TICKS)
        started = read_until(teleop, ": Ctrl-C to stop", timeout_s=60)  # past the start check: the leader may move
        leader_bench.move("elbow_flex", 0.7)
        leader_bench.move("shoulder_pan", 0.35)
        target = leader_units.to_units(np.array([s.present_ticks() for s in leader_bench.servos.values()]))
        followed = False
        deadline = time.monotonic() + 3.5
        while not followed and time.monotonic() < deadline and teleop.poll() is None:
            pose = follower_units.to_units(np.array([s.present_ticks() for s in follower_bench.servos.values()]))
            followed = bool(np.abs(pose - target).max() < 2.0)
            time.sleep(0.05)
        stderr = started + teleop.communicate(timeout=60)[1]
    assert teleop.returncode == 0, stderr
    assert followed, f"the follower did not reach the leader's pose {target}"
    assert json.loads(stats.read_text())["loop"]["ticks"] > 100


def test_calibrate_needs_a_terminal(tmp_path: Path) -> None:
    result = run_cli("calibrate", "--robot", "so100", "--sim", "--calibration-dir", str(tmp_path))
    assert result.returncode == 2
    assert "calibrate is interactive: run it in a terminal" in result.stderr


def test_calibrations_go_where_lerobot_keeps_them_unless_a_folder_is_given(tmp_path: Path) -> None:
    config = load_robot_config("so100")
    follower, leader = config.followers[0].config, config.leaders[0].config
    assert isinstance(follower, FeetechArmConfig) and isinstance(leader, FeetechArmConfig)
    root = tmp_path / "lerobot-calibration"  # conftest points HF_LEROBOT_CALIBRATION here
    assert calibration_path(follower, None) == root / "robots" / "so_follower" / f"{follower.id}.json"
    assert calibration_path(leader, None) == root / "teleoperators" / "so_leader" / f"{leader.id}.json"
    assert calibration_path(follower, tmp_path / "mine") == tmp_path / "mine" / f"{follower.id}.json"
