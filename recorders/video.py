"""Camera video for LeRobot v3 datasets, kept off the control tick: settings, the final encode, joining
episodes into a camera's file, and decoding.

During an episode each camera has a LiveVideoWriter (recorders/live_video.py): `put()` only queues a
reference, and one thread per camera encodes a near-lossless H.264 intermediate (x264 ultrafast costs ~3 ms
of CPU a frame, where AV1 would need ~19 ms and starve a 30 Hz loop on two cores). After the episode
`encode_final` makes the final AV1 or H.264 at low CPU priority, and `append_video` adds it to the camera's
dataset file by copying packets. Every frame of every file sits at pts = i * 512 in time base 1/(fps * 512), exactly i / fps:
LeRobot finds episode k's frames at from_timestamp + t within 1e-4 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from recorders.atomic import fsync_file

VIDEO_CODECS = ("av1", "h264")
Encoder = Literal["libsvtav1", "libx264"]
ENCODERS: dict[str, Encoder] = {"av1": "libsvtav1", "h264": "libx264"}
PIX_FMT = "yuv420p"
PTS_PER_FRAME = 512
"""Time base 1/(fps * 512): with 30 fps this is 1/15360, the MP4 track time scale FFmpeg itself picks."""
MAX_FPS = {"av1": 240}
"""Frame rates a final codec's encoder accepts: SVT-AV1 refuses more than 240 fps when it opens."""
FINAL_NICE = 10
"""Nice value of the final encode's thread; the encoder's own threads inherit it."""
_POLL_S = 0.1
"""How often a waiting final encode looks whether the control loop has ended."""

_WRITE_HINT = "check that the directory exists and is writable and that the disk has free space"
_READ_HINT = "check that the file exists and is a complete MP4 (one cut short by a crash has no index)"

# SVT-AV1 prints ~20 info lines to stderr for every encoder it opens; keep errors only unless told otherwise.
os.environ.setdefault("SVT_LOG", "1")


class VideoError(RuntimeError):
    """A video file could not be written or read; the message names the file and what to check."""


class EncodeStopped(Exception):
    """A final encode was stopped on request before it finished; its output was removed."""


def fps_problem(codec: str, fps: int) -> str | None:
    """Why `codec` cannot store `fps` frames a second, or None when it can."""
    limit = MAX_FPS.get(codec)
    if limit is not None and fps > limit:
        return f"the {codec} encoder ({ENCODERS[codec]}) takes at most {limit} fps, not {fps}"
    return None


@dataclass(frozen=True)
class VideoSettings:
    """One camera's video: the final codec with LeRobot's encoder settings, and the live intermediate's.

    Final: LeRobot's `encode_video_frames` defaults, which it applies to either codec: crf 30 (for H.264
    too, not x264's own 23), g 2, yuv420p, the encoder's default preset (SVT-AV1 v4.1: 8; x264: medium).

    Live intermediate: libx264 ultrafast, tune zerolatency, g 2, yuv420p, crf 10, one thread. Measured on
    this 2-core machine at 640x480 (a moving scene with sensor noise; CPU per frame includes RGB->YUV):
    crf 0 (lossless after RGB->YUV) 3.9 ms, 54 MB per 10 s; crf 10 2.9 ms, 24 MB; crf 17 2.1 ms, 8.7 MB. AV1 crf 30 made
    from the crf 10 intermediate is within 0.2 dB PSNR of AV1 made from the camera images (crf 17: 0.4 dB,
    crf 0: identical), so crf 10 keeps the final as good as direct at under half of lossless's disk
    traffic. The intermediate is 4:2:0 because the final is: 4:4:4 would carry chroma that the final
    throws away, at more CPU. One x264 thread per camera: three cameras already make three threads on
    two cores, and more threads only split frames into slices.

    When the final is H.264 with exactly the live settings (`reuses_intermediate`), the intermediate is
    the final: `encode_final` then copies its packets instead of encoding again.
    """

    codec: str
    """Final codec, one of VIDEO_CODECS."""
    fps: int
    width: int
    height: int
    crf: int = 30
    gop_frames: int = 2
    preset: str | None = None
    """Final encoder preset; None keeps the encoder's default, as LeRobot does."""
    tune: str | None = None
    live_crf: int = 10
    live_preset: str = "ultrafast"
    live_tune: str = "zerolatency"
    live_threads: int = 1

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"video codec {self.codec!r} is not one of {VIDEO_CODECS}")
        if not isinstance(self.fps, int) or self.fps <= 0:
            raise ValueError(f"video fps must be a positive int (got {self.fps!r})")
        if problem := fps_problem(self.codec, self.fps):
            raise ValueError(problem)
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"{PIX_FMT} video needs a positive, even width and height (got {self.width}x{self.height})")

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, self.fps * PTS_PER_FRAME)

    @property
    def info(self) -> dict:
        """The `info` block of this camera's feature in LeRobot's meta/info.json."""
        return {
            "video.height": self.height,
            "video.width": self.width,
            "video.codec": self.codec,
            "video.pix_fmt": PIX_FMT,
            "video.is_depth_map": False,
            "video.fps": self.fps,
            "video.channels": 3,
            "has_audio": False,
        }

    @property
    def live_options(self) -> dict[str, str]:
        return {"crf": str(self.live_crf), "g": str(self.gop_frames), "preset": self.live_preset, "tune": self.live_tune}

    @property
    def final_options(self) -> dict[str, str]:
        options = {"crf": str(self.crf), "g": str(self.gop_frames)}
        options.update({key: value for key, value in (("preset", self.preset), ("tune", self.tune)) if value is not None})
        return options

    @property
    def reuses_intermediate(self) -> bool:
        return self.codec == "h264" and self.live_options == self.final_options


@contextlib.contextmanager
def _errors(path: Path, action: str, hint: str) -> Iterator[None]:
    try:
        yield
    except (av.FFmpegError, OSError) as error:
        raise VideoError(f"cannot {action} {path}: {error}; {hint}") from error


def remove_file(path: Path) -> None:
    if path.is_file():  # never a device or directory passed by mistake
        path.unlink(missing_ok=True)


class VideoOutput:
    """An MP4 being encoded: one video stream, frame i at pts i * 512 in time base 1/(fps * 512)."""

    def __init__(self, path: Path, settings: VideoSettings, encoder: Encoder, options: dict[str, str], threads: int = 0) -> None:
        self.path = path
        self.frames = 0
        self._time_base = settings.time_base
        with _errors(path, "write", _WRITE_HINT):
            self._container = av.open(
                str(path), "w", format="mp4", options={"video_track_timescale": str(settings.fps * PTS_PER_FRAME)}
            )
            try:
                self._stream = self._container.add_stream(encoder, rate=settings.fps, options=options)
                self._stream.width, self._stream.height, self._stream.pix_fmt = settings.width, settings.height, PIX_FMT
                self._stream.codec_context.time_base = self._stream.time_base = self._time_base
                # Frame threads: x264 medium takes ~4 ms a frame on two cores, not 7 ms with PyAV's default slices.
                self._stream.codec_context.thread_type, self._stream.codec_context.thread_count = "FRAME", threads
                self._container.start_encoding()  # opens the file now, so a bad path fails here and not later
            except BaseException:
                self.discard()
                raise

    def write(self, frame: av.VideoFrame) -> None:
        # The encoder rescales pts from the frame's time base, and takes a decoded frame's type as an order.
        frame.pts, frame.time_base = self.frames * PTS_PER_FRAME, self._time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        with _errors(self.path, "write", _WRITE_HINT):
            self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        with _errors(self.path, "write", _WRITE_HINT):
            self._container.mux(self._stream.encode(None))
            self._container.close()
            fsync_file(self.path)

    def discard(self) -> None:
        """Close and delete the incomplete file (after a failure, or to abort)."""
        with contextlib.suppress(av.FFmpegError, OSError):
            self._container.close()
        remove_file(self.path)


def _demote_all_threads(idle: bool) -> None:
    """Put every thread of this process at nice FINAL_NICE, on SCHED_IDLE if `idle` (else SCHED_OTHER).

    Running as root, SVT-AV1 starts its threads as SCHED_FIFO priority 99: real-time threads that take
    both cores from the control loop whatever their nice value (measured: ticks up to 1.7 s late; an
    in-process bus simulator missed its replies). The final encode therefore runs in its own process,
    started in a user namespace where it is not root, so SVT never asks for real time; where user
    namespaces are unavailable this demotion is the fallback (the ~40 ms while the encoder opens stay
    real-time there). SCHED_IDLE rather than a nice value: nice weighs per thread, and SVT's ~50 threads
    at nice 10 still took enough CPU to make a simulated servo miss its 5 ms reply; idle threads only
    get what no other thread wants, which on a machine kept busy by other programs is nothing at all.
    """
    if not sys.platform.startswith("linux"):
        return
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            tid = int(task.name)
            if os.sched_getscheduler(tid) != policy:
                os.sched_setscheduler(tid, policy, os.sched_param(0))
            nice_at_least(tid)


def nice_at_least(tid: int = 0) -> None:
    """Lower a thread's priority (0: the calling thread, Linux nice being per thread) to FINAL_NICE, never
    raise it (that needs privileges the process may lack)."""
    if os.getpriority(os.PRIO_PROCESS, tid) < FINAL_NICE:
        os.setpriority(os.PRIO_PROCESS, tid, FINAL_NICE)


@functools.cache
def _isolation() -> tuple[str, ...]:
    """Command prefix that starts the encoder process without root (and so without real-time threads)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("unshare") is None:
        return ()
    probe = subprocess.run(["unshare", "--user", "true"], capture_output=True, check=False)
    return ("unshare", "--user") if probe.returncode == 0 else ()


def _open_video(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    with _errors(path, "read", _READ_HINT):
        container = av.open(str(path))
        if not container.streams.video:
            container.close()
            raise VideoError(f"cannot read {path}: it has no video stream; {_READ_HINT}")
        return container, container.streams.video[0]


def _decoded(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    with _errors(path, "decode", _READ_HINT):
        yield from container.decode(stream)


def encode_final(
    episode: Path,
    out: Path,
    settings: VideoSettings,
    *,
    loop_running: threading.Event | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Encode the intermediate `episode` into `out` with the final codec; returns frames written.

    The encode runs in a process of its own at nice FINAL_NICE without real-time threads (see
    `_demote_all_threads`), so it never holds the caller's GIL; the caller waits for it (AV1 at 640x480:
    ~18 ms of CPU a frame). While `loop_running` is set it runs on idle scheduling, taking only CPU the
    control loop leaves; once it clears, an encode still running idle starts again at FINAL_NICE (only a
    privileged process can lift another from idle scheduling), so other busy programs cannot starve the
    end of a recording. Decoded frames go to the encoder as they are (already yuv420p: no colour round
    trip). If `settings.reuses_intermediate`, packets are copied in this process instead. On failure
    `out` is removed.

    The process has a session of its own: a Ctrl-C at the terminal (SIGINT to the foreground process
    group) is the runtime's to handle, and must not kill an encode the runtime means to finish. It is
    killed as soon as `stop()` is true (EncodeStopped), and dies with the runtime (`_die_with_parent`).
    """
    if stop():
        raise EncodeStopped(f"the final encode of {episode} was stopped before it began")
    if settings.reuses_intermediate:
        return _remux([(episode, None)], out, settings.fps)
    while True:
        idle = loop_running is not None and loop_running.is_set()
        command = [*_isolation(), sys.executable, "-m", "recorders.video", str(episode), str(out)]
        command += [json.dumps(dataclasses.asdict(settings)), "idle" if idle else "nice", str(os.getpid())]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = _wait_for_encode(process, loop_running if idle else None, stop)
        finally:
            if process.poll() is None:  # stopped, interrupted, or idle when the loop ended
                process.kill()
                process.communicate()
        if stdout is not None:
            break
        remove_file(out)
        if stop():
            raise EncodeStopped(f"the final encode of {episode} was stopped")
    if process.returncode != 0:
        remove_file(out)
        lines = [line for line in stderr.splitlines() if line.strip()]
        raise VideoError(lines[-1] if lines else f"the final encode of {episode} exited with {process.returncode}")
    return int(stdout.strip().splitlines()[-1])


def _wait_for_encode(
    process: subprocess.Popen[str], loop_running: threading.Event | None, stop: Callable[[], bool]
) -> tuple[str | None, str]:
    """(stdout, stderr) once `process` ends, or (None, "") as soon as `loop_running` is clear or `stop()` is true."""
    while True:
        try:
            return process.communicate(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            if stop() or (loop_running is not None and not loop_running.is_set()):
                return None, ""


_PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when the thread that started it ends."""


def _die_with_parent(parent_pid: int) -> None:
    """The encoder is in a session of its own, so no signal the terminal sends reaches it: it must not
    outlive the runtime however the runtime ends (kill -9 included), as an orphan encoding into a
    staging directory that a later run may be reading."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the runtime ended before the line above took effect
        sys.exit(1)


def _transcode(episode: Path, out: Path, settings: VideoSettings, idle: bool) -> int:
    container, stream = _open_video(episode)
    with container:
        if (stream.width, stream.height) != (settings.width, settings.height):
            raise VideoError(
                f"{episode} is {stream.width}x{stream.height} but the settings say {settings.width}x{settings.height}; "
                "check that the episode file belongs to this camera"
            )
        stream.thread_type = "AUTO"
        output = VideoOutput(out, settings, ENCODERS[settings.codec], settings.final_options)
        _demote_all_threads(idle)  # the encoder's threads exist once it is open
        try:
            for frame in _decoded(episode, container, stream):
                output.write(frame)
            output.close()
        except BaseException:
            output.discard()
            raise
    return output.frames


def append_video(existing: Path | None, keep_frames: int, episode: Path, out: Path, fps: int) -> int:
    """Write `out`: the first `keep_frames` frames of `existing` (None: none), then all of `episode`.

    Packets are copied, not encoded again. `keep_frames` drops frames an unfinished earlier attempt
    appended, so a retried append never duplicates an episode; it must fall on an episode start.
    Returns the frame index where the episode starts (== keep_frames). The caller renames `out` into place.
    """
    if existing is None and keep_frames:
        raise ValueError(f"keep_frames={keep_frames} without an existing video")
    parts = [(existing, keep_frames)] if existing is not None else []
    _remux([*parts, (episode, None)], out, fps)
    return keep_frames


def _remux(parts: list[tuple[Path, int | None]], out: Path, fps: int) -> int:
    """Concatenate by packet copy: from each file its first `limit` frames (None: all); frames written."""
    time_base = Fraction(1, fps * PTS_PER_FRAME)
    with contextlib.ExitStack() as stack:
        inputs = []
        for path, limit in parts:
            container, stream = _open_video(path)
            stack.enter_context(container)
            inputs.append((path, limit, container, stream))
        _check_same_format([(path, stream) for path, _, _, stream in inputs], time_base)
        with _errors(out, "write", _WRITE_HINT):
            destination = av.open(str(out), "w", format="mp4", options={"video_track_timescale": str(fps * PTS_PER_FRAME)})
        try:
            target = destination.add_stream_from_template(inputs[0][3], opaque=True)  # the decoder's context: no encoder needed
            target.time_base = time_base
            frames, last_dts = 0, None
            for path, limit, container, stream in inputs:
                copied = 0
                for packet, pts, dts in _packets(path, container, stream, limit):
                    shifted_dts = dts + frames * PTS_PER_FRAME
                    if last_dts is not None and shifted_dts <= last_dts:
                        shifted_dts = last_dts + 1  # files whose encoder delay differs (one-frame episodes)
                    packet.pts, packet.dts = pts + frames * PTS_PER_FRAME, shifted_dts
                    last_dts = shifted_dts
                    packet.stream = target
                    with _errors(out, "write", _WRITE_HINT):
                        destination.mux(packet)
                    copied += 1
                frames += copied
            with _errors(out, "write", _WRITE_HINT):
                destination.close()
                fsync_file(out)
        except BaseException:
            with contextlib.suppress(av.FFmpegError, OSError):
                destination.close()
            remove_file(out)
            raise
    return frames


def _packets(
    path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream, limit: int | None
) -> Iterator[tuple[av.Packet, int, int]]:
    """(packet, pts, dts) of the first `limit` frames (None: all), in decode order."""
    count = 0
    with _errors(path, "read", _READ_HINT):
        for packet in container.demux(stream):
            pts, dts = packet.pts, packet.dts
            if dts is None:  # the demuxer's end-of-stream marker
                continue
            if pts is None:
                raise VideoError(f"cannot read {path}: a frame has no presentation time; {_READ_HINT}")
            if limit is not None and pts >= limit * PTS_PER_FRAME:
                if pts == limit * PTS_PER_FRAME and not packet.is_keyframe:
                    raise VideoError(f"keep_frames={limit} is not an episode start in {path} (frame {limit} is not a keyframe)")
                if dts >= limit * PTS_PER_FRAME:
                    break  # decode order: no later packet belongs to the first `limit` frames
                continue
            count += 1
            yield packet, pts, dts
    if limit is not None and count < limit:
        raise VideoError(f"{path} has {count} frames, fewer than keep_frames={limit}; check the episode index against the video")


def _check_same_format(inputs: list[tuple[Path, av.video.stream.VideoStream]], time_base: Fraction) -> None:
    def describe(stream: av.video.stream.VideoStream) -> tuple:
        return (
            stream.codec_context.codec.canonical_name,
            stream.width,
            stream.height,
            stream.codec_context.pix_fmt,
            stream.time_base,
        )

    first_path, first = inputs[0]
    if first.time_base != time_base:
        raise VideoError(
            f"{first_path} has time base {first.time_base}, not {time_base}; it was not written for "
            f"{time_base.denominator // PTS_PER_FRAME} fps"
        )
    for path, stream in inputs[1:]:
        if describe(stream) != describe(first):
            raise VideoError(
                f"cannot join {path} (codec, width, height, pix_fmt, time base {describe(stream)}) to {first_path} "
                f"({describe(first)}); "
                "check that both videos are from the same camera and dataset settings"
            )
        if stream.codec_context.extradata != first.codec_context.extradata:
            raise VideoError(
                f"cannot join {path} to {first_path}: they were encoded with different encoder settings "
                "(a file begun by another tool or encoder version needs a new video file)"
            )


def count_frames(path: Path) -> int:
    """Frames in an MP4, from its index (no decoding)."""
    container, stream = _open_video(path)
    with container:
        return stream.frames


def decode_frames(path: Path, start_frame: int = 0, count: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(pts in seconds, RGB image) of frames start_frame, start_frame + 1, ... in order (`count` of them, None: to the end)."""
    container, stream = _open_video(path)
    with container:
        stream.thread_type = "AUTO"
        rate, time_base = stream.average_rate, stream.time_base
        if rate is None or time_base is None:
            raise VideoError(f"cannot read {path}: its video stream has no frame rate or time base; {_READ_HINT}")
        start_pts = 0
        if start_frame:
            start_pts = round(start_frame / (rate * time_base))
            with _errors(path, "seek in", _READ_HINT):
                container.seek(start_pts, stream=stream, backward=True)
        if count == 0:
            return
        yielded = 0
        for frame in _decoded(path, container, stream):
            if frame.pts is None:
                raise VideoError(f"cannot read {path}: a frame has no presentation time; {_READ_HINT}")
            if frame.pts < start_pts:
                continue  # decoded from the keyframe before start_frame
            yield float(frame.pts * time_base), frame.to_ndarray(format="rgb24")
            yielded += 1
            if yielded == count:
                return


def _final_encode_process(argv: list[str]) -> int:
    """`python -m recorders.video EPISODE OUT SETTINGS_JSON idle|nice PARENT_PID`: the process `encode_final` starts."""
    episode, out, settings, priority, parent_pid = argv
    _die_with_parent(int(parent_pid))
    idle = priority == "idle"
    _demote_all_threads(idle)  # before the encoder starts: its threads inherit the scheduling
    try:
        print(_transcode(Path(episode), Path(out), VideoSettings(**json.loads(settings)), idle))
    except (VideoError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_final_encode_process(sys.argv[1:]))
