#!/usr/bin/env python
"""
A first look (docs/studies/counting.md): does the candidate judge count better when it also
sees the detector's own foreground f_det, the crop's "not one chromosome"
q_not = 1 - (f / f_det)^(1 / v), and the detector's own probability of the combined name? The
shipped model's cached outputs (tools/count_stages.py, output/count_stages) are aligned with
the same model's outputs without the second look (output/count_stages_det, ``--opts
MODEL.SECOND_LOOK.ENABLED False``): both keep the proposals in order, the combined ones a
subsequence of the detector's, aligned by the largest summed box IoU. Two judges, trained
alike on the same 976 cil24_train cells, are compared on the 244 held-out cells and on
cil24_val under the shipped rule and lower missing-copy costs.

    python tools/probe_judge_detector.py
"""

import dataclasses
import json

import numpy as np
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype import cell as cell_module
from deepacc_d2.app.karyotype.candidates import (
    cached_proposal_outputs,
    model_detections,
    one_box_labels,
)
from deepacc_d2.app.karyotype.cell import KaryotypeRules, counting_candidates
from deepacc_d2.app.karyotype.judge import candidate_features
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.classes import NUM_CLASSES as K
from deepacc_d2.evaluation.matching import box_iou
from deepacc_d2.studies import judge_training as jt
from deepacc_d2.studies.count_stages import auc
from deepacc_d2.studies.karyotype_benchmark import detection_cells

EXTRAS = {}  # a candidate's K class scores (bytes) -> f_det, q_not, p_det(name), same top name


def _key(row):
    return np.asarray(row, np.float32)[:K].tobytes()


def align(combined, detector):
    """Per combined row its detector row (-1 where the best alignment's IoU is < 0.5)."""
    bc, bd = combined["boxes"].astype(np.float64), detector["boxes"].astype(np.float64)
    n, m = len(bc), len(bd)
    if n == 0:
        return np.zeros(0, np.int64)
    fg_c = combined["probs"][:, :K].sum(1)
    fg_d = detector["probs"][:, :K].sum(1)
    score = np.where(fg_d[None, :] >= fg_c[:, None] - 1e-5, box_iou(bc, bd), -1e3)
    total, back = np.empty((n, m)), np.zeros((n, m), np.int64)
    total[0] = score[0]
    for i in range(1, n):
        before = np.concatenate([[-1e9], total[i - 1][:-1]])  # the best over j' < j
        best = np.maximum.accumulate(before)
        back[i] = np.maximum.accumulate(np.where(before == best, np.arange(m), 0)) - 1
        total[i] = score[i] + best
    out, j = np.zeros(n, np.int64), int(total[n - 1].argmax())
    for i in range(n - 1, -1, -1):
        out[i], j = j, back[i, j]
    out[score[np.arange(n), out] < 0.5] = -1
    return out


def fill_extras(combined_records, detector_records, v):
    by_name = {r["file_name"]: r for r in detector_records}
    rows = unmatched = 0
    for rc in combined_records:
        rd = by_name[rc["file_name"]]
        for i, j in enumerate(align(rc, rd)):
            pc = rc["probs"][i]
            fg, top = float(pc[:K].sum()), int(pc[:K].argmax())
            if j < 0:
                unmatched += 1
                extra = [fg, 0.0, 0.0, 1.0]
            else:
                pd = rd["probs"][j]
                fd = float(pd[:K].sum())
                names = pd[:K] / max(fd, 1e-12)
                q_not = 1 - min(1.0, fg / max(fd, 1e-9)) ** (1 / v)
                extra = [fd, q_not, float(names[top]), float(names.argmax() == top)]
            EXTRAS[_key(pc)] = np.array(extra, np.float32)
        rows += len(rc["boxes"])
    print(f"aligned {rows} rows, {unmatched} without a detector row", flush=True)


def features(boxes, class_scores, extended):
    base = candidate_features(boxes, class_scores)
    if not extended or len(base) == 0:
        return base
    default = np.array([0.0, 0.0, 0.0, 1.0], np.float32)
    extra = np.stack([EXTRAS.get(_key(r), default) for r in class_scores])
    return np.concatenate([base, extra], axis=1).astype(np.float32)


def examples(cfg, records, extended):
    rules = dataclasses.replace(KaryotypeRules.from_config(cfg), judge="")
    out = []
    for r in records:
        boxes, class_scores = counting_candidates(model_detections(cfg, r), rules)
        labels, _ = one_box_labels(boxes, r["gt_boxes"])
        out.append((features(boxes, class_scores, extended), labels))
    return out


def use_judge(judge, extended):
    """Counting (cell.counted_detections) asks this judge from now on."""

    def probabilities(path, boxes, class_scores):
        x = torch.from_numpy(features(boxes, class_scores, extended))
        if len(x) == 0:
            return np.zeros(0)
        with torch.no_grad():
            return torch.sigmoid(judge(x)).numpy().astype(np.float64)

    cell_module.judge_probabilities = probabilities


def judge_auc(judge, exs):
    with torch.no_grad():
        scores = [torch.sigmoid(judge(torch.from_numpy(x))).numpy() for x, _ in exs]
    return auc(np.concatenate(scores), np.concatenate([y for _, y in exs]))


def main():
    config_file, weights, opts = resolve_model("cil-r18-crops", None)
    cfg = setup_cfg(config_file, opts, weights)
    cfg_det = setup_cfg(config_file, opts + ["MODEL.SECOND_LOOK.ENABLED", "False"], weights)
    data = {}
    for name in ("cil24_train", "cil24_val"):
        data[name] = cached_proposal_outputs(cfg, name, "output/count_stages")
        detector = cached_proposal_outputs(cfg_det, name, "output/count_stages_det")
        fill_extras(data[name], detector, cfg.MODEL.SECOND_LOOK.FOREGROUND_WEIGHT)
    train, val = data["cil24_train"], data["cil24_val"]
    fit, held = jt.split_images(len(train), 0.2, 0)
    shipped = KaryotypeRules.from_config(cfg)
    cells = {
        "held": detection_cells(cfg, [train[i] for i in held]),
        "val": detection_cells(cfg, val),
    }
    for extended in (False, True):
        exs = examples(cfg, train, extended)
        judge = jt.train_judge([exs[i] for i in fit])
        use_judge(judge, extended)
        row = {
            "auc_held": judge_auc(judge, [exs[i] for i in held]),
            "auc_val": judge_auc(judge, examples(cfg, val, extended)),
        }
        for where, missing in [("held", 8), ("held", 4), ("held", 3), ("held", 2)] + [
            ("val", 8),
            ("val", 3),
            ("val", 2),
        ]:
            rules = dataclasses.replace(shipped, judge="probe", missing_cost=missing)
            s = jt.count_summary(cells[where], rules)
            keys = ("count_right", "exact", "named_right", "not_chromosome")
            row[f"{where}, missing copy {missing}"] = {k: round(s[k], 2) for k in keys}
        print("with the detector's own" if extended else "shipped features")
        print(json.dumps(row, indent=1), flush=True)


if __name__ == "__main__":
    main()
