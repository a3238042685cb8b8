"""
Reading metaphase images as microscopes write them.
"""

import numpy as np

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
    from PIL import Image, ImageOps

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


def readable(dataset_dicts, dataset_name: str = "dataset"):
    """
    The dataset dicts whose image file can be read (:func:`read_metaphase`); the others are
    named in one warning. Dicts without a file (on-the-fly synthetic) are kept.

    Returns:
        list[dict]
    """
    import logging

    kept, bad = [], []
    for d in dataset_dicts:
        if "file_name" not in d:
            kept.append(d)
            continue
        try:
            read_metaphase(d["file_name"])
        except ValueError as e:
            bad.append(str(e))
            continue
        kept.append(d)
    if bad:
        logging.getLogger(__name__).warning(
            f"{dataset_name}: {len(bad)} image(s) cannot be read and are left out of the "
            f"evaluation:\n  " + "\n  ".join(bad)
        )
    return kept


def build_eval_loader(cfg, dataset_name: str):
    """detectron2's test loader over the readable images of a registered dataset, read with
    the same mapper as training (16-bit, RGBA, ... images; on-the-fly synthetic ones)."""
    from detectron2.data import DatasetCatalog, build_detection_test_loader

    from .mapper import MetaphaseDatasetMapper

    dicts = readable(DatasetCatalog.get(dataset_name), dataset_name)
    return build_detection_test_loader(
        dicts,
        mapper=MetaphaseDatasetMapper(cfg, is_train=False),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
