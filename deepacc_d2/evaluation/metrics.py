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

Over a dataset, :func:`compute_karyotype_metrics` turns these into the evaluator's numbers
(their definitions: :mod:`.karyotype_evaluation`), and :func:`coco_average_precision` runs
pycocotools on the same detections as a cross-check.
"""

import contextlib
import io
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..classes import (
    CLASS_NAMES,
    DENVER_GROUPS,
    NUM_CLASSES,
    denver_group_of,
    group_adjacency_matrix,
)

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
    "karyotype_counts",
    "compute_karyotype_metrics",
    "coco_average_precision",
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


def precision_recall(
    scores: np.ndarray, is_tp: np.ndarray, num_gt: int
) -> Tuple[np.ndarray, np.ndarray]:
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


def average_precision(
    recall: np.ndarray, precision: np.ndarray, interpolation: str = "all"
) -> float:
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


def per_class_average_precision(
    images,
    num_classes: int,
    iou_thresh: float,
    subset: Optional[str] = None,
    interpolations=("all",),
) -> Dict[str, np.ndarray]:
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


def match_karyotype(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_thresh: float,
    num_classes: int = NUM_CLASSES,
) -> Dict[str, np.ndarray]:
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
    gt_index[wrong] = greedy_match(
        ious[wrong], np.asarray(scores)[wrong], iou_thresh, gt_used=gt_used
    )
    is_fn = ~gt_used
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    on_gt = gt_index >= 0
    np.add.at(confusion, (gt_classes[gt_index[on_gt]], classes[on_gt]), 1)
    return {"is_tp": is_tp, "is_fn": is_fn, "gt_index": gt_index, "confusion": confusion}


# ------------------------------------------------------------------ over a dataset
def compute_karyotype_metrics(
    images: List[Dict],
    iou_thresh: float,
    score_thresh: float,
    nms_thresh: float,
    coco_check: bool = True,
) -> Tuple["OrderedDict", Dict]:
    """
    Args:
        images (list[dict]): per image "gt_boxes" (G, 4) XYXY, "gt_classes" (G,),
            "boxes" (R, 4), "scores" (R,), "classes" (R,), "top1" (R,) bool and optionally
            "all_classes" (R,) bool (the detections mAP uses; default all), "image_id",
            "file_name".
        iou_thresh, score_thresh, nms_thresh (float): see :class:`KaryotypeEvaluator`.
        coco_check (bool): run pycocotools for COCO_AP* (most of the time taken); NaN if not.

    Returns:
        metrics (OrderedDict): flat name -> float (see :mod:`.karyotype_evaluation`).
        details (dict): confusion matrix, per-class counts and per-image counts, for files.
    """
    images = [
        dict(im, all_classes=im.get("all_classes", np.ones(len(im["classes"]), bool)))
        for im in images
    ]
    ap = per_class_average_precision(
        images, NUM_CLASSES, iou_thresh, subset="all_classes", interpolations=("all", "coco101")
    )
    ap_max = per_class_average_precision(images, NUM_CLASSES, iou_thresh, subset="top1")["all"]
    counts = karyotype_counts(images, iou_thresh, score_thresh, nms_thresh)
    if coco_check:
        coco = coco_average_precision(images, NUM_CLASSES, subset="all_classes")
    else:
        coco = {
            "AP": np.nan,
            "AP50": np.nan,
            "AP75": np.nan,
            "AP50_per_class": np.full(NUM_CLASSES, np.nan),
        }

    metrics = _dataset_metrics(ap, ap_max, counts, coco)
    metrics.update(_class_and_group_metrics(ap["all"], ap_max, counts))
    details = {
        "thresholds": {"iou": iou_thresh, "score": score_thresh, "nms": nms_thresh},
        "class_names": list(CLASS_NAMES),
        "confusion": counts["confusion"].tolist(),
        "per_class": {
            name: {key: int(counts[key][k]) for key in ("num_gt", "num_pred", "TP", "FP", "FN")}
            for k, name in enumerate(CLASS_NAMES)
        },
        "per_image": counts["per_image"],
        "coco_ap50_per_class": coco["AP50_per_class"].tolist(),
    }
    return metrics, details


def karyotype_counts(
    images: List[Dict], iou_thresh: float, score_thresh: float, nms_thresh: float
) -> Dict:
    """
    The counts behind Acc and AER: in each image the predictions of
    :func:`select_for_counting`, judged by :func:`match_karyotype`.

    Args:
        images (list[dict]): as :func:`compute_karyotype_metrics` takes them.

    Returns:
        dict: (K,) int64 per class: "num_gt" and "FN" by true class, "num_pred", "TP" and
        "FP" by predicted class; "confusion" (K, K), rows = true class; "per_image": a dict
        per image (image_id, file_name, num_gt, num_pred, TP, FP, FN).
    """
    K = NUM_CLASSES
    counts = {key: np.zeros(K, dtype=np.int64) for key in ("num_gt", "num_pred", "TP", "FN")}
    confusion = np.zeros((K, K), dtype=np.int64)
    per_image = []
    for im in images:
        keep = select_for_counting(im["boxes"], im["scores"], im["top1"], score_thresh, nms_thresh)
        classes = np.asarray(im["classes"], dtype=np.int64)[keep]
        gt_classes = np.asarray(im["gt_classes"], dtype=np.int64)
        judged = match_karyotype(
            im["gt_boxes"],
            gt_classes,
            np.asarray(im["boxes"])[keep],
            np.asarray(im["scores"])[keep],
            classes,
            iou_thresh,
            K,
        )
        confusion += judged["confusion"]
        counts["num_gt"] += np.bincount(gt_classes, minlength=K)
        counts["num_pred"] += np.bincount(classes, minlength=K)
        counts["TP"] += np.bincount(classes[judged["is_tp"]], minlength=K)
        counts["FN"] += np.bincount(gt_classes[judged["is_fn"]], minlength=K)
        tp = int(judged["is_tp"].sum())
        per_image.append(
            {
                "image_id": str(im.get("image_id", "")),
                "file_name": str(im.get("file_name", "")),
                "num_gt": int(len(gt_classes)),
                "num_pred": int(len(keep)),
                "TP": tp,
                "FP": int(len(keep)) - tp,
                "FN": int(judged["is_fn"].sum()),
            }
        )
    counts["FP"] = counts["num_pred"] - counts["TP"]
    return dict(counts, confusion=confusion, per_image=per_image)


def _dataset_metrics(ap: Dict, ap_max: np.ndarray, counts: Dict, coco: Dict) -> "OrderedDict":
    """The numbers over all classes, in the order the tables and files show them."""
    confusion = counts["confusion"]
    misclassified = confusion - np.diag(np.diag(confusion))
    same_group = group_adjacency_matrix() | np.eye(NUM_CLASSES, dtype=bool)
    count_error = np.array([r["num_pred"] - r["num_gt"] for r in counts["per_image"]])
    m = OrderedDict()
    m["mAP"] = _percent(_nanmean(ap["all"]))
    m["mAPmax"] = _percent(_nanmean(ap_max))
    m["Acc"], m["AER"] = _acc_aer(counts, slice(None))
    m["COCO_AP"] = _percent(coco["AP"])
    m["COCO_AP50"] = _percent(coco["AP50"])
    m["COCO_AP75"] = _percent(coco["AP75"])
    m["mAP101"] = _percent(_nanmean(ap["coco101"]))
    # Share of the misclassified boxes (off-diagonal) whose wrong class is in the true
    # class's Denver group: the errors the GIA loss (Eq. 3) targets.
    m["InGroupErr"] = _percent(_ratio(misclassified[same_group].sum(), misclassified.sum()))
    m["CountExact"] = _percent(float(np.mean(count_error == 0)))
    m["CountMAE"] = float(np.mean(np.abs(count_error)))
    for key in ("TP", "FP", "FN", "num_gt", "num_pred"):
        m[key] = float(counts[key].sum())
    return m


def _class_and_group_metrics(ap: np.ndarray, ap_max: np.ndarray, counts: Dict) -> "OrderedDict":
    """AP, APmax, Acc and AER of each class ("AP-1", ...), then of each Denver group
    ("AP-groupA", ...)."""
    by_class = [_acc_aer(counts, [k]) for k in range(NUM_CLASSES)]
    columns = (
        ("AP", [_percent(v) for v in ap]),
        ("APmax", [_percent(v) for v in ap_max]),
        ("Acc", [acc for acc, _ in by_class]),
        ("AER", [aer for _, aer in by_class]),
    )
    m = OrderedDict()
    for metric, values in columns:
        m.update((f"{metric}-{name}", value) for name, value in zip(CLASS_NAMES, values))
    for g in DENVER_GROUPS:
        members = np.array([denver_group_of(k) == g for k in range(NUM_CLASSES)])
        m[f"AP-group{g}"] = _percent(_nanmean(ap[members]))
        m[f"APmax-group{g}"] = _percent(_nanmean(ap_max[members]))
        m[f"Acc-group{g}"], m[f"AER-group{g}"] = _acc_aer(counts, members)
    return m


def _acc_aer(counts: Dict, classes) -> Tuple[float, float]:
    """Acc = TP / predictions and AER = (FP + FN) / ground truths (percents) over the classes
    that ``classes`` indexes in the (K,) counts of :func:`karyotype_counts`."""
    tp, num_pred = counts["TP"][classes].sum(), counts["num_pred"][classes].sum()
    errors = counts["FP"][classes].sum() + counts["FN"][classes].sum()
    return _percent(_ratio(tp, num_pred)), _percent(_ratio(errors, counts["num_gt"][classes].sum()))


def coco_average_precision(
    images: List[Dict], num_classes: int, subset: Optional[str] = None
) -> Dict:
    """
    pycocotools' bbox AP (IoU 0.50:0.95), AP50 and AP75 of the same detections, with the
    default parameters (101 recall points, maxDets 100 per image and class, area "all").

    Args:
        subset (str or None): as in :func:`.metrics.per_class_average_precision`.

    Returns:
        dict: "AP", "AP50", "AP75" in [0, 1] (NaN without ground truth) and
        "AP50_per_class" (K,) (NaN for a class without ground truth).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_annotations, detections = [], []
    for image_id, im in enumerate(images):
        for box, k in zip(np.asarray(im["gt_boxes"]).reshape(-1, 4), im["gt_classes"]):
            xywh = _xyxy_to_xywh(box)
            # ids start at 1: pycocotools reads id 0 as "unmatched".
            gt_annotations.append(
                {
                    "id": len(gt_annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(k) + 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
        keep = np.asarray(im[subset], bool) if subset else np.ones(len(im["classes"]), bool)
        for box, k, s in zip(
            np.asarray(im["boxes"]).reshape(-1, 4)[keep],
            np.asarray(im["classes"])[keep],
            np.asarray(im["scores"])[keep],
        ):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(k) + 1,
                    "bbox": _xyxy_to_xywh(box),
                    "score": float(s),
                }
            )

    nan = float("nan")
    result = {"AP": nan, "AP50": nan, "AP75": nan, "AP50_per_class": np.full(num_classes, nan)}
    if not gt_annotations:
        return result
    has_gt = np.bincount([a["category_id"] - 1 for a in gt_annotations], minlength=num_classes) > 0
    if not detections:
        result.update(AP=0.0, AP50=0.0, AP75=0.0, AP50_per_class=np.where(has_gt, 0.0, nan))
        return result

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": i} for i in range(len(images))],
            "categories": [{"id": k + 1, "name": CLASS_NAMES[k]} for k in range(num_classes)],
            "annotations": gt_annotations,
        }
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    # precision: (T iou, R recall, K, A area, M maxDets); -1 where a class has no ground truth
    precision = coco_eval.eval["precision"][0, :, :, 0, -1]
    ap50_per_class = np.where(precision.min(axis=0) > -1, precision.mean(axis=0), nan)
    stats = coco_eval.stats
    result.update(
        AP=float(stats[0]),
        AP50=float(stats[1]),
        AP75=float(stats[2]),
        AP50_per_class=ap50_per_class,
    )
    return result


def _xyxy_to_xywh(box) -> List[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _percent(value: float) -> float:
    return 100.0 * float(value)
