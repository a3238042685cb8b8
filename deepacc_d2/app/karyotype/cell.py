"""
One cell's karyotype record: the chromosomes the model counts and names
(:func:`counted_detections`), their counts, the numerical ISCN call and the review flags that
send a cell to a person.
"""

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List

import numpy as np

from ...classes import CLASS_NAMES, NUM_CLASSES, denver_group_of
from ...evaluation.matching import box_iou
from ...evaluation.selection import detection_subsets, select_for_counting
from ...iscn import AUTOSOMES, numerical_karyotype
from .assignment import assign_classes
from .judge import load_judge


@dataclass(frozen=True)
class KaryotypeRules:
    """How the karyotype step counts and names, and the thresholds of the review flags
    (``cfg.TEST.KARYOTYPE``; see config.py)."""

    score_thresh: float  # p: a detection counts at score >= p (count_by "score")
    nms_thresh: float  # class-agnostic NMS between counted detections
    low_score: float  # a counted detection below this is a low-confidence call
    low_score_share: float  # flag the cell when more than this share is low-confidence
    overlap_iou: float  # flag two counted detections overlapping at IoU >= this
    ambiguity_margin: float  # flag top-2 classes of one Denver group closer than this
    count_by: str = "score"  # "score": top-1 score >= p; "foreground": 1 - p_bg >= fg_thresh
    fg_thresh: float = 0.5
    fg_nms_thresh: float = 0.7  # class-agnostic NMS of foreground counting
    assign: bool = False  # name the cell's chromosomes together (assignment.py)
    extra_cost: float = 2.0
    missing_cost: float = 2.0
    name_margin: float = 1.0  # with assign: flag a name whose assignment margin is below this
    judge: str = ""  # the candidate judge's weights file (judge.py); "": count every candidate
    judge_weight: float = 1.0  # lambda: weight of the judge's -log q, -log(1 - q) in the assignment
    sex_cost: float = -1.0  # assignment: cost of a missing or extra X / Y; < 0: the others'
    sex_margin: float = 0.0  # with assign: flag an X / Y name whose margin is below this

    @classmethod
    def from_config(cls, cfg):
        k = cfg.TEST.KARYOTYPE
        if k.COUNT_BY not in ("score", "foreground"):
            raise ValueError(f"TEST.KARYOTYPE.COUNT_BY {k.COUNT_BY!r}: score or foreground")
        return cls(
            k.SCORE_THRESH,
            k.NMS_THRESH,
            k.REVIEW_LOW_SCORE,
            k.REVIEW_LOW_SCORE_SHARE,
            k.REVIEW_OVERLAP_IOU,
            k.REVIEW_AMBIGUITY_MARGIN,
            k.COUNT_BY,
            k.COUNT_FG_THRESH,
            k.COUNT_NMS_THRESH,
            k.ASSIGN,
            k.EXTRA_COPY_COST,
            k.MISSING_COPY_COST,
            k.REVIEW_NAME_MARGIN,
            k.COUNT_JUDGE,
            k.COUNT_JUDGE_WEIGHT,
            k.SEX_COPY_COST,
            k.REVIEW_SEX_MARGIN,
        )


def _class_vectors(instances) -> np.ndarray:
    """(R, K) each detection's foreground class probabilities; only the named class's score
    for a model without class vectors."""
    if instances.has("class_scores"):
        return instances.class_scores.numpy()[:, :NUM_CLASSES].astype(np.float64)
    vectors = np.zeros((len(instances), NUM_CLASSES))
    vectors[np.arange(len(instances)), instances.pred_classes.numpy()] = instances.scores.numpy()
    return vectors


def counting_candidates(instances, rules: KaryotypeRules):
    """
    The candidates of one cell's count: the top-1 detection of each proposal whose score
    (``count_by`` "score", what Acc/AER judge) or foreground probability 1 - p_background
    ("foreground") reaches its threshold, then class-agnostic NMS (Acc/AER's, or
    ``fg_nms_thresh``).

    Args:
        instances (Instances): a model's output for one image, on the CPU.

    Returns:
        ndarray: (N, 4) their boxes, in counting order.
        ndarray: (N, K) their foreground class probabilities.
    """
    top1, _ = detection_subsets(instances)
    boxes = instances.pred_boxes.tensor.numpy().astype(np.float64)
    class_scores = _class_vectors(instances)
    counting, thresh, nms_thresh = counting_values(instances, rules)
    keep = select_for_counting(boxes, counting, top1, thresh, nms_thresh)
    return boxes[keep], class_scores[keep]


def counting_values(instances, rules: KaryotypeRules):
    """
    What the count thresholds (``count_by``): each detection's top-1 score ("score") or
    foreground probability ("foreground"), with that rule's threshold and NMS IoU.

    Returns:
        ndarray: (R,) float64 values.
        float, float: the threshold and the class-agnostic NMS IoU.
    """
    if rules.count_by == "score":
        values = instances.scores.numpy().astype(np.float64)
        return values, rules.score_thresh, rules.nms_thresh
    return _class_vectors(instances).sum(axis=1), rules.fg_thresh, rules.fg_nms_thresh


def counted_detections(instances, rules: KaryotypeRules) -> Dict[str, np.ndarray]:
    """
    The chromosomes of one cell and their names: of the :func:`counting_candidates`, those
    the candidate judge keeps (``rules.judge``, :mod:`.judge`; all without one), named each by
    its top class or all together by :func:`.assignment.assign_classes` (``assign``), which
    then also decides which doubtful candidates count.

    Args:
        instances (Instances): a model's output for one image, on the CPU.

    Returns:
        dict: "boxes" (N, 4), "classes" (N,), "scores" (N,) the probability of the given
        name, "class_scores" (N, K), "margins" (N,) the assignment's margins (inf when not
        assigned), of the counted detections, in counting order.
    """
    boxes, class_scores = counting_candidates(instances, rules)
    keep_probs = judge_probabilities(rules.judge, boxes, class_scores) if rules.judge else None
    classes, margins = name_chromosomes(class_scores, rules, keep_probs)
    counted = classes >= 0
    classes, class_scores = classes[counted], class_scores[counted]
    return {
        "boxes": boxes[counted],
        "classes": classes,
        "scores": class_scores[np.arange(len(classes)), classes],
        "class_scores": class_scores,
        "margins": margins[counted],
    }


@lru_cache(maxsize=4)
def _judge(path: str):
    return load_judge(path)


def judge_probabilities(path: str, boxes: np.ndarray, class_scores: np.ndarray) -> np.ndarray:
    """(N,) the probability that each candidate is one chromosome, by the judge of ``path``
    (:mod:`.judge`, loaded once per process)."""
    return _judge(path).probabilities(boxes, class_scores)


def name_chromosomes(class_scores: np.ndarray, rules: KaryotypeRules, keep_probs=None):
    """
    Name a cell's candidate chromosomes: each by its top class, or together
    (:func:`.assignment.assign_classes`) when ``rules.assign``; with ``keep_probs`` (the
    judge's) a candidate may also be left out: by the assignment, or below 0.5 one by one.

    Args:
        class_scores (ndarray): (N, K) their foreground class probabilities.
        keep_probs (ndarray or None): (N,) the probability that each is one chromosome.

    Returns:
        ndarray: (N,) int classes, -1 for a candidate left out.
        ndarray: (N,) the assignment's margins (inf when named one by one).
    """
    if not rules.assign:
        classes = class_scores.argmax(axis=1).astype(np.int64)
        if keep_probs is not None:
            classes[keep_probs < 0.5] = -1
        return classes, np.full(len(class_scores), np.inf)
    names = class_scores / np.clip(class_scores.sum(axis=1, keepdims=True), 1e-12, None)
    sex_cost = rules.sex_cost if rules.sex_cost >= 0 else None
    return assign_classes(
        names, rules.extra_cost, rules.missing_cost, keep_probs, sex_cost, rules.judge_weight
    )


def _unsure_name_flags(detections: Dict[str, np.ndarray], rules: KaryotypeRules) -> List[Dict]:
    """The flags of names the cell's assignment could change cheaply: any name
    (``name_margin``), an X or Y name (``sex_margin``)."""
    flags = []
    classes = detections["classes"]
    unsure = np.nonzero(detections["margins"] < rules.name_margin)[0]
    if len(unsure):
        flags.append(
            {
                "flag": "unsure_names",
                "message": f"{len(unsure)} name(s) the cell's assignment could change at a "
                f"cost below {rules.name_margin}",
                "detections": unsure.tolist(),
            }
        )
    unsure_sex = np.nonzero((classes >= 22) & (detections["margins"] < rules.sex_margin))[0]
    if len(unsure_sex):
        flags.append(
            {
                "flag": "unsure_sex",
                "message": f"{len(unsure_sex)} X / Y name(s) the cell's assignment could change "
                f"at a cost below {rules.sex_margin}",
                "detections": unsure_sex.tolist(),
            }
        )
    return flags


def review_flags(
    detections: Dict[str, np.ndarray], counts: Dict[str, int], rules: KaryotypeRules
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
    flags += _unsure_name_flags(detections, rules)
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


def cell_record(detections: Dict[str, np.ndarray], rules: KaryotypeRules) -> Dict:
    """
    The karyotype record of one cell (JSON-able).

    Args:
        detections (dict): from :func:`counted_detections`.

    Returns:
        dict: "detections" (box, class, score, top-3 classes with scores, the assignment's
        margin when named together), "counts" per class,
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
        if np.isfinite(detections["margins"][d]):  # named together (assignment.py)
            records[-1]["margin"] = round(float(detections["margins"][d]), 4)
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


def detections_from_record(records: List[Dict]) -> Dict[str, np.ndarray]:
    """
    The inverse of :func:`cell_record`'s "detections": arrays as :func:`counted_detections`
    returns them, with each class vector known on its top 3 classes and the named class
    (zero elsewhere), so that the record of a corrected cell is made by the same code.
    """
    n = len(records)
    boxes = np.array([r["bbox_xyxy"] for r in records], np.float64).reshape(n, 4)
    classes = np.array([CLASS_NAMES.index(r["class"]) for r in records], np.int64)
    class_scores = np.zeros((n, NUM_CLASSES))
    margins = np.full(n, np.inf)
    for d, r in enumerate(records):
        for name, score in r["top3"]:
            class_scores[d, CLASS_NAMES.index(name)] = score
        class_scores[d, classes[d]] = r["score"]
        margins[d] = r.get("margin", np.inf)
    scores = class_scores[np.arange(n), classes]
    return {
        "boxes": boxes,
        "classes": classes,
        "scores": scores,
        "class_scores": class_scores,
        "margins": margins,
    }
