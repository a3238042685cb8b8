"""
Where the mirror model's counting errors lie (docs/studies/counting.md): for each counted
candidate that is not a chromosome's one box, the nearest one-box candidate left out, and what
each is; not part of the product.

    python tools/probe_swaps.py     # seconds, from output/count_stages_mirror
"""

import numpy as np

import deepacc_d2  # noqa
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype.candidates import (
    cached_proposal_outputs,
    model_detections,
    one_box_labels,
)
from deepacc_d2.app.karyotype.cell import (
    KaryotypeRules,
    counting_candidates,
    judge_probabilities,
    name_chromosomes,
)
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.evaluation.matching import box_iou
from deepacc_d2.studies.count_stages import _inside

cf, w, mo = resolve_model("cil-r18-crops-mirror", None)
cfg = setup_cfg(cf, mo, w)
recs = cached_proposal_outputs(cfg, "cil24_val", "output/count_stages_mirror")
rules = KaryotypeRules.from_config(cfg)
rows = []
n_wrong = n_right_out = 0
pairs = []
for rec in recs:
    boxes, cs = counting_candidates(model_detections(cfg, rec), rules)
    q = judge_probabilities(rules.judge, boxes, cs)
    classes, _ = name_chromosomes(cs, rules, q)
    counted = classes >= 0
    gt = np.asarray(rec["gt_boxes"], np.float64).reshape(-1, 4)
    is_one, matched = one_box_labels(boxes, gt)
    # chromosomes counted once: one_box among counted boxes
    c_one, c_match = one_box_labels(boxes[counted], gt)
    once = np.zeros(len(gt), bool)
    once[c_match[c_one]] = True
    wrong = np.where(counted & ~np.isin(np.arange(len(boxes)), np.where(counted)[0][c_one]))[0]
    # right-but-out: one-box candidates (oracle's choice) whose chromosome is not counted once
    right_out = np.where(is_one & ~counted & ~once[np.maximum(matched, 0)])[0]
    ious = box_iou(boxes, boxes)
    fg = cs.sum(1)
    for wi in wrong:
        if len(right_out):
            j = right_out[np.argmax(ious[wi, right_out])]
            pairs.append((ious[wi, j], q[wi], q[j], fg[wi], fg[j]))
        else:
            pairs.append((0.0, q[wi], np.nan, fg[wi], np.nan))
    n_wrong += len(wrong)
    n_right_out += len(right_out)
p = np.array(pairs)
print("counted wrong", n_wrong, "right candidates left out", n_right_out)
for lo, hi in [(0, 0.01), (0.01, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 1.01)]:
    m = (p[:, 0] >= lo) & (p[:, 0] < hi)
    med = np.nanmedian(p[m, 1:], axis=0) if m.any() else np.zeros(4)
    print(
        f"IoU with the nearest left-out right box {lo}-{hi}: {m.sum()}; medians: q wrong "
        f"{med[0]:.2f}, q right {med[1]:.2f}, fg wrong {med[2]:.2f}, fg right {med[3]:.2f}"
    )

# kinds of the far (IoU < 0.01) wrong ones, and of the left-out right ones

kinds = {"second box": 0, "around two": 0, "fragment": 0, "other": 0}
out_kinds = {"inside a counted box": 0, "touching (IoU>0.1 with a true box)": 0, "alone": 0}
sizes_w, sizes_r = [], []
for rec in recs:
    boxes, cs = counting_candidates(model_detections(cfg, rec), rules)
    q = judge_probabilities(rules.judge, boxes, cs)
    classes, _ = name_chromosomes(cs, rules, q)
    counted = classes >= 0
    gt = np.asarray(rec["gt_boxes"], np.float64).reshape(-1, 4)
    is_one, matched = one_box_labels(boxes, gt)
    cidx = np.where(counted)[0]
    c_one, c_match = one_box_labels(boxes[counted], gt)
    once = np.zeros(len(gt), bool)
    once[c_match[c_one]] = True
    wrong = np.setdiff1d(cidx, cidx[c_one])
    right_out = np.where(is_one & ~counted & ~once[np.maximum(matched, 0)])[0]
    ious = box_iou(boxes, boxes)
    gious = box_iou(boxes, gt)
    med = np.median(np.sqrt(np.prod(gt[:, 2:] - gt[:, :2], 1)))
    for wi in wrong:
        if len(right_out) and ious[wi, right_out].max() >= 0.01:
            continue
        b = boxes[wi : wi + 1]
        if gious[wi].max() >= 0.5:
            kinds["second box"] += 1
        elif (_inside(gt, b)[:, 0] >= 0.6).sum() >= 2:
            kinds["around two"] += 1
        elif (_inside(b, gt)[0] >= 0.8).any():
            kinds["fragment"] += 1
        else:
            kinds["other"] += 1
        sizes_w.append(np.sqrt(np.prod(b[0, 2:] - b[0, :2])) / med)
    gg = box_iou(gt, gt)
    np.fill_diagonal(gg, 0)
    for r in right_out:
        g = matched[r]
        if (_inside(gt[g : g + 1], boxes[counted])[0] >= 0.6).any():
            out_kinds["inside a counted box"] += 1
        elif gg[g].max() > 0.1:
            out_kinds["touching (IoU>0.1 with a true box)"] += 1
        else:
            out_kinds["alone"] += 1
        sizes_r.append(np.sqrt(np.prod(gt[g, 2:] - gt[g, :2])) / med)
print(kinds)
print(out_kinds)
print(
    "size vs median, wrong far:",
    np.percentile(sizes_w, [10, 50, 90]).round(2),
    " right out:",
    np.percentile(sizes_r, [10, 50, 90]).round(2),
)
