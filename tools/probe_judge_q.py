#!/usr/bin/env python
"""The judge's probability q of three kinds of counting candidates under the config's rule (a
probe): counted on no chromosome, counted as a chromosome's one box, a chromosome's one box not
counted; from count_stages' cache.
    python tools/probe_judge_q.py --dataset cil24_val --out output/count_stages"""

import argparse

import numpy as np

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype.candidates import (
    cached_proposal_outputs,
    detection_record,
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
from deepacc_d2.studies.count_stages import covered
from deepacc_d2.studies.karyotype_benchmark import _instances

p = argparse.ArgumentParser()
p.add_argument("--weights", default="cil-r18-crops")
p.add_argument("--dataset", default="cil24_val")
p.add_argument("--out", default="output/count_stages")
p.add_argument("--opts", nargs="+", default=[])
args = p.parse_args()
config_file, weights, opts = resolve_model(args.weights, None)
cfg = setup_cfg(config_file, opts + args.opts, weights)
rules = KaryotypeRules.from_config(cfg)
kinds = {
    "counted, on no chromosome": [],
    "counted, a chromosome's one box": [],
    "a one box, not counted": [],
}
for record in cached_proposal_outputs(cfg, args.dataset, args.out):
    cell = detection_record(record, model_detections(cfg, record))
    boxes, class_scores = counting_candidates(_instances(cell), rules)
    q = judge_probabilities(rules.judge, boxes, class_scores)
    counted = name_chromosomes(class_scores, rules, q)[0] >= 0
    one = one_box_labels(boxes, record["gt_boxes"])[0]
    on_none = ~covered(record["gt_boxes"], boxes)
    for kind, rows in zip(kinds, (counted & on_none, counted & one, ~counted & one)):
        kinds[kind] += list(q[rows])
print("| candidates | number | q: 10th / 25th / 50th / 75th / 90th percentile |\n|---|---|---|")
for kind, values in kinds.items():
    quantiles = " / ".join(f"{v:.2f}" for v in np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9]))
    print(f"| {kind} | {len(values)} | {quantiles} |")
