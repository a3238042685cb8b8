"""
Reading metaphase images as microscopes write them, and the one test-time resize a model's
input gets (detectron2's ``ResizeShortestEdge`` to ``INPUT.MIN_SIZE_TEST`` /
``MAX_SIZE_TEST``, PIL bilinear): the evaluation loader, prediction, the karyotype step, the
crop classifier's patches and the exported model's runner all resize through
:func:`test_resize`.
"""

from typing import Tuple

import numpy as np
from PIL import Image, ImageOps

from detectron2.data import transforms as T

MIN_IMAGE_SIDE = 64


def read_metaphase(path: str) -> np.ndarray:
    """
    Read a metaphase image as (H, W, 3) uint8 BGR, whatever the camera wrote: 8-bit gray or
    colour, palette, RGBA / LA (alpha dropped), CMYK, and 16-bit or float images, which are
    scaled to 8 bits by their own range (min..max) instead of being clipped to white.

    Raises:
        ValueError: naming the file, when it cannot be read or is smaller than
        ``MIN_IMAGE_SIDE`` pixels on a side.
    """

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except Exception as e:  # truncated, not an image, missing
        raise ValueError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    if min(im.size) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"{path}: image is {im.size[0]}x{im.size[1]} pixels, smaller than "
            f"{MIN_IMAGE_SIDE} on a side: not a metaphase"
        )
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(im, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        gray = (
            np.zeros(values.shape, np.uint8)
            if hi <= lo
            else np.round((values - lo) / (hi - lo) * 255).astype(np.uint8)
        )
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def test_resize(min_size: int, max_size: int) -> T.ResizeShortestEdge:
    """The test-time resize (``cfg.INPUT.MIN_SIZE_TEST``, ``MAX_SIZE_TEST``), as detectron2's
    ``DefaultPredictor`` and test-time ``DatasetMapper`` build it."""
    return T.ResizeShortestEdge([min_size, min_size], max_size)


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> Tuple[int, int]:
    """(H', W') of an image of (height, width) after :func:`test_resize`."""
    return T.ResizeShortestEdge.get_output_shape(height, width, min_size, max_size)


def resize_for_test(image: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """An (H, W[, C]) uint8 image resized by :func:`test_resize`."""
    return test_resize(min_size, max_size).get_transform(image).apply_image(image)
