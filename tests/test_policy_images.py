"""Letterboxing matches openpi's resize_with_pad: the same picture area and black bars to the pixel,
and nearly the same pixel values, so a policy sees what it was trained on."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from openpi_client.image_tools import resize_with_pad

from robot_runtime.policy.images import letterbox


def natural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Soft-edged coloured blobs over a gradient with sensor noise: smooth areas and edges like a camera's."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 200 / width, y * 200 / height, np.full((height, width), 90.0)], axis=-1)
    for _ in range(30):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(3, max(4, width // 6))), rng.uniform(0, 255, 3).tolist(), -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.2) + rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@settings(max_examples=200, deadline=None)
@given(height=st.integers(1, 900), width=st.integers(1, 900), size=st.integers(8, 320))
def test_picture_area_and_bars_are_exactly_those_of_resize_with_pad(height: int, width: int, size: int) -> None:
    ratio = max(width / size, height / size)
    assume(int(height / ratio) > 0 and int(width / ratio) > 0)  # thinner images fail in both
    white = np.full((height, width, 3), 255, dtype=np.uint8)
    ours, openpi = letterbox(white, size), resize_with_pad(white, size, size)
    assert ours.shape == openpi.shape == (size, size, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours > 0, openpi > 0)


@pytest.mark.parametrize(
    ("height", "width", "size"), [(480, 640, 224), (720, 1280, 224), (640, 480, 224), (120, 160, 224), (480, 640, 96)]
)
def test_pixels_are_close_to_resize_with_pad_on_a_camera_like_image(height: int, width: int, size: int) -> None:
    image = natural_image(height, width)
    difference = np.abs(letterbox(image, size).astype(np.int16) - resize_with_pad(image, size, size))
    assert difference.mean() < 1.0, f"mean abs difference {difference.mean():.2f} grey levels"
    assert np.percentile(difference, 99) <= 12


def test_an_image_already_at_the_size_is_returned_unchanged() -> None:
    image = natural_image(224, 224)
    image.flags.writeable = False  # camera frames are read-only: nothing may need to write to them
    assert letterbox(image, 224) is image


def test_an_image_too_thin_for_the_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="a 1000x2 image is too thin to letterbox into 224x224"):
        letterbox(np.zeros((2, 1000, 3), np.uint8), 224)
