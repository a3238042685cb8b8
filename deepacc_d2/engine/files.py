"""
Files written in one step: to a temporary file beside the target, flushed to disk, then
renamed over it, so a reader (or a crash) never sees half a file. The one PNG encoding of
the project's pictures, and the one digest of a file.
"""

import hashlib
import io
import os
import threading
from typing import Callable, Union

import numpy as np
from PIL import Image

__all__ = ["file_sha256", "png_bytes", "write_atomic"]


def file_sha256(path: str) -> str:
    """The sha256 hex digest of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
