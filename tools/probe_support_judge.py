"""
A first look (docs/studies/counting.md), not the product: the mirror model's judge with eight
more features, each candidate's support among the model's raw proposal outputs (foreground
>= 0.02, before any NMS): their summed foreground and number at IoU >= 0.5 / 0.7 / 0.85, the
largest foreground there and the foreground-weighted mean IoU.

    python tools/probe_support_judge.py    # 30 s, from output/count_stages_mirror
"""

import dataclasses
import hashlib

import numpy as np
import torch

import deepacc_d2  # noqa
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype import cell as cellmod
from deepacc_d2.app.karyotype.candidates import (
    cached_proposal_outputs,
    model_detections,
    one_box_labels,
)
from deepacc_d2.app.karyotype.cell import KaryotypeRules, counting_candidates
from deepacc_d2.app.karyotype.judge import candidate_features
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.evaluation.matching import box_iou
from deepacc_d2.studies import judge_training as jt
from deepacc_d2.studies.count_stages import auc
from deepacc_d2.studies.karyotype_benchmark import detection_cells

cf, w, mo = resolve_model("cil-r18-crops-mirror", None)
cfg = setup_cfg(cf, mo, w)
rules = KaryotypeRules.from_config(cfg)
rules0 = dataclasses.replace(rules, judge="")


def support(boxes, rec):
    raw = np.asarray(rec["boxes"], np.float64)
    fg = np.asarray(rec["probs"])[:, :-1].sum(1)
    iou = box_iou(boxes, raw)  # C x R
    feats = []
    for t in (0.5, 0.7, 0.85):
        m = iou >= t
        feats += [np.log1p((m * fg).sum(1)), np.log1p(m.sum(1))]
    m = iou >= 0.5
    feats.append(np.where(m, fg, 0).max(1))
    feats.append((m * fg * iou).sum(1) / np.maximum((m * fg).sum(1), 1e-6))
    return np.stack(feats, 1).astype(np.float32)


def examples(records):
    out, keys = [], []
    for rec in records:
        boxes, cs = counting_candidates(model_detections(cfg, rec), rules0)
        is_one, _ = one_box_labels(boxes, rec["gt_boxes"])
        f = np.concatenate([candidate_features(boxes, cs), support(boxes, rec)], 1)
        out.append((f, is_one))
        keys.append(hashlib.sha1(np.ascontiguousarray(boxes).tobytes()).hexdigest())
    return out, keys


train = cached_proposal_outputs(cfg, "cil24_train", "output/count_stages_mirror")
val = cached_proposal_outputs(cfg, "cil24_val", "output/count_stages_mirror")
ex_tr, keys_tr = examples(train)
ex_va, keys_va = examples(val)
fit, held = jt.split_images(len(train), 0.2, 0)
nbase = ex_tr[0][0].shape[1] - 8
for name, cols in (("shipped features", slice(0, nbase)), ("+ support", slice(None))):
    judge = jt.train_judge([(ex_tr[i][0][:, cols], ex_tr[i][1]) for i in fit])
    for split, exs, keys, idx, recs in (
        ("held", ex_tr, keys_tr, held, train),
        ("val", ex_va, keys_va, np.arange(len(val)), val),
    ):
        table, zs, ys = {}, [], []
        with torch.no_grad():
            for i in idx:
                z = judge(torch.from_numpy(exs[i][0][:, cols])).numpy()
                table[keys[i]] = 1 / (1 + np.exp(-z))
                zs.append(z)
                ys.append(exs[i][1])
        cellmod.judge_probabilities = lambda path, boxes, cs, t=table: t[
            hashlib.sha1(np.ascontiguousarray(boxes).tobytes()).hexdigest()
        ]
        s = jt.count_summary(detection_cells(cfg, [recs[i] for i in idx]), rules)
        print(
            f"{name} {split}: AUC {auc(np.concatenate(zs), np.concatenate(ys)):.4f} "
            f"right {s['count_right']:.1f} exact {s['exact']:.1f} "
            f"named {s['named_right']:.2f} none {s['not_chromosome']:.2f}",
            flush=True,
        )
