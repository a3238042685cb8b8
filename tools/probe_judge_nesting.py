#!/usr/bin/env python
"""
A first look, not kept: the candidate judge with seven more features of how a candidate nests
among the others (docs/studies/counting.md), against the shipped features, trained the way
tools/train_candidate_judge.py trains it (the same cached candidates, split, epochs and seed),
judged with the config's rule on the held-out train cells and on cil24_val.

    python tools/probe_judge_nesting.py --arm nesting
"""

import argparse
import dataclasses
import functools
import os

import numpy as np
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype import cell, judge
from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs
from deepacc_d2.app.karyotype.cell import KaryotypeRules
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.classes import NUM_CLASSES
from deepacc_d2.evaluation.matching import box_intersection, box_iou
from deepacc_d2.studies import judge_training as jt
from deepacc_d2.studies.count_stages import auc
from deepacc_d2.studies.karyotype_benchmark import detection_cells

shipped_features = judge.candidate_features


def nesting_features(boxes, class_scores):
    """The shipped features, then: confident candidates (foreground >= 0.3) >= 80 % inside
    it, their summed foreground, its largest share inside another candidate and that one's
    foreground, its largest IoU with a weaker candidate, the confident candidates of its top
    name, its neighbours at IoU >= 0.3."""
    f = shipped_features(boxes, class_scores)
    if len(f) == 0:
        return np.zeros((0, f.shape[1] + 7), np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    fg = np.asarray(class_scores, np.float64)[:, :NUM_CLASSES].sum(1)
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 1.0, None).prod(1)
    inter = box_intersection(boxes, boxes)
    np.fill_diagonal(inter, 0.0)
    ious = box_iou(boxes, boxes)
    np.fill_diagonal(ious, 0.0)
    inside = inter / area[:, None]  # share of i inside j
    nested = inter / area[None, :] >= 0.8  # j nested in i
    confident = fg >= 0.3
    top = class_scores[:, :NUM_CLASSES].argmax(1)
    extra = np.stack(
        [
            (nested & confident[None, :]).sum(1),
            (nested * fg[None, :]).sum(1),
            inside.max(1),
            fg[inside.argmax(1)] * (inside.max(1) > 0),
            np.where(fg[None, :] <= fg[:, None], ious, 0).max(1),
            ((top[None, :] == top[:, None]) & confident[None, :]).sum(1) - confident,
            (ious >= 0.3).sum(1),
        ],
        1,
    )
    return np.concatenate([f, extra], 1).astype(np.float32)


def load_any_judge(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    j = judge.CandidateJudge(int(state["hidden"]), state["model"]["mean"].shape[0])
    j.load_state_dict(state["model"])
    return j.eval()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arm", choices=["shipped", "nesting"], default="nesting")
    p.add_argument("--cache", default="output/count_stages")
    p.add_argument("--out", default="output/judge_probe")
    args = p.parse_args()
    if args.arm == "nesting":
        judge.candidate_features = jt.candidate_features = nesting_features
    cell._judge = functools.lru_cache(None)(load_any_judge)
    config_file, weights, opts = resolve_model("cil-r18-crops")
    cfg = setup_cfg(config_file, opts, weights)
    records = cached_proposal_outputs(cfg, "cil24_train", args.cache)
    examples = jt.judge_examples(cfg, records)
    fit, held = jt.split_images(len(records), 0.2, 0)
    os.makedirs(args.out, exist_ok=True)
    for name, part, dataset in (("fit", fit, "held-out train"), ("all", None, "cil24_val")):
        chosen = examples if part is None else [examples[i] for i in part]
        path = os.path.join(args.out, f"judge_{args.arm}_{name}.pth")
        torch.save(judge.judge_state(jt.train_judge(chosen, 64, 30, seed=0)), path)
        if part is None:
            cells = detection_cells(cfg, cached_proposal_outputs(cfg, "cil24_val", args.cache))
        else:
            cells = detection_cells(cfg, [records[i] for i in held])
            x = torch.from_numpy(np.concatenate([examples[i][0] for i in held]))
            y = np.concatenate([examples[i][1] for i in held])
            with torch.no_grad():
                q = torch.sigmoid(load_any_judge(path)(x)).numpy()
            print(f"{args.arm}: held-out train AUC {auc(q, y):.4f}")
        rules = dataclasses.replace(KaryotypeRules.from_config(cfg), judge=path)
        summary = jt.count_summary(cells, rules)
        print(f"{args.arm}, {dataset}: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
