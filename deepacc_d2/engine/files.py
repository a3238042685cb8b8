"""
Files written in one step: to a temporary file beside the target, flushed to disk, then
renamed over it, so a reader (or a crash) never sees half a file. And the one PNG encoding of
the project's pictures.
"""

import io
import os
import threading
from typing import Callable, Union

import numpy as np
from PIL import Image

__all__ = ["png_bytes", "write_atomic"]


def write_atomic(path: str, data: Union[str, bytes, Callable]):
    """
    Args:
        data: text, bytes, or a function that writes into the open binary file it is given
            (e.g. ``lambda f: torch.save(obj, f)``).
    """
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.partial"
    with open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())  # on disk before it replaces the old file
    os.replace(tmp, path)


def png_bytes(picture_rgb: np.ndarray) -> bytes:
    """An RGB picture as PNG, compressed lightly: the same pixels, written several times
    faster than at PIL's default level."""
    buffer = io.BytesIO()
    Image.fromarray(picture_rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
