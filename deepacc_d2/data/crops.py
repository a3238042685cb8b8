"""
Chromosome crops for training the second look's classifier
(:mod:`deepacc_d2.modeling.second_look`).

Each labelled box becomes a patch: a square around the box with room for jitter, cut once from
the image as the detector sees it (resized by ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``) and
kept in memory (and cached on disk). Each training batch jitters the boxes as the detector's
boxes differ from the truth, crops them from their patches with the very :func:`crop_boxes` of
inference, turns them by 90 degrees, flips them and varies the stain.
"""

import hashlib
import json
import logging
import math
import os
from typing import Dict, List

import numpy as np
import torch

from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

from ..engine.files import write_atomic
from ..modeling.second_look import crop_boxes
from .images import read_metaphase, resize_for_test

logger = logging.getLogger(__name__)

CONTEXT = 0.3  # a patch is the box's longest side grown by this fraction on every side
BOX_SCALE_JITTER = 0.1  # training boxes: width and height x exp(U[-j, j])
BOX_SHIFT_JITTER = 0.08  # training boxes: centre moved by U[-j, j] x width, height
STAIN_JITTER = 0.25  # training crops: darkness x U[1 - j, 1 + j]
BRIGHTNESS_JITTER = 15.0  # training crops: + U[-b, b] gray levels


def save_atomic(obj, path: str):
    """``torch.save`` written in one step (:func:`..files.write_atomic`): an interrupted
    write never leaves a truncated ``path``."""
    write_atomic(path, lambda f: torch.save(obj, f))


def patch_size(crop_size: int, crop_margin: float) -> int:
    """A patch's side in pixels, at the final crop's scale (box side -> crop_size / (1 + 2m))."""
    return int(math.ceil(crop_size * (1 + 2 * CONTEXT) / (1 + 2 * crop_margin)))


def image_patches(dataset_dict: Dict, min_size: int, max_size: int, size: int):
    """
    The patches of one labelled image.

    Returns:
        tuple[Tensor, Tensor, Tensor]: (B, size, size) uint8 gray patches, (B, 4) float the
        boxes in patch pixels, (B,) int64 classes.
    """
    image = read_metaphase(dataset_dict["file_name"])
    height, width = image.shape[:2]
    resized = resize_for_test(image, min_size, max_size)  # the pixels the model sees
    gray = torch.from_numpy(resized.astype(np.float32).mean(axis=2))[None, None]
    new_hw = resized.shape[:2]
    annos = [a for a in dataset_dict.get("annotations", []) if not a.get("iscrowd", 0)]
    if not annos:
        return torch.zeros(0, size, size, dtype=torch.uint8), torch.zeros(0, 4), torch.zeros(0)
    boxes = torch.tensor(
        [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos],
        dtype=torch.float32,
    ) * torch.tensor([new_hw[1] / width, new_hw[0] / height] * 2)
    classes = torch.tensor([a["category_id"] for a in annos], dtype=torch.int64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    longest = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values.clamp(min=1.0)
    square = torch.cat([centre - longest[:, None] / 2, centre + longest[:, None] / 2], dim=1)
    patches = crop_boxes(
        gray,
        torch.tensor([new_hw]),
        square,
        torch.zeros(len(boxes), dtype=torch.int64),
        size,
        CONTEXT,
    )
    side = longest * (1 + 2 * CONTEXT)  # the patch's side in image pixels
    origin = centre - side[:, None] / 2
    in_patch = (boxes - origin.repeat(1, 2)) * (size / side)[:, None]
    return patches[:, 0].round().clamp(0, 255).to(torch.uint8), in_patch, classes


def build_patches(dataset_dicts: List[Dict], min_size: int, max_size: int, size: int):
    """
    :func:`image_patches` of every image; an image that cannot be read is named in the log
    and left out.

    Returns:
        dict: "patches" (B, size, size) uint8, "boxes" (B, 4), "classes" (B,), "images" (B,)
        int64 index of each patch's image in ``dataset_dicts``, "errors" list[str].
    """
    parts, errors = [], []
    for i, d in enumerate(dataset_dicts):
        try:
            patches, boxes, classes = image_patches(d, min_size, max_size, size)
        except ValueError as e:
            errors.append(str(e))
            logger.error(str(e))
            continue
        parts.append((patches, boxes, classes, torch.full((len(classes),), i)))
        if (i + 1) % 200 == 0:
            logger.info(f"patches of {i + 1} / {len(dataset_dicts)} images")
    if not parts:
        raise ValueError("no labelled chromosome could be read from the dataset")
    return {
        "patches": torch.cat([p[0] for p in parts]),
        "boxes": torch.cat([p[1] for p in parts]),
        "classes": torch.cat([p[2] for p in parts]),
        "images": torch.cat([p[3] for p in parts]),
        "errors": errors,
    }


def cached_patches(dataset_name: str, cache_dir: str, min_size: int, max_size: int, size: int):
    """:func:`build_patches` of a registered dataset, read from ``cache_dir`` when the same
    files were cut the same way before."""

    dicts = DatasetCatalog.get(dataset_name)
    key = hashlib.sha256(
        json.dumps([[d["file_name"] for d in dicts], min_size, max_size, size, CONTEXT]).encode()
    ).hexdigest()[:16]
    path = os.path.join(cache_dir, f"patches_{dataset_name}_{key}.pt")
    if os.path.isfile(path):
        return torch.load(path, weights_only=False)
    data = build_patches(dicts, min_size, max_size, size)
    os.makedirs(cache_dir, exist_ok=True)
    save_atomic(data, path)
    return data


def jitter_boxes(boxes, generator):
    """Boxes moved and resized as the detector's boxes differ from the truth."""
    size = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    u = torch.rand(len(boxes), 4, generator=generator) * 2 - 1
    centre = centre + u[:, :2] * BOX_SHIFT_JITTER * size
    size = size * torch.exp(u[:, 2:] * BOX_SCALE_JITTER)
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def training_crops(patches, boxes, crop_size: int, crop_margin: float, generator):
    """
    A training batch: jittered boxes cropped from their patches, turned by k x 90 degrees,
    flipped, stain varied.

    Args:
        patches (Tensor): (B, P, P) uint8.
        boxes (Tensor): (B, 4) the true boxes in patch pixels.

    Returns:
        Tensor: (B, 1, S, S) float gray 0-255.
    """
    n = patches.shape[0]
    crops = patch_crops(patches, jitter_boxes(boxes, generator), crop_size, crop_margin)
    turns = torch.randint(0, 4, (n,), generator=generator)
    for k in (1, 2, 3):
        crops[turns == k] = torch.rot90(crops[turns == k], k, dims=(2, 3))
    flip = torch.rand(n, generator=generator) < 0.5
    crops[flip] = crops[flip].flip(3)
    stain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * STAIN_JITTER
    light = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * BRIGHTNESS_JITTER
    return (255 - (255 - crops) * stain + light).clamp(0, 255)


def patch_crops(patches, boxes, crop_size: int, crop_margin: float):
    """Each box cropped from its patch (:func:`crop_boxes`), nothing varied: (B, 1, S, S)."""
    n, p = patches.shape[0], patches.shape[1]
    return crop_boxes(
        patches[:, None].float(),
        torch.tensor([[p, p]]).expand(n, 2),
        boxes,
        torch.arange(n),
        crop_size,
        crop_margin,
    )
