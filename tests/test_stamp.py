"""The image stamp carries a frame number and a capture time through lossy encoding, and a damaged or
missing stamp is reported, never misread."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cameras.stamp import Stamp, StampError, read_stamp, stamp_height_px, write_stamp
from recorders.live_video import LiveVideoWriter
from recorders.video import VideoSettings, decode_frames, encode_final


def noisy_image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


@settings(max_examples=60, deadline=None)
@given(number=st.integers(0, 2**32 - 1), capture_us=st.integers(0, 2**48 - 1), width=st.sampled_from([224, 320, 640, 1280]))
def test_any_stamp_reads_back_exactly(number, capture_us, width):
    image = noisy_image(240, width)
    write_stamp(image, Stamp(number, capture_us))
    assert read_stamp(image) == Stamp(number, capture_us)


@pytest.mark.parametrize("quality", [90, 50, 20])
def test_the_stamp_survives_heavy_jpeg_compression(quality):
    image = noisy_image()
    write_stamp(image, Stamp(123456, 987_654_321_012))
    assert read_stamp(jpeg(image, quality)) == Stamp(123456, 987_654_321_012)


def test_only_the_top_band_is_touched():
    image = noisy_image()
    original = image.copy()
    write_stamp(image, Stamp(1, 2))
    band = stamp_height_px(640)
    assert np.array_equal(image[band:], original[band:])
    assert not np.array_equal(image[:band], original[:band])


def test_an_image_without_a_stamp_is_refused():
    with pytest.raises(StampError, match="no valid stamp"):
        read_stamp(noisy_image())


def test_a_damaged_stamp_is_refused_not_misread():
    image = noisy_image()
    write_stamp(image, Stamp(42, 1_000_000))
    image[: stamp_height_px(640), :40] = 255 - image[: stamp_height_px(640), :40]
    with pytest.raises(StampError):
        read_stamp(image)


def test_too_narrow_images_and_out_of_range_values_are_errors():
    with pytest.raises(ValueError, match="narrower than 96 px"):
        write_stamp(noisy_image(64, 64), Stamp(1, 1))
    with pytest.raises(ValueError, match="out of range"):
        write_stamp(noisy_image(), Stamp(2**32, 1))


@pytest.mark.parametrize("codec", ["av1", "h264"])
def test_every_stamp_survives_video_encoding_as_recorded_datasets_use_it(codec, tmp_path):
    """The recorder's path: the live intermediate, then the final (LeRobot's AV1 crf 30, or H.264);
    each decoded frame still names itself."""
    stamps = [Stamp(number, 5_000_000 + number * 33_333) for number in range(20)]
    settings = VideoSettings(codec=codec, fps=30, width=640, height=480)
    live = LiveVideoWriter(tmp_path / "live.mp4", settings)
    for number, stamp in enumerate(stamps):
        image = noisy_image(seed=number)
        write_stamp(image, stamp)
        live.put(number, image)
    live.finish(len(stamps))
    encode_final(tmp_path / "live.mp4", tmp_path / "final.mp4", settings)
    assert [read_stamp(image) for _, image in decode_frames(tmp_path / "final.mp4")] == stamps
