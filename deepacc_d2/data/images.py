"""
Reading metaphase images as microscopes write them.
"""

import numpy as np
from PIL import Image, ImageOps

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
