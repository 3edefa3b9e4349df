"""Camera video through real PyAV encoders: every row of an episode is one frame at exactly i / fps, the
stamp put in a row is the one decoded from it, overflow and failures are counted or raised, never silent."""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cameras.stamp import Stamp, read_stamp, write_stamp
from recorders.live_video import EpisodeVideo, LiveVideoWriter
from recorders.video import (
    FINAL_NICE,
    VideoError,
    VideoSettings,
    append_video,
    count_frames,
    decode_frames,
    encode_final,
)

FPS = 30


def stamped(number: int, width: int = 160, height: int = 120) -> np.ndarray:
    """Noise (the hardest content to encode) with a stamp naming the frame; read-only like camera frames."""
    image = np.random.default_rng(number).integers(0, 256, (height, width, 3), dtype=np.uint8)
    write_stamp(image, Stamp(number, 1_000_000 + number * 33_333))
    image.flags.writeable = False
    return image


def record(path: Path, numbers: list[int], width: int = 160, height: int = 120, codec: str = "av1") -> EpisodeVideo:
    writer = LiveVideoWriter(path, VideoSettings(codec, FPS, width, height), queue_frames=len(numbers) + 1)
    for index, number in enumerate(numbers):
        assert writer.put(index, stamped(number, width, height))
    return writer.finish(len(numbers))


def stamps(path: Path, start_frame: int = 0, count: int | None = None) -> list[int]:
    return [read_stamp(image).number for _, image in decode_frames(path, start_frame, count)]


def timing(path: Path) -> tuple[Fraction | None, list[int | None], str]:
    """Time base, every frame's pts, and codec name, read straight from PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(stream)]
        return stream.time_base, pts, stream.codec_context.codec.canonical_name


def test_every_row_is_decoded_with_its_own_stamp_at_exactly_i_over_fps(tmp_path):
    settings = VideoSettings("av1", FPS, 640, 480)
    images = [stamped(number, 640, 480) for number in range(12)]
    writer = LiveVideoWriter(tmp_path / "cam.mp4", settings)
    for index, image in enumerate(images):
        assert writer.put(index, image)
    episode = writer.finish(12, timeout_s=30)

    assert (episode.path, episode.frames, episode.repeated, writer.overflowed) == (tmp_path / "cam.mp4", 12, 0, 0)
    assert count_frames(episode.path) == 12
    decoded = list(decode_frames(episode.path))
    assert [read_stamp(image).number for _, image in decoded] == list(range(12))
    assert [pts for pts, _ in decoded] == [index / FPS for index in range(12)]
    assert timing(episode.path) == (Fraction(1, FPS * 512), [index * 512 for index in range(12)], "h264")
    # Statistics samples: LeRobot's stride (640 // 150 = 4), the frames as put, not as decoded.
    assert episode.samples.shape == (12, 120, 160, 3) and episode.samples.dtype == np.uint8
    assert np.array_equal(episode.samples[5], images[5][::4, ::4])


def test_a_burst_overflows_without_blocking_and_each_dropped_row_repeats_the_previous_image(tmp_path):
    images = [stamped(number, 640, 480) for number in range(30)]
    writer = LiveVideoWriter(tmp_path / "cam.mp4", VideoSettings("av1", FPS, 640, 480), queue_frames=1)
    accepted, put_s = [], []
    for index, image in enumerate(images):
        started = time.perf_counter()
        if writer.put(index, image):
            accepted.append(index)
        put_s.append(time.perf_counter() - started)
    episode = writer.finish(30, timeout_s=30)

    assert max(put_s) < 0.5  # generous for a loaded machine; the overflow below is what shows put() never waits
    assert writer.overflowed == 30 - len(accepted) > 0
    assert episode.repeated == writer.overflowed and episode.frames == 30
    assert stamps(episode.path) == [max(a for a in accepted if a <= index) for index in range(30)]
    assert timing(episode.path)[1] == [index * 512 for index in range(30)]


def test_rows_without_an_image_repeat_the_previous_one_up_to_the_episode_length(tmp_path):
    writer = LiveVideoWriter(tmp_path / "cam.mp4", VideoSettings("av1", FPS, 160, 120))
    for index in (0, 1, 4):
        writer.put(index, stamped(index))
    episode = writer.finish(7)

    assert (episode.frames, episode.repeated, writer.overflowed) == (7, 4, 0)
    assert stamps(episode.path) == [0, 1, 1, 1, 4, 4, 4]


def test_statistics_samples_span_a_long_episode_evenly_with_bounded_memory(tmp_path):
    episode = record(tmp_path / "cam.mp4", list(range(450)), width=128, height=96)

    rows = [read_stamp(sample).number for sample in episode.samples]  # under 300 px: not downscaled
    assert 100 <= len(rows) < 200 and rows[0] == 0 and rows[-1] > 400
    assert len(set(np.diff(rows))) == 1


@pytest.mark.parametrize("codec", ["av1", "h264"])
def test_the_final_encode_keeps_every_stamp_at_its_pts(tmp_path, codec):
    settings = VideoSettings(codec, FPS, 160, 120)
    episode = record(tmp_path / "live.mp4", [7, 8, 9, 10, 11, 12, 13, 14, 15, 16])

    assert encode_final(episode.path, tmp_path / "final.mp4", settings) == 10
    assert count_frames(tmp_path / "final.mp4") == 10
    assert stamps(tmp_path / "final.mp4") == list(range(7, 17))
    assert timing(tmp_path / "final.mp4") == (
        Fraction(1, FPS * 512),
        [index * 512 for index in range(10)],
        settings.info["video.codec"],
    )
    assert settings.info == {
        "video.height": 120, "video.width": 160, "video.codec": codec, "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False, "video.fps": FPS, "video.channels": 3, "has_audio": False,
    }  # fmt: skip


def test_an_h264_final_with_the_live_settings_is_the_intermediate_itself(tmp_path):
    settings = VideoSettings("h264", FPS, 160, 120, crf=10, preset="ultrafast", tune="zerolatency")
    assert settings.reuses_intermediate and not VideoSettings("h264", FPS, 160, 120).reuses_intermediate
    episode = record(tmp_path / "live.mp4", list(range(6)), codec="h264")

    assert encode_final(episode.path, tmp_path / "final.mp4", settings) == 6

    def packets(path: Path) -> list[bytes]:
        with av.open(str(path)) as container:
            return [bytes(packet) for packet in container.demux(video=0) if packet.size]

    assert packets(tmp_path / "final.mp4") == packets(episode.path)


def encoder_scheduling(out: Path, encode: Callable[[], int], observed: list[tuple[int, int]]) -> int:
    """Run `encode`, adding to `observed` the (policy, nice) of every thread of the encoder process writing `out`."""
    done = threading.Event()

    def encoder_threads() -> list[Path]:
        for process in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if str(out).encode() in (process / "cmdline").read_bytes() and process.name != str(os.getpid()):
                    return list((process / "task").iterdir())
        return []

    def watch() -> None:
        while not done.is_set():
            for task in encoder_threads():
                with contextlib.suppress(OSError):
                    tid = int(task.name)
                    observed.append((os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        return encode()
    finally:
        done.set()
        watcher.join()


def test_the_final_encode_runs_in_its_own_process_at_its_nice_value_without_real_time_threads(tmp_path):
    """SVT-AV1 run as root starts SCHED_FIFO threads that would take both cores from the control loop."""
    episode = record(tmp_path / "live.mp4", list(range(40)), width=320, height=240)  # ~0.5 s of AV1 work
    out = tmp_path / "final.mp4"
    caller = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    threads_before = threading.active_count()
    observed: list[tuple[int, int]] = []
    frames = encoder_scheduling(out, lambda: encode_final(episode.path, out, VideoSettings("av1", FPS, 320, 240)), observed)

    assert frames == 40
    assert len(observed) > 10, "the encoder process was not seen"
    late = observed[len(observed) // 2 :]
    assert all(policy == os.SCHED_OTHER and nice >= FINAL_NICE for policy, nice in late), sorted(set(late))
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())) == caller  # untouched
    assert threading.active_count() == threads_before  # no encoder thread in this process


def test_while_the_loop_runs_the_encode_is_idle_and_starts_again_at_its_nice_value_when_the_loop_ends(tmp_path):
    """While the loop runs, the encode takes only CPU nothing else wants (idle scheduling). That is nothing
    on a machine other programs keep busy, so once the loop has ended it must not wait for idle time."""
    numbers = list(range(240))  # ~1 s of AV1 work: still encoding when the loop ends
    episode = record(tmp_path / "live.mp4", numbers, width=320, height=240)
    out = tmp_path / "final.mp4"
    running = threading.Event()
    running.set()
    observed: list[tuple[int, int]] = []

    def end_the_loop_once_the_encode_runs_idle() -> None:
        deadline = time.monotonic() + 30
        while (os.SCHED_IDLE, FINAL_NICE) not in observed and time.monotonic() < deadline:
            time.sleep(0.005)
        running.clear()

    ender = threading.Thread(target=end_the_loop_once_the_encode_runs_idle, daemon=True)
    ender.start()
    settings = VideoSettings("av1", FPS, 320, 240)
    frames = encoder_scheduling(out, lambda: encode_final(episode.path, out, settings, loop_running=running), observed)
    ender.join(timeout=5)
    assert frames == len(numbers) and stamps(out) == numbers
    assert (os.SCHED_IDLE, FINAL_NICE) in observed and observed[-1] == (os.SCHED_OTHER, FINAL_NICE), sorted(set(observed))


def test_a_final_encode_that_fails_names_the_file(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(VideoError, match=r"broken\.mp4"):
        encode_final(broken, tmp_path / "final.mp4", VideoSettings("av1", FPS, 320, 240))
    assert not (tmp_path / "final.mp4").exists()


def test_append_concatenates_at_exact_frame_times_and_a_retry_never_duplicates(tmp_path):
    settings = VideoSettings("av1", FPS, 160, 120)
    for name, numbers in (("ep0", [0, 1, 2, 3, 4]), ("ep1", [100, 101, 102, 103])):
        episode = record(tmp_path / f"{name}.live.mp4", numbers)
        encode_final(episode.path, tmp_path / f"{name}.mp4", settings)

    assert append_video(None, 0, tmp_path / "ep0.mp4", tmp_path / "file1.mp4", FPS) == 0
    assert append_video(tmp_path / "file1.mp4", 5, tmp_path / "ep1.mp4", tmp_path / "file2.mp4", FPS) == 5
    assert stamps(tmp_path / "file2.mp4") == [0, 1, 2, 3, 4, 100, 101, 102, 103]
    assert [pts for pts, _ in decode_frames(tmp_path / "file2.mp4", 5, 2)] == [5 / FPS, 6 / FPS]
    assert timing(tmp_path / "file2.mp4") == (Fraction(1, FPS * 512), [index * 512 for index in range(9)], "av1")
    with av.open(str(tmp_path / "file2.mp4")) as container:
        assert container.streams.video[0].duration == 9 * 512  # what LeRobot's duration helper reads

    # A retry after a crash that had already appended ep1: keep_frames drops the earlier attempt.
    assert append_video(tmp_path / "file2.mp4", 5, tmp_path / "ep1.mp4", tmp_path / "file3.mp4", FPS) == 5
    assert stamps(tmp_path / "file3.mp4") == [0, 1, 2, 3, 4, 100, 101, 102, 103]


def test_h264_episodes_of_one_frame_join_too(tmp_path):
    """x264 (preset medium) delays decode times by a frame, except in a one-frame file."""
    settings = VideoSettings("h264", FPS, 160, 120)
    for name, numbers in (("one", [0]), ("three", [10, 11, 12])):
        encode_final(record(tmp_path / f"{name}.live.mp4", numbers).path, tmp_path / f"{name}.mp4", settings)

    append_video(None, 0, tmp_path / "one.mp4", tmp_path / "a.mp4", FPS)
    append_video(tmp_path / "a.mp4", 1, tmp_path / "three.mp4", tmp_path / "b.mp4", FPS)
    append_video(tmp_path / "b.mp4", 4, tmp_path / "one.mp4", tmp_path / "c.mp4", FPS)
    assert stamps(tmp_path / "c.mp4") == [0, 10, 11, 12, 0]
    assert timing(tmp_path / "c.mp4")[1] == [index * 512 for index in range(5)]
    with av.open(str(tmp_path / "c.mp4")) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
    dts = [packet.dts for packet in packets if packet.dts is not None]
    assert len(dts) == len(packets)
    assert all(later > earlier for earlier, later in itertools.pairwise(dts))  # no zero-length samples


def test_append_refuses_videos_that_cannot_be_joined(tmp_path):
    small = record(tmp_path / "small.mp4", [0, 1, 2])
    large = record(tmp_path / "large.mp4", [0, 1, 2], width=192, height=144)
    encode_final(small.path, tmp_path / "small.av1.mp4", VideoSettings("av1", FPS, 160, 120))

    with pytest.raises(VideoError, match=r"cannot join .*large\.mp4"):
        append_video(small.path, 3, large.path, tmp_path / "out.mp4", FPS)
    with pytest.raises(VideoError, match="cannot join"):  # same size, other codec
        append_video(small.path, 3, tmp_path / "small.av1.mp4", tmp_path / "out.mp4", FPS)
    with pytest.raises(VideoError, match="fewer than keep_frames=4"):
        append_video(small.path, 4, small.path, tmp_path / "out.mp4", FPS)
    with pytest.raises(VideoError, match=r"not .* for 25 fps"):
        append_video(small.path, 3, small.path, tmp_path / "out.mp4", 25)
    assert not (tmp_path / "out.mp4").exists()


def test_unwritable_and_unreadable_paths_raise_video_error_naming_the_file(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    target = tmp_path / "not-a-dir" / "cam.mp4"
    with pytest.raises(VideoError, match=f"cannot write {target}.*directory exists and is writable"):
        LiveVideoWriter(target, VideoSettings("av1", FPS, 160, 120))

    episode = record(tmp_path / "live.mp4", [0, 1, 2])
    with pytest.raises(VideoError, match=f"cannot write {target}"):
        encode_final(episode.path, target, VideoSettings("av1", FPS, 160, 120))
    with pytest.raises(VideoError, match=f"cannot write {target}"):
        append_video(None, 0, episode.path, target, FPS)

    cut = tmp_path / "cut.mp4"  # what a crash mid-write leaves: no index
    cut.write_bytes(episode.path.read_bytes()[: episode.path.stat().st_size // 2])
    with pytest.raises(VideoError, match=f"cannot read {cut}.*complete MP4"):
        count_frames(cut)
    with pytest.raises(VideoError, match=f"cannot read {cut}"):
        list(decode_frames(cut))


def test_abort_removes_the_file_and_can_be_repeated(tmp_path):
    writer = LiveVideoWriter(tmp_path / "cam.mp4", VideoSettings("av1", FPS, 160, 120))
    writer.put(0, stamped(0))
    writer.abort()
    writer.abort()
    assert not (tmp_path / "cam.mp4").exists()
    with pytest.raises(VideoError, match="after finish"):
        writer.put(1, stamped(1))

    finished = LiveVideoWriter(tmp_path / "done.mp4", VideoSettings("av1", FPS, 160, 120))
    finished.put(0, stamped(0))
    finished.finish(1)
    finished.abort()
    assert not (tmp_path / "done.mp4").exists()


def test_puts_that_would_corrupt_the_video_are_refused(tmp_path):
    writer = LiveVideoWriter(tmp_path / "cam.mp4", VideoSettings("av1", FPS, 160, 120))
    with pytest.raises(ValueError, match=r"expected a uint8 \(120, 160, 3\)"):
        writer.put(0, stamped(0, width=192))
    writer.put(3, stamped(3))
    with pytest.raises(ValueError, match="rows must increase"):
        writer.put(3, stamped(4))
    with pytest.raises(ValueError, match="episode has 3 rows but frame index 3"):
        writer.finish(3)
    writer.abort()


def test_a_write_failure_in_the_worker_surfaces_on_the_next_put_and_on_finish(tmp_path):
    """A file size limit makes the worker's writes fail as a full disk would (EFBIG instead of ENOSPC)."""
    writer = LiveVideoWriter(tmp_path / "cam.mp4", VideoSettings("av1", FPS, 160, 120))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ((tmp_path / "cam.mp4").stat().st_size + 20_000, hard))
    try:
        deadline = time.monotonic() + 10
        with pytest.raises(VideoError, match=f"{tmp_path / 'cam.mp4'}.*File too large"):  # noqa: PT012 - put() until the worker's failure surfaces
            for index in range(10_000):
                writer.put(index, stamped(index))
                time.sleep(0.005)
                assert time.monotonic() < deadline, "the worker never reported the failed write"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert "File too large" in str(writer.error)
    with pytest.raises(VideoError, match="File too large"):
        writer.finish(index + 1)
    writer.abort()
    assert not (tmp_path / "cam.mp4").exists()


def test_a_writer_left_unfinished_does_not_hang_interpreter_exit(tmp_path):
    script = (
        "from pathlib import Path; import numpy as np; from recorders.live_video import LiveVideoWriter; from recorders.video "
        "import VideoSettings; "
        f"w = LiveVideoWriter(Path({str(tmp_path / 'cam.mp4')!r}), VideoSettings('av1', 30, 160, 120)); "
        "w.put(0, np.zeros((120, 160, 3), np.uint8))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[1], timeout=30, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
