"""A Feetech STS bus served on a pseudo-terminal, so unmodified clients (scservo_sdk, pyserial) can talk to SimServos.

Run standalone: `python -m drivers.feetech.sim_bus --ids 1 2 3 4 5 6` prints the port path to open.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import os
import select
import signal
import struct
import threading
import time
import tty
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Self

from drivers.feetech.control_table import (
    BROADCAST_ID,
    INST_ACTION,
    INST_PING,
    INST_READ,
    INST_REG_WRITE,
    INST_SYNC_READ,
    INST_SYNC_WRITE,
    INST_WRITE,
    checksum,
)
from drivers.feetech.sim_servo import LATE_REPLY_S, Fault, SimServo

logger = logging.getLogger(__name__)

HEADER = b"\xff\xff"
STALE_PACKET_S = 0.005
"""A partial packet idle this long is line noise: servos resynchronise instead of waiting forever."""

_TCGETS2 = 0x802C542A
"""Linux ioctl reading struct termios2, whose c_ispeed holds any baud, including non-standard 128000/250000."""
_TERMIOS2 = struct.Struct("IIIIB19sII")


def pty_baud_bps(fd: int) -> int | None:
    """Baud the client set on the pty: its fd and ours are the same tty, so one termios; None if the OS cannot tell."""
    try:
        raw = fcntl.ioctl(fd, _TCGETS2, bytes(_TERMIOS2.size))
    except OSError:
        return None
    input_speed_bps: int = _TERMIOS2.unpack(raw)[-2]
    return input_speed_bps


def status_packet(servo_id: int, error: int, params: bytes = b"", *, corrupt: bool = False) -> bytes:
    """FF FF ID LEN ERR P... CHK with LEN = len(params) + 2; corrupt inverts the checksum."""
    body = bytes([servo_id, len(params) + 2, error]) + params
    chk = checksum(body) ^ (0xFF if corrupt else 0)
    return HEADER + body + bytes([chk])


@dataclasses.dataclass(frozen=True)
class Packet:
    """An instruction packet with a valid checksum."""

    servo_id: int
    instruction: int
    params: bytes


@dataclasses.dataclass
class BusStats:
    """Counters that let tests see what the bus did with the bytes it received."""

    packets_handled: int = 0
    packets_dropped: int = 0
    """Packets with a bad checksum, ignored as real servos do."""
    bytes_skipped: int = 0
    """Bytes outside any packet (line noise before a header)."""
    replies_sent: int = 0


class PacketParser:
    """Streaming parser: sync on FF FF, then ID, LEN and LEN bytes (INST, params, CHK)."""

    def __init__(self, stats: BusStats) -> None:
        self._buffer = bytearray()
        self._stats = stats

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        self._buffer += data
        packets: list[Packet] = []
        while (packet := self._next_packet()) is not None:
            packets.append(packet)
        return packets

    def drop_stale(self) -> list[Packet]:
        """Give up on a partial packet that stopped arriving, and look for a packet behind its header."""
        self._skip(1)
        return self.feed(b"")

    def _skip(self, count: int) -> None:
        del self._buffer[:count]
        self._stats.bytes_skipped += count

    def _next_packet(self) -> Packet | None:
        while True:
            start = self._buffer.find(HEADER)
            if start < 0:
                self._skip(len(self._buffer) - (1 if self._buffer.endswith(b"\xff") else 0))
                return None
            self._skip(start)
            if len(self._buffer) < 4:
                return None
            servo_id, length = self._buffer[2], self._buffer[3]
            if servo_id == 0xFF or length < 2:
                self._skip(1)
                continue
            if len(self._buffer) < 4 + length:
                return None
            body = bytes(self._buffer[2 : 3 + length])
            if checksum(body) != self._buffer[3 + length]:
                self._stats.packets_dropped += 1
                self._skip(1)
                continue
            del self._buffer[: 4 + length]
            return Packet(servo_id=servo_id, instruction=body[2], params=body[3:])


@dataclasses.dataclass(frozen=True)
class _Pty:
    """The descriptors one running simulator owns.

    The slave stays open for the simulator's lifetime so the master never reads EIO while clients close
    and reopen the port, and so the client's termios (baud) outlives its connection.
    """

    master_fd: int
    slave_fd: int
    wake_read_fd: int
    wake_write_fd: int
    path: str

    @classmethod
    def open(cls) -> _Pty:
        master_fd, slave_fd = os.openpty()
        tty.setraw(slave_fd)
        os.set_blocking(master_fd, False)
        wake_read_fd, wake_write_fd = os.pipe()
        return cls(master_fd, slave_fd, wake_read_fd, wake_write_fd, os.ttyname(slave_fd))

    def close(self) -> None:
        for fd in (self.master_fd, self.slave_fd, self.wake_read_fd, self.wake_write_fd):
            os.close(fd)


class FeetechBusSimulator:
    """SimServos on one pty; a background thread answers instruction packets byte-exactly. Servos can be
    plugged in and out while it runs, as an operator swaps which motor is on the cable."""

    def __init__(self, servos: Iterable[SimServo]) -> None:
        self._servos = list(servos)
        self._servos_lock = threading.Lock()
        self._stats = BusStats()
        self._parser = PacketParser(self._stats)
        self._thread: threading.Thread | None = None
        self._pty: _Pty | None = None
        self._port_path: str | None = None
        self._late_replies: list[threading.Timer] = []

    @property
    def servos(self) -> list[SimServo]:
        with self._servos_lock:
            return list(self._servos)

    def attach(self, servo: SimServo) -> None:
        """Plug a servo into the bus: it hears the next packet."""
        with self._servos_lock:
            if any(s is servo for s in self._servos):
                raise ValueError(f"simulated servo {servo.id} is already on this bus")
            self._servos.append(servo)

    def detach(self, servo: SimServo) -> None:
        """Unplug a servo (by identity: several may share an id, as factory-fresh ones do)."""
        with self._servos_lock:
            if not any(s is servo for s in self._servos):
                raise ValueError(f"simulated servo {servo.id} is not on this bus")
            self._servos = [s for s in self._servos if s is not servo]

    @property
    def port_path(self) -> str:
        """The pty path clients open; kept after stop() so callers can report which port went away."""
        if self._port_path is None:
            raise RuntimeError("the bus simulator is not started; call start() first")
        return self._port_path

    @property
    def stats(self) -> BusStats:
        return dataclasses.replace(self._stats)

    def servo(self, servo_id: int) -> SimServo:
        servos = self.servos
        for servo in servos:
            if servo.id == servo_id:
                return servo
        raise KeyError(f"no simulated servo with id {servo_id} on this bus (ids: {[s.id for s in servos]})")

    def start(self) -> str:
        """Open the pty and start answering; returns the path clients open."""
        if self._pty is not None:
            return self.port_path
        self._pty = _Pty.open()
        self._port_path = self._pty.path
        self._parser = PacketParser(self._stats)
        self._thread = threading.Thread(target=self._serve, args=(self._pty,), name="feetech-bus-sim", daemon=True)
        self._thread.start()
        return self._port_path

    def stop(self) -> None:
        """Stop the thread and close the pty; the path disappears. Safe to call twice."""
        if self._pty is None or self._thread is None:
            return
        os.write(self._pty.wake_write_fd, b"\0")
        self._thread.join()
        for timer in self._late_replies:  # before the fds close: their numbers may be reused at once
            timer.cancel()
            timer.join()
        self._late_replies.clear()
        self._pty.close()
        self._pty = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self, pty: _Pty) -> None:
        """Answer packets until stop() writes to the wake pipe; select() blocks, so an idle bus costs no CPU."""
        last_byte_s = time.monotonic()
        while True:
            timeout_s = STALE_PACKET_S if self._parser.pending else None
            readable, _, _ = select.select([pty.master_fd, pty.wake_read_fd], [], [], timeout_s)
            if pty.wake_read_fd in readable:
                return
            if readable:
                packets = self._parser.feed(os.read(pty.master_fd, 4096))
                last_byte_s = time.monotonic()
            elif self._parser.pending and time.monotonic() - last_byte_s >= STALE_PACKET_S:
                packets = self._parser.drop_stale()
            else:
                continue
            for packet in packets:
                try:
                    self._handle(pty, packet)
                except Exception:
                    logger.exception("simulated bus failed on %s", packet)

    def _hearing(self, baud_bps: int | None) -> list[SimServo]:
        """Servos that hear the line: present, and set to the client's baud."""
        return [
            servo
            for servo in self.servos
            if not servo.has_fault(Fault.NO_REPLY) and (baud_bps is None or servo.baud_bps == baud_bps)
        ]

    def _handle(self, pty: _Pty, packet: Packet) -> None:
        """Execute one packet and write every status packet it draws in one write, at once: a client's
        reply timeout (5 ms on a real bus) starts when it sent the packet."""
        self._stats.packets_handled += 1
        hearing = self._hearing(pty_baud_bps(pty.slave_fd))
        params = packet.params
        replies: list[bytes] = []
        if packet.instruction == INST_SYNC_READ:
            if packet.servo_id == BROADCAST_ID and len(params) >= 2:
                address, length = params[0], params[1]
                for servo_id in params[2:]:
                    replies += [self._status(pty, s, s.id, s.read(address, length)) for s in hearing if s.id == servo_id]
        elif packet.instruction == INST_SYNC_WRITE:
            if len(params) >= 2:
                address, length = params[0], params[1]
                blocks = params[2:]
                for start in range(0, len(blocks) - length, length + 1):
                    for servo in hearing:
                        if servo.id == blocks[start]:
                            servo.write(address, blocks[start + 1 : start + 1 + length])
        else:
            # Of the broadcast instructions only PING is answered: by every servo that hears it, with its own id.
            answers = packet.servo_id != BROADCAST_ID or packet.instruction == INST_PING
            for servo in hearing:
                if packet.servo_id != BROADCAST_ID and servo.id != packet.servo_id:
                    continue
                reply_id = servo.id  # a write to ID takes effect after this reply
                reply = self._execute(servo, packet)
                if reply is not None and answers:
                    replies.append(self._status(pty, servo, reply_id, reply))
        self._send(pty, [r for r in replies if r])

    def _execute(self, servo: SimServo, packet: Packet) -> bytes | None:
        """Apply one unicast or broadcast instruction; returns the status params, or None for no reply."""
        params = packet.params
        acknowledges = servo.response_status_level >= 1
        if packet.instruction == INST_PING:
            return b""
        if packet.instruction == INST_READ and len(params) == 2:
            return servo.read(params[0], params[1])
        if packet.instruction == INST_WRITE and params:
            servo.write(params[0], params[1:])
            return b"" if acknowledges else None
        if packet.instruction == INST_REG_WRITE and params:
            servo.reg_write(params[0], params[1:])
            return b"" if acknowledges else None
        if packet.instruction == INST_ACTION:
            servo.action()
            return b"" if acknowledges else None
        return None

    def _status(self, pty: _Pty, servo: SimServo, reply_id: int, params: bytes) -> bytes:
        """The status packet to send now; empty when the servo answers late (sent by a timer)."""
        packet = status_packet(reply_id, servo.error_byte(), params, corrupt=servo.has_fault(Fault.CORRUPT_CHECKSUM))
        if servo.has_fault(Fault.LATE_REPLY):
            timer = threading.Timer(LATE_REPLY_S, self._send, (pty, [packet]))
            self._late_replies = [t for t in self._late_replies if t.is_alive()] + [timer]
            timer.start()
            return b""
        return packet

    def _send(self, pty: _Pty, packets: list[bytes]) -> None:
        if not packets:
            return
        try:
            os.write(pty.master_fd, b"".join(packets))
        except BlockingIOError:
            logger.warning("client is not reading the pty; %d status packets lost", len(packets))
            return
        self._stats.replies_sent += len(packets)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve simulated servos until Ctrl-C or SIGTERM; prints the port path for the client."""
    parser = argparse.ArgumentParser(description="Simulated Feetech STS3215 bus on a pseudo-terminal.")
    parser.add_argument("--ids", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6], help="servo ids on the bus")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with FeetechBusSimulator(SimServo(servo_id) for servo_id in args.ids) as bus:
        print(bus.port_path, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
