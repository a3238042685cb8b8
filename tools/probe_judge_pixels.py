#!/usr/bin/env python
"""
First looks at three more judges of the mirror model's candidates (docs/studies/counting.md):
features from the cell's own pixels (an Otsu mask), a second judge that also sees its
neighbours' judgement (auto-context), and boosted trees (scikit-learn, not a dependency:
--sklearn PATH). Reads the mirror model's caches of tools/count_stages.py.

    python tools/probe_judge_pixels.py --cache output/count_stages_mirror [--sklearn DIR]
"""

import argparse
import dataclasses
import sys

import numpy as np
import torch
from scipy import ndimage

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype import cell as cell_module
from deepacc_d2.app.karyotype.candidates import (
    cached_proposal_outputs,
    model_detections,
    one_box_labels,
)
from deepacc_d2.app.karyotype.judge import candidate_features
from deepacc_d2.app.karyotype.karyogram import otsu_threshold
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.data.images import read_metaphase
from deepacc_d2.evaluation.matching import box_intersection, box_iou
from deepacc_d2.studies.count_stages import auc, covered
from deepacc_d2.studies.judge_training import split_images, train_judge
from deepacc_d2.studies.karyotype_benchmark import (
    _instances,
    counted_and_matched,
    counted_cell_judgment,
    detection_cells,
    summarize,
)


def pixel_features(gray, boxes, fg):
    """Per candidate, from the cell's Otsu mask (closed 3x3, holes filled) and its connected
    components: dark share of the box, log dark pixels against the confident candidates'
    median, the share of the box's main component inside the box, the main component's share
    of the box's dark pixels, the number of components holding >= 10 % of them (at most 4),
    the second one's share, the IoU of the main component's box with the box, log size of the
    main component against the median."""
    mask = ndimage.binary_fill_holes(
        ndimage.binary_closing(gray <= otsu_threshold(gray), np.ones((3, 3), bool))
    )
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    comp = np.array(
        [[o[1].start, o[0].start, o[1].stop, o[0].stop] for o in ndimage.find_objects(labels)],
        np.float64,
    ).reshape(-1, 4)
    h, w = gray.shape
    rows, dark = [], np.zeros(len(boxes))
    for i, b in enumerate(boxes):
        x0, y0 = int(max(b[0], 0)), int(max(b[1], 0))
        x1, y1 = int(np.ceil(min(b[2], w))), int(np.ceil(min(b[3], h)))
        crop = labels[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
        count = np.bincount(crop.ravel(), minlength=n + 1).astype(np.float64)
        count[0] = 0
        dark[i] = count.sum()
        if dark[i] == 0:
            rows.append((0, 0, 0, 0, 0, 0, 1))
            continue
        order = np.argsort(-count)
        k = order[0]
        iou = box_iou(comp[k - 1][None], np.asarray(b, np.float64)[None])[0, 0]
        rows.append(
            (
                dark[i] / max(crop.size, 1),
                count[k] / sizes[k],
                count[k] / dark[i],
                min((count >= 0.1 * dark[i]).sum(), 4),
                count[order[1]] / dark[i] if n > 1 else 0.0,
                iou,
                sizes[k],
            )
        )
    rows = np.asarray(rows, np.float64).reshape(-1, 7)
    confident = fg >= 0.5 if (fg >= 0.5).any() else np.ones(len(fg), bool)
    median = max(np.median(dark[confident]), 1.0) if len(fg) else 1.0
    return np.column_stack(
        [
            rows[:, 0],
            np.log(np.maximum(dark, 1) / median),
            rows[:, 1:6],
            np.log(np.maximum(rows[:, 6], 1) / median),
        ]
    ).astype(np.float32)


def context_features(boxes, q):
    """Per candidate, from a first judge's q of the cell: its q, the largest q of its
    neighbours (IoU >= 0.3, >= 0.5), of the candidates it lies >= 60 % inside, of those lying
    >= 60 % inside it and their summed q, how many neighbours have a higher q (at most 4), its
    IoU with the neighbour of highest q, the cell's summed q against 46."""
    r = len(boxes)
    if r == 0:
        return np.zeros((0, 9), np.float32)
    iou = box_iou(boxes, boxes)
    inter = box_intersection(boxes, boxes)
    np.fill_diagonal(iou, 0)
    np.fill_diagonal(inter, 0)
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 1e-9, None).prod(1)
    inside, contains = inter / area[:, None], inter / area[None, :]
    near = iou >= 0.3
    qq = np.broadcast_to(q[None, :], (r, r))

    def most(m):
        return np.where(m, qq, 0).max(1)

    best = np.where(near, qq, -1).argmax(1)
    return np.column_stack(
        [
            q,
            most(near),
            most(iou >= 0.5),
            most(inside >= 0.6),
            most(contains >= 0.6),
            np.where(contains >= 0.6, qq, 0).sum(1),
            np.minimum((near & (qq > q[:, None])).sum(1), 4),
            np.where(near.any(1), iou[np.arange(r), best], 0),
            np.full(r, q.sum() / 46),
        ]
    ).astype(np.float32)


def collect(cfg, records):
    rules = dataclasses.replace(cell_module.KaryotypeRules.from_config(cfg), judge="")
    out = []
    for r in records:
        boxes, scores = cell_module.counting_candidates(model_detections(cfg, r), rules)
        gray = read_metaphase(r["file_name"])[:, :, 0]
        out.append(
            {
                "boxes": boxes,
                "base": candidate_features(boxes, scores),
                "pixels": pixel_features(gray, boxes, scores.sum(1)),
                "labels": one_box_labels(boxes, r["gt_boxes"])[0],
            }
        )
    return out


def first_features(e, pixels):
    return np.concatenate([e["base"], e["pixels"]], 1) if pixels else e["base"]


def judged(judge, x):
    with torch.no_grad():
        return torch.sigmoid(judge(torch.from_numpy(x))).numpy().astype(np.float64)


def count(cfg, records, probs):
    """The shipped rule with the given per-cell probabilities in place of the judge's."""
    rules = cell_module.KaryotypeRules.from_config(cfg)
    shipped, current = cell_module.judge_probabilities, {}
    cell_module.judge_probabilities = lambda path, boxes, scores: current["q"]
    try:
        cells, judgments, on_none, counted = detection_cells(cfg, records), [], 0, 0
        for c, q in zip(cells, probs):
            current["q"] = q
            detections, matched = counted_and_matched(c, rules)
            judgments.append(counted_cell_judgment(c, detections, matched, rules))
            on_none += int((~covered(c["gt_boxes"], detections["boxes"])).sum())
            counted += len(detections["boxes"])
    finally:
        cell_module.judge_probabilities = shipped
    s = summarize(judgments)
    return s["count_right"], s["exact"], s["named_right"], 100.0 * on_none / counted


def where_errors_fall(cfg, records):
    """The shipped model's counted set on records: its errors by the cell's count (right,
    over, under), the judge's q of the chromosomes not counted and of the counted objects on
    no chromosome, and how often one counted box lies >= 80 % inside another, by what each is."""
    rules = cell_module.KaryotypeRules.from_config(cfg)
    tally, q_missed, q_none, nested = {}, [], [], {}
    for c in detection_cells(cfg, records):
        boxes, scores = cell_module.counting_candidates(_instances(c), rules)
        q = cell_module.judge_probabilities(rules.judge, boxes, scores)
        counted = counted_and_matched(c, rules)[0]["boxes"]
        gt = c["gt_boxes"]
        key = ["under", "right", "over"][int(np.sign(len(counted) - len(gt))) + 1]
        one, matched = one_box_labels(counted, gt)
        on_any = covered(gt, counted)
        once = np.zeros(len(gt), bool)
        once[matched[one]] = True
        for name, n in (
            ("cells", 1),
            ("on no chromosome", (~on_any).sum()),
            ("second box", (on_any & ~one).sum()),
            ("not counted once", (~once).sum()),
        ):
            tally[(name, key)] = tally.get((name, key), 0) + int(n)
        iou = box_iou(gt, boxes)
        q_missed += [q[iou[g] >= 0.5].max() for g in np.nonzero(~once)[0] if (iou[g] >= 0.5).any()]
        q_none += [q[np.abs(boxes - b).sum(1).argmin()] for b in counted[~on_any]]
        kind = np.where(one, "one box", np.where(on_any, "second box", "on no chromosome"))
        area = np.clip(counted[:, 2:] - counted[:, :2], 0, None).prod(1)
        inside = box_intersection(counted, counted) / np.maximum(area, 1e-9)[:, None]
        np.fill_diagonal(inside, 0)
        for i, j in zip(*np.nonzero(inside >= 0.8)):
            nested[(kind[i], kind[j])] = nested.get((kind[i], kind[j]), 0) + 1
    for k, v in sorted(tally.items()):
        print("errors", k, v)
    for name, q in (("not counted once", q_missed), ("on no chromosome", q_none)):
        print("q of", name, len(q), np.percentile(q, [10, 25, 50, 75, 90]).round(2))
    for k, v in sorted(nested.items()):
        print("counted box inside a counted box (inner, outer)", k, v)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default="cil-r18-crops-mirror")
    p.add_argument("--cache", default="output/count_stages_mirror")
    p.add_argument("--sklearn", help="a folder holding scikit-learn, for the trees")
    args = p.parse_args()
    config_file, weights, opts = resolve_model(args.weights, None)
    cfg = setup_cfg(config_file, opts, weights)
    train = cached_proposal_outputs(cfg, "cil24_train", args.cache)
    val = cached_proposal_outputs(cfg, "cil24_val", args.cache)
    where_errors_fall(cfg, val)
    ex_train, ex_val = collect(cfg, train), collect(cfg, val)
    fit, held = split_images(len(train), 0.2, 0)  # the judge training's split
    sets = {
        "held": ([ex_train[i] for i in held], [train[i] for i in held]),
        "val": (ex_val, val),
    }
    rows = {}
    for pixels in (False, True):
        name = "+ pixels" if pixels else "shipped features"

        def fitted(examples, extra=None, pixels=pixels):
            xs = [
                first_features(e, pixels)
                if extra is None
                else np.concatenate([first_features(e, pixels), extra[i]], 1)
                for i, e in enumerate(examples)
            ]
            return train_judge(list(zip(xs, [e["labels"] for e in examples])), 64, 30, seed=0)

        first = fitted([ex_train[i] for i in fit])
        # the second judge trains on out-of-fold q of the first (two halves of `fit`)
        halves = np.random.default_rng(1).permutation(fit)
        oof = {}
        for a, b in ((halves[::2], halves[1::2]), (halves[1::2], halves[::2])):
            j = fitted([ex_train[i] for i in np.sort(a)])
            for i in b:
                oof[i] = judged(j, first_features(ex_train[i], pixels))
        ctx = [context_features(ex_train[i]["boxes"], oof[i]) for i in fit]
        second = fitted([ex_train[i] for i in fit], ctx)
        for where, (examples, records) in sets.items():
            labels = np.concatenate([e["labels"] for e in examples])
            q1 = [judged(first, first_features(e, pixels)) for e in examples]
            x2 = [
                np.concatenate([first_features(e, pixels), context_features(e["boxes"], q)], 1)
                for e, q in zip(examples, q1)
            ]
            q2 = [judged(second, x) for x in x2]
            for arm, q in ((name, q1), (name + ", + neighbours' judgement", q2)):
                rows.setdefault(arm, {})[where] = (auc(np.concatenate(q), labels),) + count(
                    cfg, records, q
                )
                print(arm, where, rows[arm][where], flush=True)
    if args.sklearn:
        sys.path.append(args.sklearn)
        from sklearn.ensemble import HistGradientBoostingClassifier

        for pixels in (False, True):
            x = np.concatenate([first_features(ex_train[i], pixels) for i in fit])
            y = np.concatenate([ex_train[i]["labels"] for i in fit])
            trees = HistGradientBoostingClassifier(
                max_iter=400, learning_rate=0.05, max_leaf_nodes=63, random_state=0
            ).fit(x, y)
            arm = "boosted trees" + (", + pixels" if pixels else "")
            for where, (examples, records) in sets.items():
                q = [trees.predict_proba(first_features(e, pixels))[:, 1] for e in examples]
                labels = np.concatenate([e["labels"] for e in examples])
                rows.setdefault(arm, {})[where] = (auc(np.concatenate(q), labels),) + count(
                    cfg, records, q
                )
                print(arm, where, rows[arm][where], flush=True)
    print(
        "\n| judge | AUC held / val | held-out train cells: counted right / called exactly / "
        "named right / on no chromosome % | `cil24_val`: the same |\n|---|---|---|---|"
    )
    for arm, r in rows.items():
        h, v = r["held"], r["val"]
        print(
            f"| {arm} | {h[0]:.4f} / {v[0]:.4f} | "
            + " / ".join(f"{x:.1f}" if k < 3 else f"{x:.2f}" for k, x in enumerate(h[1:]))
            + " | "
            + " / ".join(f"{x:.1f}" if k < 3 else f"{x:.2f}" for k, x in enumerate(v[1:]))
            + " |"
        )


if __name__ == "__main__":
    main()
