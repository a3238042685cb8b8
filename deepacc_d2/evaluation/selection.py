"""
Which detections count: the one rule that metrics (Acc, AER), pictures, the karyotype step
and the review page share. Each proposal gives one name, its top-1 class
(:func:`detection_subsets`); those scoring at least p are kept and class-agnostic NMS removes
duplicates (:func:`select_for_counting`, DeepACC §3.1).
"""

from typing import Optional, Tuple

import numpy as np
import torch

from ..classes import NUM_CLASSES
from .matching import box_iou, score_order

__all__ = ["detection_subsets", "nms", "select_detections", "select_for_counting", "top1_mask"]


def top1_mask(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    class_scores: Optional[np.ndarray] = None,
) -> np.ndarray:
    """
    Which detections are the top-1 class of the proposal they came from (paper: mAPmax
    "only takes the Top 1 score bounding box of each proposal").

    With ``class_scores`` (the DeepACC ROI heads attach the proposal's foreground
    probability vector to each detection), a detection is top-1 when its class is the
    argmax of that vector. Without it, detections whose boxes are exactly equal are taken
    to come from one proposal and only the highest-scoring one is kept. That is right for
    class-agnostic box regression (RetinaNet's shared anchor boxes, Faster R-CNN with
    ``CLS_AGNOSTIC_BBOX_REG``); with class-specific regression every class moves the box
    differently, so no two boxes are equal and every detection counts as top-1.

    Args:
        boxes (ndarray): (R, 4).
        scores (ndarray): (R,).
        classes (ndarray): (R,) int.
        class_scores (ndarray or None): (R, K) per-class probabilities of each detection's
            proposal.

    Returns:
        ndarray: (R,) bool.
    """
    classes = np.asarray(classes, dtype=np.int64)
    if class_scores is not None:
        return np.asarray(class_scores).argmax(axis=1) == classes
    keep = np.zeros(len(classes), dtype=bool)
    if len(classes) == 0:
        return keep
    _, proposal = np.unique(np.asarray(boxes).reshape(-1, 4), axis=0, return_inverse=True)
    proposal = proposal.reshape(-1)
    for p in np.unique(proposal):
        members = np.nonzero(proposal == p)[0]
        keep[members[score_order(np.asarray(scores)[members])[0]]] = True
    return keep


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """
    Class-agnostic greedy non-maximum suppression: a box is dropped when its IoU with a
    higher-scoring kept box is > ``iou_thresh`` (the ``torchvision.ops.nms`` convention).

    Returns:
        ndarray: indices of the kept boxes, highest score first.
    """
    order = score_order(scores)
    ious = box_iou(boxes, boxes)
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= ious[i] > iou_thresh
    return np.asarray(keep, dtype=np.int64)


def select_for_counting(
    boxes: np.ndarray, scores: np.ndarray, top1: np.ndarray, score_thresh: float, nms_thresh: float
) -> np.ndarray:
    """
    The predictions that Acc and AER judge (§3.1): top-1 detections with score >=
    ``score_thresh`` (p), then class-agnostic NMS at ``nms_thresh``.

    Returns:
        ndarray: indices into the detections, highest score first.
    """
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.nonzero(np.asarray(top1, dtype=bool) & (scores >= score_thresh))[0]
    return candidates[nms(np.asarray(boxes)[candidates], scores[candidates], nms_thresh)]


def detection_subsets(instances) -> Tuple[np.ndarray, np.ndarray]:
    """
    Which of a model's detections mAPmax / Acc / AER and mAP judge.

    Args:
        instances (Instances): on the CPU; the DeepACC heads' ``top1`` and ``all_classes``
            fields when present (see ``DeepACCOutputLayers.inference``).

    Returns:
        top1, all_classes (ndarray, ndarray): (R,) bool each. Without those fields: top-1 by
        :func:`top1_mask` (``class_scores``, or equal boxes) and every detection.
    """
    if instances.has("top1") and instances.has("all_classes"):
        return instances.top1.numpy().astype(bool), instances.all_classes.numpy().astype(bool)
    class_scores = None
    if instances.has("class_scores"):
        # (R, K) foreground probabilities; a trailing background column is ignored.
        class_scores = instances.class_scores.numpy()[:, :NUM_CLASSES]
    top1 = top1_mask(
        instances.pred_boxes.tensor.numpy(),
        instances.scores.numpy(),
        instances.pred_classes.numpy(),
        class_scores,
    )
    return top1, np.ones(len(instances), dtype=bool)


def select_detections(instances, score_thresh: float, nms_thresh: float):
    """
    What a cytologist reads, one name per chromosome: the detections of
    :func:`select_for_counting` among a model's output.

    Args:
        instances (Instances): a model's output for one image, on the CPU.

    Returns:
        Instances: the kept detections, highest score first.
    """
    top1, _ = detection_subsets(instances)
    keep = select_for_counting(
        instances.pred_boxes.tensor.numpy(),
        instances.scores.numpy(),
        top1,
        score_thresh,
        nms_thresh,
    )
    return instances[torch.as_tensor(keep, dtype=torch.long)]
