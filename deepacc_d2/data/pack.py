"""
A labelled dataset packed small: each image shrunk to at most ``short_side`` pixels on its
short side (never enlarged) and written as lossy WebP (a gray image from one channel, so it
stays gray), its boxes scaled with it, as a COCO folder that
:func:`.datasets.register_coco_folders` registers by name::

    out_dir/images/<split>/<image file name>.webp
    out_dir/annotations/<split>.json

For carrying a training set where space is short (a machine lent with a size limit on what
travels, docs/training.md). The detector trains at short sides up to its largest
``INPUT.MIN_SIZE_TRAIN``, so packing at that size loses no pixel it would have seen.
"""

import json
import logging
import os
from typing import Dict, List, Sequence

import cv2

from detectron2.structures import BoxMode

from ..classes import coco_categories
from ..engine.files import write_atomic
from .images import read_metaphase

logger = logging.getLogger(__name__)

__all__ = ["pack_dataset", "packed_image"]


def packed_image(path: str, short_side: int, quality: int):
    """
    One image read (:func:`.images.read_metaphase`), shrunk and encoded.

    Returns:
        bytes: the WebP file.
        (float, float): the x and y scale applied to its pixels.
        (int, int): its new height and width.
    """
    image = read_metaphase(path)
    h, w = image.shape[:2]
    scale = min(1.0, short_side / min(h, w))
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    if (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all():
        image = image[:, :, 0]
    ok, data = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode it as WebP")
    return data.tobytes(), (new_w / w, new_h / h), (new_h, new_w)


def pack_dataset(
    dicts: Sequence[Dict], out_dir: str, split: str, short_side: int = 576, quality: int = 70
) -> Dict:
    """
    Write ``dicts`` (detectron2 dataset dicts with XYXY_ABS boxes) packed into ``out_dir``.
    An image that cannot be read is named in the log and left out; the others are written.

    Returns:
        dict: "images" written, "skipped" (file: reason), "bytes" of the images.
    """
    image_dir = os.path.join(out_dir, "images", split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    images: List[Dict] = []
    annotations: List[Dict] = []
    skipped: Dict[str, str] = {}
    total = 0
    for d in dicts:
        try:
            data, (sx, sy), (h, w) = packed_image(d["file_name"], short_side, quality)
        except ValueError as e:
            skipped[d["file_name"]] = str(e)
            logger.warning(f"pack: skipped {e}")
            continue
        image_id = len(images) + 1
        name = f"{os.path.splitext(os.path.basename(d['file_name']))[0]}.webp"
        with open(os.path.join(image_dir, name), "wb") as f:
            f.write(data)
        total += len(data)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for a in d["annotations"]:
            mode = a.get("bbox_mode", BoxMode.XYXY_ABS)
            box = BoxMode.convert(list(a["bbox"]), mode, BoxMode.XYXY_ABS)
            x0, y0, x1, y1 = (float(v) for v in box)
            x0, x1 = min(x0 * sx, w), min(x1 * sx, w)
            y0, y1 = min(y0 * sy, h), min(y1 * sy, h)
            # a tenth of a pixel is finer than any label: short numbers keep the json small
            bbox = [round(v, 1) for v in (x0, y0, x1 - x0, y1 - y0)]
            annotations.append(
                {"image_id": image_id, "category_id": int(a["category_id"]) + 1, "bbox": bbox}
            )
    coco = {"images": images, "annotations": annotations, "categories": coco_categories()}
    write_atomic(
        os.path.join(out_dir, "annotations", f"{split}.json"),
        json.dumps(coco, separators=(",", ":")),
    )
    return {"images": len(images), "skipped": skipped, "bytes": total}
