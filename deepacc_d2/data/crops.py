"""
Chromosome crops for training the second look's classifier
(:mod:`deepacc_d2.modeling.second_look`).

Each labelled box becomes a patch: a square around the box with room for jitter, cut once from
the image as the detector sees it (resized by ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``) and
kept in memory (and cached on disk). Each training batch jitters the boxes as the detector's
boxes differ from the truth, crops them from their patches with the very :func:`crop_boxes` of
inference, turns them by 90 degrees, flips them and varies the stain.

For a classifier with the class "not one chromosome" (label K), each image also gives boxes
that are no chromosome's one box (:func:`negative_boxes`): the kinds of wrong candidate the
detector makes (a fragment of a chromosome, one box around two, a box beside one); and, where
given, the detector's own wrong candidates of that image.
"""

import hashlib
import json
import logging
import math
import os
from typing import Dict, List, Optional

import numpy as np
import torch
from torchvision.ops import box_iou

from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

from ..classes import NUM_CLASSES
from ..engine.files import write_atomic
from ..modeling.crop_classifier import crop_boxes
from .images import read_metaphase, resize_for_test

logger = logging.getLogger(__name__)

CONTEXT = 0.3  # a patch is the box's longest side grown by this fraction on every side
BOX_SCALE_JITTER = 0.1  # training boxes: width and height x exp(U[-j, j])
BOX_SHIFT_JITTER = 0.08  # training boxes: centre moved by U[-j, j] x width, height
STAIN_JITTER = 0.25  # training crops: darkness x U[1 - j, 1 + j]
BRIGHTNESS_JITTER = 15.0  # training crops: + U[-b, b] gray levels
NEGATIVE_IOU = 0.5  # a negative box overlaps every true box at IoU below this (no one box)
FRAGMENT = (0.2, 0.45)  # a fragment keeps U[a, b] of its chromosome's box along the long side
SHIFT = (0.5, 1.0)  # a box beside a chromosome: moved by U[a, b] x its size


def save_atomic(obj, path: str):
    """``torch.save`` written in one step (:func:`..files.write_atomic`): an interrupted
    write never leaves a truncated ``path``."""
    write_atomic(path, lambda f: torch.save(obj, f))


def patch_size(crop_size: int, crop_margin: float) -> int:
    """A patch's side in pixels, at the final crop's scale (box side -> crop_size / (1 + 2m))."""
    return int(math.ceil(crop_size * (1 + 2 * CONTEXT) / (1 + 2 * crop_margin)))


def negative_boxes(boxes: torch.Tensor, count: int, generator) -> torch.Tensor:
    """
    Up to ``count`` boxes that are no chromosome's one box, made from the true ``boxes``
    (G, 4) of one image: a fragment (an end of a box, ``FRAGMENT`` of its long side), a box
    around a chromosome and its nearest neighbour, a box moved beside a chromosome (``SHIFT``),
    in turn; those that overlap a true box at IoU >= ``NEGATIVE_IOU`` are dropped.

    Returns:
        Tensor: (B, 4) XYXY, B <= count.
    """
    g = len(boxes)
    if g == 0 or count <= 0:
        return boxes.new_zeros(0, 4)
    source = torch.randint(0, g, (count,), generator=generator)
    u = torch.rand(count, 3, generator=generator)
    wh = boxes[source, 2:] - boxes[source, :2]
    x0y0, x1y1 = boxes[source, :2].clone(), boxes[source, 2:].clone()
    kind = torch.arange(count) % 3
    # fragments: keep a share of the long side, from one end
    keep = FRAGMENT[0] + u[:, 0] * (FRAGMENT[1] - FRAGMENT[0])
    axis = (wh[:, 1] > wh[:, 0]).long()  # 0: the box is wider than tall
    rows = torch.arange(count)
    cut = wh[rows, axis] * (1 - keep)
    from_start = u[:, 1] < 0.5
    frag0, frag1 = x0y0.clone(), x1y1.clone()
    frag0[rows, axis] += torch.where(from_start, cut, torch.zeros_like(cut))
    frag1[rows, axis] -= torch.where(from_start, torch.zeros_like(cut), cut)
    # pairs: the union with the nearest other chromosome
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    distance = torch.cdist(centre[source], centre)
    distance[rows, source] = float("inf")
    nearest = distance.argmin(dim=1) if g > 1 else source
    pair0 = torch.minimum(x0y0, boxes[nearest, :2])
    pair1 = torch.maximum(x1y1, boxes[nearest, 2:])
    # beside: moved by a share of its size in a random direction
    angle = u[:, 2] * 2 * math.pi
    step = SHIFT[0] + u[:, 0] * (SHIFT[1] - SHIFT[0])
    move = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * step[:, None] * wh
    out = torch.where(
        (kind == 0)[:, None],
        torch.cat([frag0, frag1], dim=1),
        torch.where(
            (kind == 1)[:, None],
            torch.cat([pair0, pair1], dim=1),
            torch.cat([x0y0 + move, x1y1 + move], dim=1),
        ),
    )
    overlap = box_iou(out, boxes).max(dim=1).values
    return out[overlap < NEGATIVE_IOU]


def image_patches(
    dataset_dict: Dict,
    min_size: int,
    max_size: int,
    size: int,
    negatives: float = 0.0,
    wrong_boxes: Optional[np.ndarray] = None,
):
    """
    The patches of one labelled image: of its true boxes, and with ``negatives`` > 0 of about
    ``negatives`` x as many :func:`negative_boxes` (class K = NUM_CLASSES, drawn from a seed of
    the file's name, so a rebuilt cache is the same), and of ``wrong_boxes`` (W, 4) XYXY in the
    image's own pixels, the model's wrong candidates (class K; those at IoU >= NEGATIVE_IOU
    with a true box are dropped).

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
    scale = torch.tensor([new_hw[1] / width, new_hw[0] / height] * 2)  # to the model's pixels
    xyxy = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    boxes = torch.tensor(xyxy, dtype=torch.float32) * scale
    classes = torch.tensor([a["category_id"] for a in annos], dtype=torch.int64)
    extra = boxes.new_zeros(0, 4)
    if negatives > 0:
        seed = int(hashlib.sha256(dataset_dict["file_name"].encode()).hexdigest()[:8], 16)
        generator = torch.Generator().manual_seed(seed)
        extra = negative_boxes(boxes, int(round(negatives * len(boxes))), generator)
    if wrong_boxes is not None and len(wrong_boxes):
        wrong = torch.as_tensor(np.asarray(wrong_boxes), dtype=torch.float32).view(-1, 4) * scale
        extra = torch.cat([extra, wrong[box_iou(wrong, boxes).max(dim=1).values < NEGATIVE_IOU]])
    if len(extra):
        extra[:, 0::2] = extra[:, 0::2].clamp(0, new_hw[1])
        extra[:, 1::2] = extra[:, 1::2].clamp(0, new_hw[0])
        extra = extra[((extra[:, 2:] - extra[:, :2]) >= 2).all(dim=1)]
        boxes = torch.cat([boxes, extra])
        classes = torch.cat([classes, torch.full((len(extra),), NUM_CLASSES)])
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


def build_patches(
    dataset_dicts: List[Dict],
    min_size: int,
    max_size: int,
    size: int,
    negatives: float = 0.0,
    wrong_boxes: Optional[Dict[str, np.ndarray]] = None,
):
    """
    :func:`image_patches` of every image (``wrong_boxes``: per file name, the model's wrong
    candidates); an image that cannot be read is named in the log and left out.

    Returns:
        dict: "patches" (B, size, size) uint8, "boxes" (B, 4), "classes" (B,), "images" (B,)
        int64 index of each patch's image in ``dataset_dicts``, "errors" list[str].
    """
    parts, errors = [], []
    for i, d in enumerate(dataset_dicts):
        try:
            wrong = (wrong_boxes or {}).get(d["file_name"])
            patches, boxes, classes = image_patches(d, min_size, max_size, size, negatives, wrong)
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


def cached_patches(
    dataset_name: str,
    cache_dir: str,
    min_size: int,
    max_size: int,
    size: int,
    negatives: float = 0.0,
    wrong_boxes: Optional[Dict[str, np.ndarray]] = None,
):
    """:func:`build_patches` of a registered dataset, read from ``cache_dir`` when the same
    files were cut the same way before."""

    dicts = DatasetCatalog.get(dataset_name)
    made = [[d["file_name"] for d in dicts], min_size, max_size, size, CONTEXT]
    if negatives > 0:
        made += [negatives, NEGATIVE_IOU, FRAGMENT, SHIFT]
    if wrong_boxes:
        made += [NEGATIVE_IOU, boxes_digest(wrong_boxes)]
    key = hashlib.sha256(json.dumps(made).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"patches_{dataset_name}_{key}.pt")
    if os.path.isfile(path):
        return torch.load(path, weights_only=False)
    data = build_patches(dicts, min_size, max_size, size, negatives, wrong_boxes)
    os.makedirs(cache_dir, exist_ok=True)
    save_atomic(data, path)
    return data


def boxes_digest(boxes_of: Dict[str, np.ndarray]) -> str:
    """A digest of per-file boxes (file names and float32 values): the same boxes, the same
    digest."""
    h = hashlib.sha256()
    for name in sorted(boxes_of):
        h.update(name.encode())
        h.update(np.ascontiguousarray(boxes_of[name], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


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
