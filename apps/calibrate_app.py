"""The calibration TUI: live motor table, range bars that fill as joints move, guidance for each step,
the existing calibration diffed against the motors, and a write only after confirmation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from rich.markup import escape
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Static

from calibration.normalization import Normalizer, NormMode
from calibration.procedure import CalibrationProcedure, MotorReading, Step, describe, diff
from calibration.store import Calibration, CalibrationError
from robot_runtime.robot import ArmError

BAR_CELLS = 24
REFRESH_HZ = 20.0
RECHECK_S = 1.0
"""While a motor is missing, the motors are pinged again this often: fixing a cable is seen without a key."""
COLUMNS = {
    "id": 3, "motor": 14, "raw": 5, "position": 13, "range": BAR_CELLS, "min": 5, "max": 5,
    "°C": 4, "V": 5, "load %": 6, "flags": 28,
}  # fmt: skip
"""Column label to width in cells."""


@dataclass(frozen=True)
class Outcome:
    """How the app ended: the calibration written (None if quit before), and whether the motors got back
    what they held because nothing was written."""

    written: Calibration | None
    restored: bool
    problem: str | None = None
    """Why the motors could not get back what they held."""


class Confirm(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(self.question + "\n\n[b]y[/] = yes, [b]n[/] = no", id="question")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class CalibrationApp(App[Outcome]):
    CSS = """
    #guide { padding: 0 1; margin-bottom: 1; }
    #notes { padding: 0 1; margin-top: 1; }
    Confirm { align: center middle; }
    #question { width: 70; padding: 1 2; border: thick $warning; background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "next", "next step"),
        Binding("r", "redo", "check again / record ranges again"),
        Binding("w", "write", "write"),
        Binding("q,escape", "quit_calibration", "quit"),
    ]

    def __init__(
        self,
        procedure: CalibrationProcedure,
        title: str,
        modes: tuple[NormMode, ...],
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        super().__init__()
        self.procedure = procedure
        self.title = title
        self.modes = modes
        self.on_step = on_step
        self.readings: dict[str, MotorReading] = {}
        self.error: str | None = None
        self._shown_step: Step | None = None
        self._checked_s = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static(id="guide")
            table: DataTable = DataTable(id="motors", cursor_type="none", zebra_stripes=True)
            table.can_focus = False
            yield table
            yield Static(id="notes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column, width in COLUMNS.items():
            table.add_column(column, key=column, width=width)
        for motor, motor_id in self.procedure.bus.motor_ids.items():
            table.add_row(str(motor_id), motor, *[""] * (len(COLUMNS) - 2), key=motor)
        self._check()
        self._render_text()
        self.set_interval(1 / REFRESH_HZ, self.refresh_readings)

    # -- live view ---------------------------------------------------------------------------

    def refresh_readings(self) -> None:
        if self.procedure.step is Step.CHECK:
            if time.monotonic() - self._checked_s >= RECHECK_S:
                self._check()
            self._render_text()
            return
        try:
            self.readings = self.procedure.read()
            self.error = None
        except (ArmError, CalibrationError) as exc:
            self.error = str(exc)
        self._render_table()
        self._render_text()

    def _render_table(self) -> None:
        table = self.query_one(DataTable)
        units = self._units()
        for motor, reading in self.readings.items():
            cells = {
                "raw": "—" if reading.position is None else str(reading.position),
                "position": units.get(motor, "—"),
                "range": self._bar(motor, reading.position),
                "min": self._extreme(motor, low=True),
                "max": self._extreme(motor, low=False),
                "°C": _number(reading.temperature_c, "{:.0f}"),
                "V": _number(reading.voltage_v, "{:.1f}"),
                "load %": _number(reading.load_percent, "{:.0f}"),
                "flags": Text(", ".join(reading.flags) or "ok", style="bold red" if reading.flags else "green"),
            }
            for column, value in cells.items():
                table.update_cell(motor, column, value)

    def _units(self) -> dict[str, str]:
        """Positions in joint units under the calibration as it stands (none before homing on an uncalibrated arm)."""
        calibration = self.procedure.live_calibration()
        known = {m: r.position for m, r in self.readings.items() if r.position is not None}
        if calibration is None or not known:
            return {}
        normalizer = Normalizer.from_calibration(calibration, self.modes, self.procedure.bus.encoder.resolution_ticks)
        raw = np.array([known.get(m, 0) for m in calibration], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = normalizer.to_units(raw)
        shown = zip(calibration, values, self.modes, strict=True)
        return {m: f"{v:+.1f} {mode.unit}" for m, v, mode in shown if m in known and np.isfinite(v)}

    def _bar(self, motor: str, position: int | None) -> Text:
        """The encoder turn as a bar: the recorded range filled, the present position marked."""
        if motor in self.procedure.full_turn and self.procedure.offsets:
            return Text("free turn: whole range", style="dim")
        resolution = self.procedure.bus.encoder.resolution_ticks
        cells = ["░"] * BAR_CELLS
        span = self.procedure.ranges.get(motor)
        if span is not None:
            for i in range(span.low * BAR_CELLS // resolution, span.high * BAR_CELLS // resolution + 1):
                cells[i] = "█"
        bar = Text("".join(cells), style="green")
        if position is not None:
            bar.stylize("bold yellow reverse", position * BAR_CELLS // resolution, position * BAR_CELLS // resolution + 1)
        return bar

    def _extreme(self, motor: str, *, low: bool) -> str:
        span = self.procedure.ranges.get(motor)
        if span is not None:
            return str(span.low if low else span.high)
        if motor in self.procedure.full_turn and self.procedure.offsets:
            return "0" if low else str(self.procedure.bus.encoder.resolution_ticks - 1)
        return "—"

    def _render_text(self) -> None:
        step = self.procedure.step
        if step is not self._shown_step:
            self._shown_step = step
            self.refresh_bindings()
            if self.on_step is not None:
                self.on_step(step)
        self.query_one("#guide", Static).update(self._guide())
        self.query_one("#notes", Static).update(self._notes())

    def _guide(self) -> str:
        p = self.procedure
        free = ", ".join(sorted(p.full_turn)) or "none"
        return {
            Step.CHECK: f"[b]Checking the motors on {escape(p.bus.port)}[/]: every motor must answer before anything is written. "
            "[b]Support the arm[/]: torque goes off as soon as they do.\n[b]r[/] checks again.",
            Step.HOMING: "[b]1/3 Homing.[/] Torque is off. Move every joint by hand to the [b]middle of its travel[/] "
            "(gripper half open), then press [b]Enter[/]. Motors keep their old calibration until then.",
            Step.RANGES: "[b]2/3 Ranges.[/] Move each joint slowly to [b]both ends[/] of its travel, one at a time; "
            "the bars fill as you go. "
            f"Free-turning joints ({free}) need no range. Press [b]Enter[/] when every bar is full, [b]r[/] to start over.",
            Step.REVIEW: f"[b]3/3 Review.[/] [b]w[/] writes this calibration to the motors and {escape(str(p.path))}; "
            "[b]r[/] records the ranges again; [b]q[/] quits without writing (the motors get back what they held).",
            Step.WRITTEN: f"[b green]Written[/] to the motors and {escape(str(p.path))}. Press [b]q[/] to quit.",
        }[p.step]

    def _notes(self) -> str:
        p = self.procedure
        lines = []
        if self.error:
            lines.append(f"[b red]{escape(self.error)}[/]")
        if p.missing:
            lines.append(f"[b red]missing: {', '.join(f'motor {m.id} ({m.name})' for m in p.missing)}[/]")
            lines.append(escape(p.missing[0].hint))
        lines += [f"[red]{escape(problem.motor)}: {escape(problem.reason)}[/]" for problem in p.problems]
        if p.step is Step.REVIEW and p.proposed is not None:
            before = p.existing.file if p.existing is not None else None
            changes = describe(diff(before, p.proposed)) if before else []
            where = escape(str(p.path))
            lines.append(f"changes against {where}: " + (", ".join(changes) or "none") if before else f"new file {where}")
        elif p.existing is not None and p.step is not Step.WRITTEN:
            lines.append(self._existing_note())
        return "\n".join(lines)

    def _existing_note(self) -> str:
        existing = self.procedure.existing
        assert existing is not None
        path = escape(str(existing.path))
        if existing.file_error:
            return f"[yellow]existing calibration unusable: {escape(existing.file_error)}[/]"
        if existing.file is None:
            return f"no calibration at {path} yet"
        if not existing.differences:
            return f"[green]{path} matches what the motors hold[/]"
        changes = ", ".join(describe(existing.differences))
        return f"[yellow]{path} does not match what the motors hold (file -> motors): {escape(changes)}[/]"

    # -- keys --------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys of this app do nothing while the confirmation is open; w and r only where they mean something."""
        if action not in ("next", "redo", "write", "quit_calibration"):
            return True
        if len(self.screen_stack) > 1:
            return False
        if action == "write":
            return self.procedure.step is Step.REVIEW
        if action == "redo":
            return self.procedure.step in (Step.CHECK, Step.RANGES, Step.REVIEW)
        return True

    def action_next(self) -> None:
        step = self.procedure.step
        if step is Step.CHECK:
            self._check()
        elif step is Step.HOMING:
            self._attempt(self.procedure.set_homing)
        elif step is Step.RANGES:
            self._attempt(self.procedure.finish_ranges)
        elif step is Step.REVIEW:
            self.action_write()
        self.refresh_readings()

    def action_redo(self) -> None:
        if self.procedure.step is Step.CHECK:
            self._check()
        elif self.procedure.step in (Step.RANGES, Step.REVIEW):
            self._attempt(self.procedure.restart_ranges)
        self.refresh_readings()

    def action_write(self) -> None:
        if self.procedure.step is not Step.REVIEW:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._attempt(self.procedure.write)
                self.refresh_readings()

        self.push_screen(Confirm(f"Write the calibration to the motors' EEPROM and to\n{self.procedure.path}?"), answered)

    def action_quit_calibration(self) -> None:
        written = self.procedure.proposed if self.procedure.step is Step.WRITTEN else None
        restored, problem = False, None
        if written is None:
            try:
                restored = self.procedure.abandon()
            except (ArmError, CalibrationError) as exc:
                problem = str(exc)
        self.exit(Outcome(written, restored, problem))

    def _check(self) -> None:
        self._checked_s = time.monotonic()
        self._attempt(self.procedure.check)

    def _attempt(self, action: Callable[[], object]) -> None:
        try:
            action()
            self.error = None
        except (ArmError, CalibrationError) as exc:
            self.error = str(exc)


def _number(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)
