"""
The numbers of DeepACC §3.1 over a dataset, as small numpy functions free of detectron2: AP
per class (mAP on every detection, mAPmax on the top-1 class of each proposal), Acc and AER
(:mod:`.acc_aer`), per class and per Denver group. Matching: :mod:`.matching`; which
detections count: :mod:`.selection`; pycocotools' cross-check: :mod:`.coco_check`. The
definitions: :mod:`.karyotype_evaluation`.
"""

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
from .acc_aer import acc_aer_counts
from .coco_check import coco_average_precision
from .matching import box_iou, greedy_match, score_order

__all__ = [
    "precision_recall",
    "average_precision",
    "per_class_average_precision",
    "compute_karyotype_metrics",
]


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
    order = score_order(scores)
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
            (the paper's mAPmax, see :func:`.selection.top1_mask`); None keeps every detection.
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
    counts = acc_aer_counts(images, iou_thresh, score_thresh, nms_thresh)
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
    that ``classes`` indexes in the (K,) counts of :func:`.acc_aer.acc_aer_counts`."""
    tp, num_pred = counts["TP"][classes].sum(), counts["num_pred"][classes].sum()
    errors = counts["FP"][classes].sum() + counts["FN"][classes].sum()
    return _percent(_ratio(tp, num_pred)), _percent(_ratio(errors, counts["num_gt"][classes].sum()))


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _percent(value: float) -> float:
    return 100.0 * float(value)
