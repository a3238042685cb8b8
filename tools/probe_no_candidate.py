#!/usr/bin/env python
"""The chromosomes with no counting candidate at IoU >= 0.5 under the config's rule (a probe):
how near the nearest candidate comes, whether they touch another chromosome, whether the RPN
had a proposal on them, their size against the cell, their classes; from count_stages' cache.
    python tools/probe_no_candidate.py --dataset cil24_val --out output/count_stages"""

import argparse
from collections import Counter

import numpy as np

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype.candidates import (
    cached_proposal_outputs,
    detection_record,
    model_detections,
)
from deepacc_d2.app.karyotype.cell import KaryotypeRules, counting_candidates
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.classes import CLASS_NAMES
from deepacc_d2.evaluation.matching import box_iou
from deepacc_d2.studies.karyotype_benchmark import _instances

p = argparse.ArgumentParser()
p.add_argument("--weights", default="cil-r18-crops")
p.add_argument("--config-file")
p.add_argument("--dataset", default="cil24_val")
p.add_argument("--out", default="output/count_stages")
p.add_argument("--opts", nargs="+", default=[])
args = p.parse_args()
config_file, weights, opts = resolve_model(args.weights, args.config_file)
cfg = setup_cfg(config_file, opts + args.opts, weights)
rules = KaryotypeRules.from_config(cfg)
best, touching, proposal, relative, every_relative, classes = [], 0, 0, [], [], Counter()
for record in cached_proposal_outputs(cfg, args.dataset, args.out):
    cell = detection_record(record, model_detections(cfg, record))
    boxes, _ = counting_candidates(_instances(cell), rules)
    gt = np.asarray(record["gt_boxes"], np.float64)
    iou = box_iou(gt, boxes) if len(boxes) else np.zeros((len(gt), 1))
    between = box_iou(gt, gt)
    np.fill_diagonal(between, 0.0)
    on_proposal = box_iou(gt, np.asarray(record["proposals"], np.float64)).max(axis=1) >= 0.5
    long_side = (gt[:, 2:] - gt[:, :2]).max(axis=1)
    every_relative += list(long_side / np.median(long_side))
    for g in np.nonzero(iou.max(axis=1) < 0.5)[0]:
        best.append(iou[g].max())
        touching += between[g].max() >= 0.1
        proposal += on_proposal[g]
        relative.append(long_side[g] / np.median(long_side))
        classes[CLASS_NAMES[record["gt_classes"][g]]] += 1


def quantiles(values):
    return " / ".join(f"{v:.2f}" for v in np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9]))


print(f"| {len(best)} chromosomes with no counting candidate | |\n|---|---|")
print(f"| the nearest candidate's IoU: percentiles 10, 25, 50, 75, 90 | {quantiles(best)} |")
print(f"| touching another chromosome (true boxes at IoU >= 0.1) | {touching} |")
print(f"| with an RPN proposal at IoU >= 0.5 | {proposal} |")
print(f"| long side / the cell's median, percentiles as above | {quantiles(relative)} |")
print(f"| ... of every chromosome | {quantiles(every_relative)} |")
print(f"| classes | {', '.join(f'{k} {v}' for k, v in classes.most_common(8))} |")
