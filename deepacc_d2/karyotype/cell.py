"""
One cell's karyotype record: the chromosomes the model names (top-1 class of each proposal,
score >= p, class-agnostic NMS: what Acc/AER judge), their counts, the numerical ISCN call and
the review flags that send a cell to a person.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from ..classes import CLASS_NAMES, NUM_CLASSES, denver_group_of
from ..evaluation.metrics import box_iou
from .iscn import AUTOSOMES, numerical_karyotype


@dataclass(frozen=True)
class ReviewRules:
    """The thresholds of the review flags (``cfg.TEST.KARYOTYPE``; see config.py)."""

    score_thresh: float  # p: a detection counts at score >= p
    nms_thresh: float  # class-agnostic NMS between counted detections
    low_score: float  # a counted detection below this is a low-confidence call
    low_score_share: float  # flag the cell when more than this share is low-confidence
    overlap_iou: float  # flag two counted detections overlapping at IoU >= this
    ambiguity_margin: float  # flag top-2 classes of one Denver group closer than this

    @classmethod
    def from_config(cls, cfg):
        k = cfg.TEST.KARYOTYPE
        return cls(
            k.SCORE_THRESH,
            k.NMS_THRESH,
            k.REVIEW_LOW_SCORE,
            k.REVIEW_LOW_SCORE_SHARE,
            k.REVIEW_OVERLAP_IOU,
            k.REVIEW_AMBIGUITY_MARGIN,
        )


def counted_detections(instances, rules: ReviewRules) -> Dict[str, np.ndarray]:
    """
    Args:
        instances (Instances): a model's output for one image, on the CPU.

    Returns:
        dict: "boxes" (N, 4), "classes" (N,), "scores" (N,), "class_scores" (N, K) of the
        detections that are counted, highest score first.
    """
    from ..visualize import select_for_display

    kept = select_for_display(instances, rules.score_thresh, rules.nms_thresh)
    classes = kept.pred_classes.numpy().astype(np.int64)
    if kept.has("class_scores"):
        class_scores = kept.class_scores.numpy()[:, :NUM_CLASSES].astype(np.float64)
    else:  # a model without class vectors: only the named class is known
        class_scores = np.zeros((len(kept), NUM_CLASSES))
        class_scores[np.arange(len(kept)), classes] = kept.scores.numpy()
    return {
        "boxes": kept.pred_boxes.tensor.numpy().astype(np.float64),
        "classes": classes,
        "scores": kept.scores.numpy().astype(np.float64),
        "class_scores": class_scores,
    }


def review_flags(
    detections: Dict[str, np.ndarray], counts: Dict[str, int], rules: ReviewRules
) -> List[Dict]:
    """
    Reasons to send the cell to a person, each {"flag", "message", "detections": [indices]}.
    """
    flags = []
    total = int(sum(counts.values()))
    if total != 46:
        flags.append({"flag": "count", "message": f"{total} chromosomes, not 46", "detections": []})
    classes = detections["classes"]
    for name in AUTOSOMES:
        if counts[name] == 1 or counts[name] >= 3:
            flags.append(
                {
                    "flag": "class_count",
                    "message": f"chromosome {name}: {counts[name]}",
                    "detections": np.nonzero(classes == CLASS_NAMES.index(name))[0].tolist(),
                }
            )
    sex = "X" * counts["X"] + "Y" * counts["Y"]
    if sex not in ("XX", "XY"):
        flags.append(
            {
                "flag": "sex_chromosomes",
                "message": f"sex chromosomes {sex or 'none'}",
                "detections": np.nonzero(classes >= 22)[0].tolist(),
            }
        )
    scores = detections["scores"]
    low = np.nonzero(scores < rules.low_score)[0]
    if len(scores) and len(low) > rules.low_score_share * len(scores):
        flags.append(
            {
                "flag": "low_confidence",
                "message": f"{len(low)} of {len(scores)} calls score < {rules.low_score}",
                "detections": low.tolist(),
            }
        )
    ious = box_iou(detections["boxes"], detections["boxes"])
    i, j = np.nonzero(np.triu(ious >= rules.overlap_iou, k=1))
    if len(i):
        flags.append(
            {
                "flag": "overlap",
                "message": f"{len(i)} pair(s) of chromosomes overlap (IoU >= {rules.overlap_iou})",
                "detections": sorted(set(i.tolist()) | set(j.tolist())),
            }
        )
    top2 = np.argsort(-detections["class_scores"], axis=1, kind="stable")[:, :2]
    ambiguous = [
        d
        for d, (a, b) in enumerate(top2)
        if denver_group_of(int(a)) == denver_group_of(int(b))
        and detections["class_scores"][d, a] - detections["class_scores"][d, b]
        < rules.ambiguity_margin
    ]
    if ambiguous:
        flags.append(
            {
                "flag": "within_group_ambiguity",
                "message": f"{len(ambiguous)} call(s) with a close second class of the "
                f"same Denver group",
                "detections": ambiguous,
            }
        )
    return flags


def cell_record(detections: Dict[str, np.ndarray], rules: ReviewRules) -> Dict:
    """
    The karyotype record of one cell (JSON-able).

    Args:
        detections (dict): from :func:`counted_detections`.

    Returns:
        dict: "detections" (box, class, score, top-3 classes with scores), "counts" per class,
        "total", "sex_chromosomes", "karyotype" (ISCN, or None when none can be written),
        "flags", "needs_review".
    """
    names = [CLASS_NAMES[k] for k in detections["classes"]]
    counts = Counter(names)
    counts = {name: int(counts.get(name, 0)) for name in CLASS_NAMES}
    records = []
    for d, name in enumerate(names):
        top3 = np.argsort(-detections["class_scores"][d], kind="stable")[:3]
        records.append(
            {
                "bbox_xyxy": [round(float(v), 2) for v in detections["boxes"][d]],
                "class": name,
                "score": round(float(detections["scores"][d]), 4),
                "top3": [
                    [CLASS_NAMES[k], round(float(detections["class_scores"][d, k]), 4)]
                    for k in top3
                ],
            }
        )
    try:
        iscn = numerical_karyotype(counts)
    except ValueError:
        iscn = None
    flags = review_flags(detections, counts, rules)
    return {
        "detections": records,
        "counts": counts,
        "total": int(sum(counts.values())),
        "sex_chromosomes": "X" * counts["X"] + "Y" * counts["Y"],
        "karyotype": iscn,
        "flags": flags,
        "needs_review": bool(flags) or iscn is None,
    }
