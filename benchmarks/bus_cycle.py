"""Sections 2 and 3: one control cycle on a 6-motor bus, and what a missing motor costs, ours vs the stock SDK.

Both clients talk to the same pty simulator, so the difference is client code: timeouts, waiting, decoding.
"""

from __future__ import annotations

import contextlib
import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import scservo_sdk as scs
from scservo_sdk import port_handler as stock_port_handler

from benchmarks.timing import CallTiming, time_calls
from drivers.feetech.bus import FeetechBus, MotorNotRespondingError
from drivers.feetech.control_table import REGISTERS
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import Fault, SimServo

BAUD_BPS = 1_000_000
SERVO_IDS = tuple(m.id for m in SO_MOTORS)
MISSING_SERVO_ID = 4
FIRST, LAST = REGISTERS["Present_Position"], REGISTERS["Present_Load"]
SPAN_BYTES = LAST.address + LAST.size - FIRST.address
GOAL = REGISTERS["Goal_Position"]
GOAL_TICKS = 2048
OUR_DEFAULTS = {
    name: p.default for name, p in inspect.signature(FeetechBus).parameters.items() if name in ("reply_timeout_ms", "retries")
}
STOCK_TIMEOUT_MS = stock_port_handler.LATENCY_TIMER * 2.0 + 2.0
"""The SDK's reply window before transfer time: 2 x its 16 ms latency timer + 2 ms."""


@dataclass(frozen=True)
class CycleRow:
    setup: str
    client: str
    timing: CallTiming


@dataclass(frozen=True)
class MissingMotorResult:
    ours: CallTiming
    stock: CallTiming
    our_error: str
    stock_result: str


# -- simulators ------------------------------------------------------------------------------


@contextlib.contextmanager
def in_process_simulator() -> Iterator[FeetechBusSimulator]:
    with FeetechBusSimulator(SimServo(i) for i in SERVO_IDS) as sim:
        yield sim


@contextlib.contextmanager
def subprocess_simulator() -> Iterator[str]:
    """The same simulator in its own process, so process_time() here counts only the client."""
    args = [sys.executable, "-m", "drivers.feetech.sim_bus", "--ids", *map(str, SERVO_IDS)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        if not path:
            raise RuntimeError(f"bus simulator subprocess exited with {proc.wait()} before printing its port")
        yield path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- clients ---------------------------------------------------------------------------------


@contextlib.contextmanager
def our_bus(path: str) -> Iterator[FeetechBus]:
    bus = FeetechBus(path, SO_MOTORS, baudrate=BAUD_BPS)
    bus.open()
    try:
        bus.check_motors()
        yield bus
    finally:
        bus.close()


@contextlib.contextmanager
def stock_port(path: str) -> Iterator[scs.PortHandler]:
    """The SDK's own PortHandler: non-blocking reads polled in a loop, 34 ms reply window."""
    port = scs.PortHandler(path)
    if not (port.openPort() and port.setBaudRate(BAUD_BPS)):
        raise RuntimeError(f"stock SDK could not open {path}")
    try:
        yield port
    finally:
        port.closePort()


def our_cycle(bus: FeetechBus, *, span: bool) -> Callable[[], None]:
    goal = {m.name: GOAL_TICKS for m in SO_MOTORS}

    def cycle() -> None:
        if span:
            bus.sync_read_span(FIRST, LAST)
        else:
            bus.sync_read("Present_Position")
        bus.sync_write("Goal_Position", goal)

    return cycle


def stock_cycle(port: scs.PortHandler) -> Callable[[], None]:
    packets = scs.PacketHandler(0)
    reader = scs.GroupSyncRead(port, packets, FIRST.address, FIRST.size)
    writer = scs.GroupSyncWrite(port, packets, GOAL.address, GOAL.size)
    for servo_id in SERVO_IDS:
        reader.addParam(servo_id)
        writer.addParam(servo_id, list(GOAL_TICKS.to_bytes(GOAL.size, "little")))

    def cycle() -> None:
        result = reader.txRxPacket()
        if result != scs.COMM_SUCCESS:
            raise RuntimeError(f"stock sync read failed: {packets.getTxRxResult(result)}")
        [reader.getData(i, FIRST.address, FIRST.size) for i in SERVO_IDS]
        writer.txPacket()

    return cycle


# -- benchmarks ------------------------------------------------------------------------------

OUR_SPAN = f"FeetechBus: sync_read_span Present_Position..Present_Load ({SPAN_BYTES} B/motor) + sync_write Goal_Position"
OUR_POSITION = f"FeetechBus: sync_read Present_Position ({FIRST.size} B/motor) + sync_write Goal_Position"
STOCK = f"stock SDK: GroupSyncRead Present_Position ({FIRST.size} B/motor) + GroupSyncWrite Goal_Position"
IN_PROCESS = "simulator in-process"
SUBPROCESS = "simulator in a subprocess"


def _cycles_on(path: str, setup: str, cycles: int, warmup: int) -> list[CycleRow]:
    rows = []
    with our_bus(path) as bus:
        rows.append(CycleRow(setup, OUR_SPAN, time_calls(our_cycle(bus, span=True), cycles, warmup)))
        rows.append(CycleRow(setup, OUR_POSITION, time_calls(our_cycle(bus, span=False), cycles, warmup)))
    with stock_port(path) as port:
        rows.append(CycleRow(setup, STOCK, time_calls(stock_cycle(port), cycles, warmup)))
    return rows


def bus_cycles(cycles: int, warmup: int) -> list[CycleRow]:
    """Every client against an in-process simulator (CPU includes the simulator) and a subprocess one (client only)."""
    with in_process_simulator() as sim:
        rows = _cycles_on(sim.port_path, IN_PROCESS, cycles, warmup)
    with subprocess_simulator() as path:
        rows += _cycles_on(path, SUBPROCESS, cycles, warmup)
    return rows


def missing_motor(samples: int) -> MissingMotorResult:
    """One failing sync read with servo 4 silent: ours retries then pings to name the motor; the SDK just times out."""
    with in_process_simulator() as sim:
        with our_bus(sim.port_path) as bus:
            sim.servo(MISSING_SERVO_ID).inject(Fault.NO_REPLY)
            errors: list[str] = []

            def ours() -> None:
                try:
                    bus.sync_read_span(FIRST, LAST)
                except MotorNotRespondingError as exc:
                    errors.append(str(exc))
                    return
                raise RuntimeError("FeetechBus read a bus with a silent motor without error")

            our_timing = time_calls(ours, samples, warmup=1)
        with stock_port(sim.port_path) as port:
            packets = scs.PacketHandler(0)
            reader = scs.GroupSyncRead(port, packets, FIRST.address, SPAN_BYTES)
            for servo_id in SERVO_IDS:
                reader.addParam(servo_id)
            results: list[int] = []

            def stock() -> None:
                results.append(reader.txRxPacket())
                port.ser.reset_input_buffer()
                if results[-1] == scs.COMM_SUCCESS:
                    raise RuntimeError("stock SDK read a bus with a silent motor without error")

            stock_timing = time_calls(stock, samples, warmup=1)
    return MissingMotorResult(our_timing, stock_timing, errors[-1], packets.getTxRxResult(results[-1]))
