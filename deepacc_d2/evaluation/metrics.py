"""
The metric math of DeepACC §3.1 as small numpy functions, free of detectron2.

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
from typing import Dict, Optional, Tuple

import numpy as np

__all__ = [
    "box_iou",
    "greedy_match",
    "precision_recall",
    "average_precision",
    "per_class_average_precision",
    "top1_mask",
    "nms",
    "select_for_counting",
    "match_karyotype",
]


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
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # N x M x 2
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _score_order(scores: np.ndarray) -> np.ndarray:
    # Stable, as pycocotools' mergesort: equal scores keep their input order.
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")


def greedy_match(ious: np.ndarray, scores: np.ndarray, iou_thresh: float,
                 candidates: Optional[np.ndarray] = None,
                 gt_used: Optional[np.ndarray] = None) -> np.ndarray:
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
    for i in _score_order(scores):
        free = allowed[i] & ~gt_used
        if not free.any():
            continue
        overlap = np.where(free, ious[i], -1.0)
        # Among equal best overlaps the later ground truth wins, as in pycocotools.
        j = num_gts - 1 - int(np.argmax(overlap[::-1]))
        matched[i] = j
        gt_used[j] = True
    return matched


def precision_recall(scores: np.ndarray, is_tp: np.ndarray,
                     num_gt: int) -> Tuple[np.ndarray, np.ndarray]:
    """
    Args:
        scores (ndarray): (D,) scores of all detections of one class over the dataset.
        is_tp (ndarray): (D,) bool, whether each one matched a ground truth.
        num_gt (int): ground truths of that class, > 0.

    Returns:
        recall, precision (ndarray, ndarray): (D,) each, after each detection in score order.
    """
    order = _score_order(scores)
    hits = np.asarray(is_tp, dtype=bool)[order]
    tp = np.cumsum(hits).astype(np.float64)
    fp = np.cumsum(~hits).astype(np.float64)
    return tp / num_gt, tp / (tp + fp)


def average_precision(recall: np.ndarray, precision: np.ndarray,
                      interpolation: str = "all") -> float:
    """
    Area under the monotone (interpolated) precision-recall curve.

    The interpolated precision at recall r is the best precision at any recall >= r.

    Args:
        recall, precision (ndarray): (D,) from :func:`precision_recall`.
        interpolation (str): "all": every point (Pascal VOC 2010+): the exact area
            sum_i (r_i - r_{i-1}) * p_interp(r_i), r_{-1} = 0. "coco101": pycocotools' mean
            of p_interp at the 101 recalls 0, 0.01, ..., 1 (0 past the highest recall).
            Because p_interp is non-increasing, the two differ by at most 1/100 (one AP
            point): the 101-point mean is a Riemann sum of the same step function.

    Returns:
        float: AP in [0, 1]; 0 when there are no detections.
    """
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if interpolation == "all":
        return float(np.sum(np.diff(recall, prepend=0.0) * envelope))
    if interpolation == "coco101":
        # The same expression as pycocotools builds its recThrs with, so the samples agree
        # bit for bit.
        thresholds = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1, endpoint=True)
        idx = np.searchsorted(recall, thresholds, side="left")
        inside = idx < len(recall)
        sampled = np.zeros(len(thresholds))
        sampled[inside] = envelope[idx[inside]]
        return float(np.mean(sampled))
    raise ValueError(f"interpolation must be 'all' or 'coco101', got {interpolation!r}")


def per_class_average_precision(images, num_classes: int, iou_thresh: float,
                                subset: Optional[str] = None,
                                interpolations=("all",)) -> Dict[str, np.ndarray]:
    """
    Per-class AP at one IoU threshold over a dataset.

    Args:
        images (list[dict]): one per image, with "gt_boxes" (G, 4), "gt_classes" (G,),
            "boxes" (R, 4), "scores" (R,), "classes" (R,) and, for ``subset``, that
            (R,) bool mask.
        num_classes (int): K.
        iou_thresh (float): IoU for a true positive.
        subset (str or None): the key of a bool mask of the detections to keep, e.g. "top1"
            (the paper's mAPmax, see :func:`top1_mask`); None keeps every detection.
        interpolations (tuple[str]): which :func:`average_precision` variants to compute.

    Returns:
        dict: interpolation -> (K,) AP in [0, 1], NaN for a class without ground truth;
        and "num_gt" -> (K,) int.
    """
    scores_of = [[] for _ in range(num_classes)]
    hits_of = [[] for _ in range(num_classes)]
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for im in images:
        gt_classes = np.asarray(im["gt_classes"], dtype=np.int64)
        classes = np.asarray(im["classes"], dtype=np.int64)
        scores = np.asarray(im["scores"], dtype=np.float64)
        keep = np.asarray(im[subset], dtype=bool) if subset else np.ones(len(classes), bool)
        num_gt += np.bincount(gt_classes, minlength=num_classes)
        ious = box_iou(im["boxes"], im["gt_boxes"])  # R x G
        for k in np.unique(classes[keep]):
            dets = np.nonzero(keep & (classes == k))[0]
            gts = np.nonzero(gt_classes == k)[0]
            matched = greedy_match(ious[np.ix_(dets, gts)], scores[dets], iou_thresh)
            scores_of[k].append(scores[dets])
            hits_of[k].append(matched >= 0)
    out = {name: np.full(num_classes, np.nan) for name in interpolations}
    for k in range(num_classes):
        if num_gt[k] == 0:
            continue
        # Concatenated in image order, then stably sorted: the tie order of pycocotools.
        scores = np.concatenate(scores_of[k]) if scores_of[k] else np.zeros(0)
        hits = np.concatenate(hits_of[k]) if hits_of[k] else np.zeros(0, dtype=bool)
        recall, precision = precision_recall(scores, hits, num_gt[k])
        for name in interpolations:
            out[name][k] = average_precision(recall, precision, name)
    out["num_gt"] = num_gt
    return out


def top1_mask(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
              class_scores: Optional[np.ndarray] = None) -> np.ndarray:
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
        keep[members[_score_order(np.asarray(scores)[members])[0]]] = True
    return keep


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """
    Class-agnostic greedy non-maximum suppression: a box is dropped when its IoU with a
    higher-scoring kept box is > ``iou_thresh`` (the ``torchvision.ops.nms`` convention).

    Returns:
        ndarray: indices of the kept boxes, highest score first.
    """
    order = _score_order(scores)
    ious = box_iou(boxes, boxes)
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= ious[i] > iou_thresh
    return np.asarray(keep, dtype=np.int64)


def select_for_counting(boxes: np.ndarray, scores: np.ndarray, top1: np.ndarray,
                        score_thresh: float, nms_thresh: float) -> np.ndarray:
    """
    The predictions that Acc and AER judge (§3.1): top-1 detections with score >=
    ``score_thresh`` (p), then class-agnostic NMS at ``nms_thresh``.

    Returns:
        ndarray: indices into the detections, highest score first.
    """
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.nonzero(np.asarray(top1, dtype=bool) & (scores >= score_thresh))[0]
    return candidates[nms(np.asarray(boxes)[candidates], scores[candidates], nms_thresh)]


def match_karyotype(gt_boxes: np.ndarray, gt_classes: np.ndarray, boxes: np.ndarray,
                    scores: np.ndarray, classes: np.ndarray, iou_thresh: float,
                    num_classes: int = 24) -> Dict[str, np.ndarray]:
    """
    Judge the kept predictions of one image (from :func:`select_for_counting`).

    - TP: a prediction matched, greedily by score, to a still-unmatched ground truth of
      its own class at IoU >= ``iou_thresh``.
    - FP: every other prediction (a wrong class on a right box, a duplicate, a box on
      nothing).
    - FN: a ground truth that no kept prediction was matched to, one to one: not by a TP,
      nor, in a second greedy matching of the FPs to the ground truths left over (any
      class), by a wrong-class prediction on its box. A right box with the wrong class is
      therefore one error (an FP), not two; and one prediction never finds two touching
      chromosomes.

    The confusion matrix holds the matched boxes: the TPs on its diagonal, and, off it,
    each FP matched (greedily by score, any class) to a ground truth that no TP took.
    Its diagonal sums to TP; its off-diagonal entries are the misclassifications.

    Returns:
        dict with
            "is_tp" (R,) bool,
            "is_fn" (G,) bool,
            "gt_index" (R,) int: the ground truth each prediction sits on in the
                confusion matrix, -1 for a duplicate or a box on nothing,
            "confusion" (K, K) int64, rows = true class, columns = predicted class.
    """
    gt_classes = np.asarray(gt_classes, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    ious = box_iou(boxes, gt_boxes)  # R x G
    gt_used = np.zeros(len(gt_classes), dtype=bool)
    same_class = classes[:, None] == gt_classes[None, :]
    gt_index = greedy_match(ious, scores, iou_thresh, candidates=same_class, gt_used=gt_used)
    is_tp = gt_index >= 0
    # The FPs then claim the ground truths left over, whatever the class.
    wrong = np.nonzero(~is_tp)[0]
    gt_index[wrong] = greedy_match(ious[wrong], np.asarray(scores)[wrong], iou_thresh,
                                   gt_used=gt_used)
    is_fn = ~gt_used
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    on_gt = gt_index >= 0
    np.add.at(confusion, (gt_classes[gt_index[on_gt]], classes[on_gt]), 1)
    return {"is_tp": is_tp, "is_fn": is_fn, "gt_index": gt_index, "confusion": confusion}
