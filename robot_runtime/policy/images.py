"""Camera images shrunk to what a policy takes: letterboxed squares, as openpi's clients send them."""

from __future__ import annotations

import cv2
import numpy as np


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxWx3 uint8 image into a size x size square keeping its aspect ratio, with black bars.

    The geometry (resized size, bar widths) is exactly openpi_client.image_tools.resize_with_pad's, so a
    policy sees what it was trained on; OpenCV does the resampling (area averaging when shrinking) because
    it is about 1.5 times faster than PIL and this runs for every camera at every inference.
    """
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    ratio = max(width / size, height / size)
    resized_height, resized_width = int(height / ratio), int(width / ratio)
    if resized_height == 0 or resized_width == 0:
        raise ValueError(f"a {width}x{height} image is too thin to letterbox into {size}x{size}")
    interpolation = cv2.INTER_AREA if ratio > 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (resized_width, resized_height), interpolation=interpolation)
    top, left = int((size - resized_height) / 2), int((size - resized_width) / 2)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    out[top : top + resized_height, left : left + resized_width] = resized
    return out
