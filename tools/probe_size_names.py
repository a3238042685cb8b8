#!/usr/bin/env python
"""
Probe (a first look, not shipped): name a cell's counted chromosomes with their size against
the cell's as well. The crop classifier sees each chromosome scaled to a fixed side, the
detector through a 7 x 7 RoIAlign: neither knows how large a chromosome is against the others
of its cell, which is what a cytogeneticist orders a karyogram by. Each class's relative size
(log diagonal and log short side of the box against the cell's median) is a 2-D Gaussian
fitted on the true boxes of cil24_train; the names are multiplied by its likelihood to the
power u before the assignment. The judge still sees the shipped names.

    python tools/probe_size_names.py --weights cil-r18-crops --dataset cil24_val \\
        --cache output/count_stages --u 0 0.25 0.5 1
"""

import argparse
import json
import os

import numpy as np


def relative_sizes(boxes, scale_boxes):
    """(N, 2) log diagonal and log short side of ``boxes`` against the medians of
    ``scale_boxes``: a straight chromosome's box diagonal is about its length at any angle."""
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 1.0, None)
    swh = np.clip(scale_boxes[:, 2:] - scale_boxes[:, :2], 1.0, None)
    diag = np.hypot(wh[:, 0], wh[:, 1]) / np.median(np.hypot(swh[:, 0], swh[:, 1]))
    short = wh.min(axis=1) / np.median(swh.min(axis=1))
    return np.stack([np.log(diag), np.log(short)], axis=1)


def fit_sizes(dataset, num_classes):
    from deepacc_d2.evaluation.karyotype_evaluation import annotations_to_arrays

    from detectron2.data import DatasetCatalog

    xs, ys = [], []
    for d in DatasetCatalog.get(dataset):
        boxes, classes = annotations_to_arrays(d)
        if len(boxes) < 10:
            continue
        xs.append(relative_sizes(np.asarray(boxes, np.float64), np.asarray(boxes, np.float64)))
        ys.append(np.asarray(classes))
    x, y = np.concatenate(xs), np.concatenate(ys)
    means = np.stack([x[y == k].mean(axis=0) for k in range(num_classes)])
    covs = np.stack([np.cov(x[y == k].T) + 1e-4 * np.eye(2) for k in range(num_classes)])
    return means, covs


def log_likelihood(x, means, covs):
    """(N, K) log N(x | mean_k, cov_k)."""
    d = x[:, None, :] - means[None]  # N x K x 2
    inv = np.linalg.inv(covs)  # K x 2 x 2
    m = np.einsum("nki,kij,nkj->nk", d, inv, d)
    return -0.5 * m - 0.5 * np.log(np.linalg.det(covs))[None]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default="cil-r18-crops")
    p.add_argument("--dataset", default="cil24_val")
    p.add_argument("--fit-dataset", default="cil24_train")
    p.add_argument("--cache", default="output/count_stages")
    p.add_argument("--out", default="output/probe_size_names")
    p.add_argument("--u", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    p.add_argument("--scale", choices=["judged", "confident"], default="judged")
    p.add_argument("--opts", nargs="+", default=[])
    args = p.parse_args()

    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.karyotype import cell
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs
    from deepacc_d2.app.model_zoo import resolve_model
    from deepacc_d2.classes import NUM_CLASSES
    from deepacc_d2.studies import count_stages, karyotype_benchmark

    means, covs = fit_sizes(args.fit_dataset, NUM_CLASSES)
    print("class size means (log diagonal, log short side):")
    for k in range(NUM_CLASSES):
        sd = np.sqrt(np.diag(covs[k]))
        print(f"  {k:2d}: {means[k][0]:+.3f} ({sd[0]:.3f})  {means[k][1]:+.3f} ({sd[1]:.3f})")

    state = {"u": 0.0}

    def sized_counted(instances, rules):
        boxes, class_scores = cell.counting_candidates(instances, rules)
        keep = cell.judge_probabilities(rules.judge, boxes, class_scores) if rules.judge else None
        if state["u"] > 0 and len(boxes):
            if args.scale == "judged" and keep is not None and (keep >= 0.5).sum() >= 5:
                scale = boxes[keep >= 0.5]
            else:
                fg = class_scores.sum(axis=1)
                scale = boxes[fg >= 0.5] if (fg >= 0.5).sum() >= 5 else boxes
            ll = log_likelihood(relative_sizes(boxes, scale), means, covs)
            fg = class_scores.sum(axis=1, keepdims=True)
            names = class_scores / np.clip(fg, 1e-12, None)
            w = names * np.exp(state["u"] * (ll - ll.max(axis=1, keepdims=True)))
            class_scores = w / np.clip(w.sum(axis=1, keepdims=True), 1e-300, None) * fg
        classes, margins = cell.name_chromosomes(class_scores, rules, keep)
        counted = classes >= 0
        classes, class_scores = classes[counted], class_scores[counted]
        return {
            "boxes": boxes[counted],
            "classes": classes,
            "scores": class_scores[np.arange(len(classes)), classes],
            "class_scores": class_scores,
            "margins": margins[counted],
        }

    karyotype_benchmark.counted_detections = sized_counted
    config_file, weights, model_opts = resolve_model(args.weights, None)
    cfg = setup_cfg(config_file, model_opts + args.opts, weights)
    records = cached_proposal_outputs(cfg, args.dataset, args.cache)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for u in args.u:
        state["u"] = u
        report, _ = count_stages.stage_report(cfg, records, args.dataset, "probe", args.out)
        keys = (
            "counted_once_pct",
            "named_right_pct",
            "not_chromosome_pct",
            "no_candidate_pct",
            "not_counted_pct",
            "named_wrong_pct",
            "count_right_pct",
            "call_exact_pct",
        )
        row = {"u": u, **{k: round(report[k], 2) for k in keys}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(os.path.join(args.out, f"{args.dataset}_{args.scale}.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
