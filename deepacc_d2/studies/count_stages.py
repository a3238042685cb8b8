"""
Where chromosomes are lost, stage by stage (``tools/count_stages.py``): each stage's share of
the true chromosomes that still have a box at IoU >= 0.5, and candidates per chromosome.
"""

import logging
import os
from typing import Dict, List

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import rankdata

from ..app.karyotype.candidates import (
    candidate_instances,
    detection_record,
    foreground,
    one_box_labels,
)
from ..app.karyotype.cell import (
    KaryotypeRules,
    counting_candidates,
    counting_values,
    judge_probabilities,
)
from ..engine.files import write_atomic
from ..evaluation.matching import box_intersection, box_iou
from .karyotype_benchmark import counted_and_matched, counted_cell_judgment

logger = logging.getLogger(__name__)

HELD = 0.6  # a chromosome is held by a box when this share of its true box lies inside it
WITHIN = 0.8  # a box is a fragment of a chromosome when this share of it lies inside its box


def covered(boxes: np.ndarray, gt_boxes: np.ndarray, iou_thresh: float = 0.5) -> np.ndarray:
    """(G,) bool: whether some box lies on each true box at IoU >= iou_thresh."""
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return np.zeros(len(gt_boxes), dtype=bool)
    return (
        box_iou(np.asarray(gt_boxes, np.float64), np.asarray(boxes, np.float64)) >= iou_thresh
    ).any(1)


def _inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) the share of each box of ``a`` that lies inside each box of ``b``."""
    area = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    return box_intersection(a, b) / np.maximum(area, 1e-9)[:, None]


def error_kinds(counted: np.ndarray, candidates: np.ndarray, gt_boxes: np.ndarray) -> Dict:
    """
    What one cell's count gets wrong, by kind. A chromosome not counted once (no counted box
    is its one box, :func:`one_box_labels`) has no counting candidate at IoU >= 0.5, or has
    one that is not counted; such a one may lie inside a counted box (>= HELD of its true box:
    the box of a crossing or touching chromosome, or a box around two). A counted object on no
    chromosome (no true box at IoU >= 0.5) is a box around two or more chromosomes (>= HELD of
    each of two true boxes inside it), a fragment (>= WITHIN of it inside one true box), or
    other (a misplaced box, debris).

    Args:
        counted, candidates, gt_boxes (ndarray): (N, 4), (C, 4), (G, 4) XYXY.

    Returns:
        dict of counts: "no_candidate", "not_counted", "not_counted_inside" (of those not
        counted; chromosomes); "around_two", "fragment", "other" (counted objects).
    """
    counted, candidates = np.asarray(counted, np.float64), np.asarray(candidates, np.float64)
    gt = np.asarray(gt_boxes, np.float64)
    once = np.zeros(len(gt), dtype=bool)
    is_one, matched = one_box_labels(counted, gt)
    once[matched[is_one]] = True
    has_candidate = covered(candidates, gt)
    left_out = ~once & has_candidate
    inside = (_inside(gt[left_out], counted) >= HELD).any(axis=1)
    kinds = {
        "no_candidate": int((~once & ~has_candidate).sum()),
        "not_counted": int(left_out.sum()),
        "not_counted_inside": int(inside.sum()),
        "around_two": 0,
        "fragment": 0,
        "other": 0,
    }
    for box in counted[~covered(gt, counted)]:
        held = _inside(gt, box[None])[:, 0]  # each true box's share inside it
        within = _inside(box[None], gt)[0]  # its share inside each true box
        if (held >= HELD).sum() >= 2:
            kinds["around_two"] += 1
        elif len(within) and within.max() >= WITHIN:
            kinds["fragment"] += 1
        else:
            kinds["other"] += 1
    return kinds


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The area under the ROC curve: the chance that a positive outranks a negative (ties
    count half)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _stage_boxes(cfg, record: Dict, rules: KaryotypeRules):
    """The boxes of each stage of one image, in order (the last: the counting candidates),
    the model's detections and the counting candidates' boxes and class scores."""
    fg_heads = record["probs"][:, :-1].sum(axis=1)
    uncapped = candidate_instances(
        record, cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST, 10**6
    )
    detections = candidate_instances(
        record,
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
        cfg.TEST.DETECTIONS_PER_IMAGE,
    )
    boxes = detections.pred_boxes.tensor.numpy()
    value, thresh, nms_thresh = counting_values(detections, rules)
    above = value >= thresh
    candidates = counting_candidates(detections, rules)
    stages = [
        record["proposals"],
        record["boxes"][fg_heads >= 0.02],
        uncapped.pred_boxes.tensor.numpy(),
        boxes,
        boxes[above],
        candidates[0],
    ]
    return stages, detections, candidates, (thresh, nms_thresh)


def stage_names(cfg, rules: KaryotypeRules, thresh: float, nms_thresh: float) -> List[str]:
    rpn, heads = cfg.MODEL.RPN, cfg.MODEL.ROI_HEADS
    what = "foreground" if rules.count_by == "foreground" else "top-1 score"
    return [
        f"RPN proposals ({rpn.PRE_NMS_TOPK_TEST} before NMS, {rpn.POST_NMS_TOPK_TEST} after"
        + (", in each of two views)" if cfg.MODEL.META_ARCHITECTURE == "MirrorViewRCNN" else ")"),
        "heads' outputs, foreground >= 0.02",
        f"model's detections: score >= {heads.SCORE_THRESH_TEST:g}, per-class NMS "
        f"{heads.NMS_THRESH_TEST:g}, no cap",
        f"... at most {cfg.TEST.DETECTIONS_PER_IMAGE} per image (TEST.DETECTIONS_PER_IMAGE)",
        f"counting: {what} >= {thresh:g}",
        f"... class-agnostic NMS {nms_thresh:g}: the counting candidates",
        "counted" + (": the judge and the assignment choose" if rules.judge else ""),
    ]


def stage_report(cfg, records: List[Dict], dataset_name: str, command: str, out_dir: str):
    """
    The stage table of a dataset's proposal outputs under the config's budget and counting
    rule, and the histogram of each cell's count error (``count_errors_<dataset>.png``).

    Returns:
        dict: the numbers ("stages", "cells", "auc_foreground", "count_errors").
        str: the table (markdown).
    """
    rules = KaryotypeRules.from_config(cfg)
    reached, per_stage_boxes, errors, judged = None, None, [], []
    once = named = counted_total = not_chromosome = duplicates = chromosomes = 0
    kinds = dict.fromkeys(
        ("no_candidate", "not_counted", "not_counted_inside", "around_two", "fragment", "other"),
        0,
    )
    fg_scores, fg_labels, judged_scores, judged_labels = [], [], [], []
    for record in records:
        stages, detections, candidates, (thresh, nms_thresh) = _stage_boxes(cfg, record, rules)
        gt = record["gt_boxes"]
        cell = detection_record(record, detections)
        counted, judged_boxes = counted_and_matched(cell, rules)
        stages.append(counted["boxes"])
        hits = np.array([covered(b, gt).sum() for b in stages])
        sizes = np.array([len(b) for b in stages])
        reached = hits if reached is None else reached + hits
        per_stage_boxes = sizes if per_stage_boxes is None else per_stage_boxes + sizes
        chromosomes += len(gt)
        is_one, _ = one_box_labels(counted["boxes"], gt)
        on_any = covered(gt, counted["boxes"])  # per counted box
        once += int(is_one.sum())
        named += int(judged_boxes["is_tp"].sum())
        counted_total += len(counted["boxes"])
        not_chromosome += int((~on_any).sum())
        duplicates += int((on_any & ~is_one).sum())
        errors.append(len(counted["boxes"]) - len(gt))
        for k, v in error_kinds(counted["boxes"], candidates[0], gt).items():
            kinds[k] += v
        judged.append(counted_cell_judgment(cell, counted, judged_boxes, rules))
        labels, _ = one_box_labels(detections.pred_boxes.tensor.numpy(), gt)
        fg_scores.append(foreground(detections))
        fg_labels.append(labels)
        if rules.judge:  # the judge on the candidates it sees
            boxes, class_scores = candidates
            judged_scores.append(judge_probabilities(rules.judge, boxes, class_scores))
            judged_labels.append(one_box_labels(boxes, gt)[0])
    names = stage_names(cfg, rules, thresh, nms_thresh)
    report = {
        "dataset": dataset_name,
        "cells": len(records),
        "chromosomes": chromosomes,
        "stages": [
            {"stage": n, "covered_pct": 100.0 * c / chromosomes, "per_chromosome": b / chromosomes}
            for n, c, b in zip(names, reached, per_stage_boxes)
        ],
        "counted_once_pct": 100.0 * once / chromosomes,
        "named_right_pct": 100.0 * named / chromosomes,
        "not_chromosome_pct": 100.0 * not_chromosome / max(counted_total, 1),
        "duplicate_pct": 100.0 * duplicates / max(counted_total, 1),
        "no_candidate_pct": 100.0 * kinds["no_candidate"] / chromosomes,
        "not_counted_pct": 100.0 * kinds["not_counted"] / chromosomes,
        "not_counted_inside_pct": 100.0 * kinds["not_counted_inside"] / chromosomes,
        "named_wrong_pct": 100.0 * (once - named) / chromosomes,
        "not_chromosome_kinds_pct": {
            k: 100.0 * kinds[k] / max(counted_total, 1) for k in ("around_two", "fragment", "other")
        },
        "count_right_pct": 100.0 * np.mean([j["count_right"] for j in judged]),
        "call_exact_pct": 100.0 * np.mean([j["exact"] for j in judged]),
        "auc_foreground": auc(np.concatenate(fg_scores), np.concatenate(fg_labels)),
        "auc_judge": (
            auc(np.concatenate(judged_scores), np.concatenate(judged_labels))
            if rules.judge
            else None
        ),
        "count_errors": errors,
        "command": command,
    }
    plot_count_errors(errors, os.path.join(out_dir, f"count_errors_{dataset_name}.png"))
    return report, stage_table(report)


def stage_table(report: Dict) -> str:
    lines = [
        f"{report['cells']} cells of {report['dataset']}, {report['chromosomes']} chromosomes "
        f"(`{report['command']}`):",
        "",
        "| stage | chromosomes with a box at IoU >= 0.5 % | boxes per chromosome |",
        "|---|---|---|",
    ]
    for s in report["stages"]:
        lines.append(f"| {s['stage']} | {s['covered_pct']:.1f} | {s['per_chromosome']:.2f} |")
    errors = np.asarray(report["count_errors"])
    lines += [
        "",
        "| counted set | value |",
        "|---|---|",
        "| chromosomes counted once (one-to-one at IoU >= 0.5) % | "
        f"{report['counted_once_pct']:.1f} |",
        f"| ... with the right name % | {report['named_right_pct']:.1f} |",
        f"| counted objects on no chromosome % | {report['not_chromosome_pct']:.1f} |",
        "| counted objects that are a second box on a chromosome % | "
        f"{report['duplicate_pct']:.1f} |",
        f"| cells counted right % | {report['count_right_pct']:.1f} |",
        f"| cells called exactly % | {report['call_exact_pct']:.1f} |",
        f"| AUC of the foreground probability, the one box of a chromosome vs the rest "
        f"(model's detections) | {report['auc_foreground']:.3f} |",
    ]
    if report["auc_judge"] is not None:
        lines.append(
            f"| AUC of the judge, the same on the candidates it sees | {report['auc_judge']:.3f} |"
        )
    lines += [
        f"| count error per cell: median, mean absolute | {np.median(errors):+.0f}, "
        f"{np.abs(errors).mean():.2f} |",
        "",
    ]
    kinds = report["not_chromosome_kinds_pct"]
    lines += [
        "| what the counted set gets wrong | % |",
        "|---|---|",
        f"| chromosomes with no counting candidate | {report['no_candidate_pct']:.2f} |",
        f"| chromosomes with a candidate, not counted | {report['not_counted_pct']:.2f} |",
        f"| ... lying inside a counted box (>= {HELD * 100:.0f} % of the chromosome) | "
        f"{report['not_counted_inside_pct']:.2f} |",
        "| chromosomes counted once, named wrong (counted once minus named right) | "
        f"{report['named_wrong_pct']:.2f} |",
        "| counted objects on no chromosome: a box around two or more | "
        f"{kinds['around_two']:.2f} |",
        f"| ... a fragment of one | {kinds['fragment']:.2f} |",
        f"| ... other (a misplaced box, debris) | {kinds['other']:.2f} |",
        "",
    ]
    return "\n".join(lines)


def plot_count_errors(errors: List[int], path: str):
    errors = np.asarray(errors)
    fig = Figure(figsize=(6, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = np.arange(errors.min() if len(errors) else 0, (errors.max() if len(errors) else 0) + 1)
    ax.bar(values, [(errors == v).sum() for v in values], color="#4477aa")
    ax.set_xticks(values)
    ax.set_xlabel("counted - true chromosomes per cell")
    ax.set_ylabel("cells")
    ax.set_title(
        f"{(errors == 0).mean() * 100:.1f} % of {len(errors)} cells counted right", fontsize=9
    )
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
