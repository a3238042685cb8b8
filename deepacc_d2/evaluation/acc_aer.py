"""
Acc and AER (DeepACC §3.1): the detections that count in each image
(:func:`.selection.select_for_counting`) judged against its chromosomes, one to one.
"""

from typing import Dict, List

import numpy as np

from ..classes import NUM_CLASSES
from .matching import box_iou, greedy_match
from .selection import select_for_counting

__all__ = ["acc_aer_counts", "match_karyotype"]


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
    Judge the kept predictions of one image (from :func:`.selection.select_for_counting`).

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


def acc_aer_counts(
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
