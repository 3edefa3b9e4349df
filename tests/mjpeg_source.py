"""A network camera stand-in: a separate process serving a paced MJPEG stream over HTTP, so tests can
exercise the real OpenCV/FFmpeg capture path and kill or stall the "camera" at will.

Run by hand: `python tests/mjpeg_source.py --fps 30 --width 640 --height 480` prints its port once
listening; the stream is at http://127.0.0.1:PORT/stream.mjpg. Every frame is a solid colour with
its frame number and the monotonic time it was sent written by cameras.stamp.write_stamp (the
monotonic clock is system-wide, so a test can compare it with its own time.monotonic()). Frame k is
sent at start + k/fps to every client, so numbers run on across reconnects and gaps show lost frames.

In tests:

    from mjpeg_source import mjpeg_source

    with mjpeg_source(fps=30, width=640, height=480, colour_bgr=(0, 0, 255)) as source:
        camera = build_camera("wrist", OpenCVCameraConfig(type="opencv", source=source.url))
        source.stop()    # SIGSTOP: the stream stalls with its connection open
        source.resume()  # SIGCONT
        source.kill()    # SIGKILL: the connection drops; mjpeg_source(port=source.port) serves again
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cameras.stamp import Stamp, write_stamp

BOUNDARY = "frame"
STREAM_PATH = "/stream.mjpg"


def end_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL (which also ends a stopped process) and reap."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@dataclass(frozen=True)
class MjpegSource:
    """A running source process; `url` is what an OpenCVCameraConfig's `source` takes."""

    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Freeze the process (SIGSTOP), like a hung camera: open connections get no more bytes, and new
        ones are accepted by the kernel but answered only after resume()."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo stop() (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the process and reap it: connections drop and the port is free for a new source."""
        end_process(self.process)


@contextlib.contextmanager
def mjpeg_source(
    fps: float = 30.0,
    width: int = 640,
    height: int = 480,
    colour_bgr: tuple[int, int, int] = (0, 0, 255),
    port: int = 0,
    start_timeout_s: float = 10.0,
) -> Iterator[MjpegSource]:
    """Start a source process and wait until it listens; it is killed on exit, whatever happened.
    `port=0` picks a free port; pass an earlier source's port to bring a killed "camera" back."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--fps={fps}",
        f"--width={width}",
        f"--height={height}",
        f"--colour-bgr={','.join(str(c) for c in colour_bgr)}",
        f"--port={port}",
        "--exit-when-stdin-closes",
    ]
    # stderr goes to a file, not a pipe: nobody drains a pipe while the test runs, and a full one would stall the source.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        try:
            stdout = process.stdout
            assert stdout is not None  # stdout=PIPE
            ready, _, _ = select.select([stdout], [], [], start_timeout_s)
            line = stdout.readline() if ready else b""
            if not line.strip().isdigit():
                end_process(process)
                stderr.seek(0)
                raise RuntimeError(
                    f"MJPEG source did not start within {start_timeout_s:g} s ({' '.join(command)}): "
                    f"{stderr.read().decode().strip()}"
                )
            listening = int(line)
            yield MjpegSource(url=f"http://127.0.0.1:{listening}{STREAM_PATH}", port=listening, process=process)
        finally:
            end_process(process)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


# -- the source process ----------------------------------------------------------------------------


def render_jpeg(number: int, width: int, height: int, colour_bgr: tuple[int, int, int]) -> bytes:
    """A solid-colour JPEG stamped with `number` and the current monotonic time."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = colour_bgr
    write_stamp(image, Stamp(number, int(time.monotonic() * 1e6)))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def make_handler(
    fps: float, width: int, height: int, colour_bgr: tuple[int, int, int], t0_s: float
) -> type[http.server.BaseHTTPRequestHandler]:
    period_s = 1.0 / fps

    class StreamHandler(http.server.BaseHTTPRequestHandler):
        """Frame k of the source goes out at t0 + k/fps to every client; a client that falls more than
        a frame behind skips ahead (the numbers show the gap), as a camera drops frames."""

        def do_GET(self) -> None:
            if self.path != STREAM_PATH:
                self.send_error(404, f"the stream is at {STREAM_PATH}")
                return
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            number = math.ceil((time.monotonic() - t0_s) / period_s)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while True:
                    delay_s = t0_s + number * period_s - time.monotonic()
                    if delay_s > 0:
                        time.sleep(delay_s)
                    elif delay_s < -period_s:
                        number = math.ceil((time.monotonic() - t0_s) / period_s)
                        continue
                    jpeg = render_jpeg(number, width, height, colour_bgr)
                    header = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    self.wfile.write(header + jpeg + b"\r\n")
                    self.wfile.flush()
                    number += 1

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read stdout for the port and stderr for failures."""

    return StreamHandler


def exit_when_stdin_closes() -> None:
    """The test process holds our stdin: if it dies without cleaning up, the source goes too."""
    sys.stdin.read()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--colour-bgr", default="0,0,255", help="solid colour as B,G,R (default red)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free one")
    parser.add_argument("--exit-when-stdin-closes", action="store_true")
    args = parser.parse_args()
    colour = tuple(int(c) for c in args.colour_bgr.split(","))
    if len(colour) != 3:
        parser.error(f"--colour-bgr needs three values, got {args.colour_bgr!r}")
    handler = make_handler(args.fps, args.width, args.height, colour, time.monotonic())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    if args.exit_when_stdin_closes:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
