"""
How a detection is matched to a ground-truth chromosome, for AP and for Acc/AER alike.

Shape shorthand: G ground-truth boxes and R detections of one image, K = 24 classes.
Boxes are (x0, y0, x1, y1) in absolute pixels; the area of a box is (x1 - x0) * (y1 - y0),
with no "+1", as in detectron2's ``Boxes`` and in pycocotools. Classes are the canonical
0-based indices of :mod:`deepacc_d2.classes`; there is no background label here.

Matching is greedy by score: detections are visited from the highest score down (a stable
sort, so equal scores keep their input order) and each takes the still-unmatched ground
truth it overlaps most, at IoU >= the threshold. A ground truth is used once. This is the
rule of pycocotools' ``COCOeval.evaluateImg`` (the Pascal VOC devkit instead lets a detection
whose best overlap is an already-matched ground truth become a false positive), chosen so
that the AP here and pycocotools' AP50 see the same true positives.
"""

from typing import Optional

import numpy as np

__all__ = ["box_intersection", "box_iou", "greedy_match", "score_order"]


def box_intersection(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """(N, M) float64 the area each box of ``boxes1`` (N, 4) shares with each of ``boxes2``
    (M, 4), XYXY."""
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # N x M x 2
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    return wh[..., 0] * wh[..., 1]


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """
    Args:
        boxes1 (ndarray): (N, 4) XYXY.
        boxes2 (ndarray): (M, 4) XYXY.

    Returns:
        ndarray: (N, M) float64 intersection over union; 0 where a union is empty.
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    inter = box_intersection(boxes1, boxes2)
    union = area1[:, None] + area2[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def score_order(scores: np.ndarray) -> np.ndarray:
    # Stable, as pycocotools' mergesort: equal scores keep their input order.
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")


def greedy_match(
    ious: np.ndarray,
    scores: np.ndarray,
    iou_thresh: float,
    candidates: Optional[np.ndarray] = None,
    gt_used: Optional[np.ndarray] = None,
) -> np.ndarray:
    """
    One-to-one matching of detections to ground truths, by descending score.

    Args:
        ious (ndarray): (R, G) IoU of each detection with each ground truth.
        scores (ndarray): (R,) detection scores.
        iou_thresh (float): a pair can match at IoU >= this.
        candidates (ndarray or None): (R, G) bool; pairs allowed to match (e.g. same class).
        gt_used (ndarray or None): (G,) bool, ground truths already taken; updated in place.

    Returns:
        ndarray: (R,) int, the matched ground-truth index of each detection, -1 if none.
    """
    num_dets, num_gts = ious.shape
    matched = np.full(num_dets, -1, dtype=np.int64)
    if gt_used is None:
        gt_used = np.zeros(num_gts, dtype=bool)
    if num_gts == 0:
        return matched
    allowed = ious >= iou_thresh
    if candidates is not None:
        allowed &= candidates
    for i in score_order(scores):
        free = allowed[i] & ~gt_used
        if not free.any():
            continue
        overlap = np.where(free, ious[i], -1.0)
        # Among equal best overlaps the later ground truth wins, as in pycocotools.
        j = num_gts - 1 - int(np.argmax(overlap[::-1]))
        matched[i] = j
        gt_used[j] = True
    return matched
