"""
Pictures of what the model did, drawn with detectron2's ``Visualizer``.

Boxes are coloured by Denver group, so a chromosome named with a class of the wrong group
stands out at a glance.
"""

import contextlib
from typing import Dict, Optional

import numpy as np
import torch

from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import ColorMode, Visualizer

from .classes import CLASS_NAMES, DENVER_GROUPS, NUM_CLASSES, denver_group_of
from .evaluation.selection import select_detections

# One colour per Denver group (RGB, 0..255).
GROUP_COLORS = {
    "A": (230, 25, 75),
    "B": (245, 130, 48),
    "C": (60, 180, 75),
    "D": (0, 130, 200),
    "E": (145, 30, 180),
    "F": (240, 50, 230),
    "G": (128, 128, 0),
}
assert set(GROUP_COLORS) == set(DENVER_GROUPS)


def class_colors():
    """(K,) list of RGB tuples: each class gets its Denver group's colour."""
    return [GROUP_COLORS[denver_group_of(k)] for k in range(NUM_CLASSES)]


class _KaryotypeMetadata:
    """The two metadata fields ``Visualizer`` reads."""

    thing_classes = list(CLASS_NAMES)
    thing_colors = class_colors()

    def get(self, key, default=None):
        return getattr(self, key, default)


def draw_predictions(
    image_rgb: np.ndarray, instances, score_thresh: float, nms_thresh: float, scale: float = 1.0
) -> np.ndarray:
    """
    Args:
        image_rgb (ndarray): (H, W, 3) uint8 RGB.
        instances (Instances): model output on the CPU, in the image's coordinates.
        score_thresh, nms_thresh (float): draw the detections that count
            (:func:`.evaluation.selection.select_detections`).

    Returns:
        ndarray: (H', W', 3) uint8 RGB picture.
    """
    instances = select_detections(instances, score_thresh, nms_thresh)
    return draw_detections(
        image_rgb,
        instances.pred_boxes.tensor.numpy(),
        instances.pred_classes.numpy(),
        instances.scores.numpy(),
        scale,
    )


def draw_detections(
    image_rgb: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    scale: float = 1.0,
) -> np.ndarray:
    """
    Draw given detections, (N, 4) XYXY boxes, (N,) classes and scores, with detectron2's
    Visualizer in Denver-group colours.

    Returns:
        ndarray: (H', W', 3) uint8 RGB picture.
    """

    slim = Instances(
        image_rgb.shape[:2],
        pred_boxes=Boxes(torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))),
        scores=torch.as_tensor(np.asarray(scores, np.float32)),
        pred_classes=torch.as_tensor(np.asarray(classes, np.int64)),
    )
    v = Visualizer(
        image_rgb, _KaryotypeMetadata(), scale=scale, instance_mode=ColorMode.SEGMENTATION
    )  # the mode that uses thing_colors
    with _fixed_jitter():
        return v.draw_instance_predictions(slim).get_image()


@contextlib.contextmanager
def _fixed_jitter():
    """The Visualizer jitters each class colour with numpy's global RNG; a fixed seed makes
    the same detections the same picture every time (the RNG's state is given back)."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        yield
    finally:
        np.random.set_state(state)


def draw_ground_truth(image_rgb: np.ndarray, dataset_dict: Dict, scale: float = 1.0) -> np.ndarray:
    d = {k: v for k, v in dataset_dict.items() if k != "file_name"}
    d["annotations"] = [
        {k: v for k, v in a.items() if k != "segmentation"}
        for a in dataset_dict.get("annotations", [])
    ]
    v = Visualizer(
        image_rgb, _KaryotypeMetadata(), scale=scale, instance_mode=ColorMode.SEGMENTATION
    )
    with _fixed_jitter():
        return v.draw_dataset_dict(d).get_image()


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(left.shape[0], right.shape[0])
    out = np.full((h, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    out[: left.shape[0], : left.shape[1]] = left
    out[: right.shape[0], left.shape[1] + gap :] = right
    return out


def draw_comparison(
    image_rgb: np.ndarray,
    instances,
    dataset_dict: Optional[Dict] = None,
    *,
    score_thresh: float,
    nms_thresh: float,
    scale: float = 1.0,
) -> np.ndarray:
    """Ground truth (left, when given) beside the predictions (right; the detections of
    :func:`.evaluation.selection.select_detections`)."""
    pred = draw_predictions(image_rgb, instances, score_thresh, nms_thresh, scale)
    if dataset_dict is None or not dataset_dict.get("annotations"):
        return pred
    return side_by_side(draw_ground_truth(image_rgb, dataset_dict, scale), pred)
