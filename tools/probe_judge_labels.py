#!/usr/bin/env python
"""
Two first looks at the candidate judge under the detections' per-class NMS at 0.7
(docs/studies/counting.md, "Duplicates kept for the judge"); not part of the product. Each runs
a tool of tools/ (its name, then its own arguments) with the judge changed:

* ``names``: two more features, the candidate's names against the stronger candidate it
  overlaps most (their names' dot product, whether the top names agree);
* ``strongest``: trained with the label "the strongest candidate (first in counting order)
  whose best true box, at IoU >= 0.5, is this chromosome" instead of the one-to-one matching.

    python tools/probe_judge_labels.py names train_candidate_judge --dataset cil24_train \\
        --cache output/count_stages_pc07 --out output/judge_pc07n \\
        --opts MODEL.ROI_HEADS.NMS_THRESH_TEST 0.7
"""

import os
import sys

import numpy as np


def names_arm():
    from deepacc_d2.app.karyotype import judge
    from deepacc_d2.classes import NUM_CLASSES
    from deepacc_d2.evaluation.matching import box_iou
    from deepacc_d2.studies import judge_training

    base = judge.candidate_features

    def features(boxes, class_scores):
        f = base(boxes, class_scores)
        if len(f) == 0:
            return np.zeros((0, judge.NUM_FEATURES + 2), np.float32)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(class_scores, np.float64)[:, :NUM_CLASSES]
        fg = scores.sum(1)
        names = scores / np.clip(fg[:, None], 1e-12, None)
        ious = box_iou(boxes, boxes)
        np.fill_diagonal(ious, 0.0)
        iou_stronger = np.where(fg[None, :] > fg[:, None], ious, 0.0)
        j, has = iou_stronger.argmax(1), iou_stronger.max(1) > 0
        dot = np.where(has, (names * names[j]).sum(1), 0.0)
        same = np.where(has, (names.argmax(1) == names[j].argmax(1)).astype(float), 0.0)
        return np.concatenate([f, np.stack([dot, same], 1).astype(np.float32)], 1)

    judge.candidate_features = features
    judge_training.candidate_features = features
    judge.CandidateJudge.__init__.__defaults__ = (64, judge.NUM_FEATURES + 2)


def strongest_arm():
    from deepacc_d2.evaluation.matching import box_iou
    from deepacc_d2.studies import judge_training

    def strongest_labels(boxes, gt_boxes, iou_thresh=0.5):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        labels, matched = np.zeros(len(boxes), bool), np.full(len(boxes), -1)
        if len(boxes) == 0 or len(gt) == 0:
            return labels, matched
        iou = box_iou(boxes, gt)
        best, on_one = iou.argmax(1), iou.max(1) >= iou_thresh
        seen = set()
        for i in range(len(boxes)):  # counting order: the strongest first
            if on_one[i] and best[i] not in seen:
                seen.add(best[i])
                labels[i], matched[i] = True, best[i]
        return labels, matched

    judge_training.one_box_labels = strongest_labels


if __name__ == "__main__":
    import deepacc_d2  # noqa: F401

    arm, tool, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    {"names": names_arm, "strongest": strongest_arm}[arm]()
    sys.path.insert(0, os.path.dirname(__file__))
    __import__(tool).main(rest)
