#!/usr/bin/env python
"""
Two first looks at the shipped detector's localisation on cil24_val (docs/studies/counting.md,
"The boxes themselves"); not part of the product.

    # the counted boxes on no chromosome that overlap a chromosome not counted
    python tools/probe_localisation.py near-misses
    # the box head applied again to its own boxes, then the stage table
    python tools/probe_localisation.py refine --weights cil-r18-crops --dataset cil24_val \\
        --out output/probe_iter/probs1
    # box-head features at each candidate's box with its IoU against the truth, then a head
    # that predicts the IoU from them, judged on the val counting candidates
    python tools/probe_localisation.py features val
    python tools/probe_localisation.py features train
    python tools/probe_localisation.py iou-head
"""

import os
import sys

import numpy as np
import torch
from torch import nn

OUT = "output/probe_iou"


def refine(argv):
    """The stage table (tools/count_stages.py, the same arguments) with the box head applied a
    second time to the top-class box of each proposal; the class probabilities of the first
    pass, the boxes of the second."""
    from deepacc_d2.app.karyotype.candidates import _top_class_boxes
    from deepacc_d2.modeling.roi_heads import DeepACCROIHeads

    from detectron2.structures import Boxes, Instances

    def proposal_predictions(self, images, features, proposals):
        feats = [features[f] for f in self.box_in_features]
        pooled = self.box_pooler(feats, [x.proposal_boxes for x in proposals])
        pred = self.box_predictor(self.box_head(pooled))
        boxes = self.box_predictor.predict_boxes(pred, proposals)
        probs = self.box_predictor.predict_probs(pred, proposals)
        second = []
        for p, b, pr in zip(proposals, boxes, probs):
            top = Boxes(_top_class_boxes(b, pr))
            top.clip(p.image_size)
            inst = Instances(p.image_size)
            inst.proposal_boxes = top
            second.append(inst)
        pooled = self.box_pooler(feats, [x.proposal_boxes for x in second])
        boxes = self.box_predictor.predict_boxes(self.box_predictor(self.box_head(pooled)), second)
        if self.second_look is not None:
            probs = self.second_look(images, boxes, probs)
        return boxes, probs

    DeepACCROIHeads.proposal_predictions = proposal_predictions
    sys.path.insert(0, os.path.dirname(__file__))
    import count_stages

    count_stages.main(argv)


def _shipped():
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.model_zoo import resolve_model

    config_file, weights, opts = resolve_model("cil-r18-crops", None)
    return setup_cfg(config_file, opts, weights)


def near_misses():
    """Of the shipped rule's counted boxes on no chromosome (no true box at IoU >= 0.5) on
    cil24_val, those with IoU in [0.3, 0.5) with a chromosome not counted once: how many, how
    many of those chromosomes have a counting candidate at IoU >= 0.5, and the counted box's
    area against the true box's."""
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs, detection_record
    from deepacc_d2.evaluation.matching import box_iou
    from deepacc_d2.studies import count_stages as cs

    cfg = _shipped()
    rules = cs.KaryotypeRules.from_config(cfg)
    records = cached_proposal_outputs(cfg, "cil24_val", "output/count_stages", None)
    off, near, with_candidate, area_ratio = 0, 0, 0, []
    for r in records:
        _, detections, (candidates, _), _ = cs._stage_boxes(cfg, r, rules)
        counted, _ = cs.counted_and_matched(detection_record(r, detections), rules)
        gt, boxes = r["gt_boxes"], counted["boxes"]
        is_one, matched = cs.one_box_labels(boxes, gt)
        left = np.ones(len(gt), bool)
        left[matched[is_one]] = False
        iou, iou_candidates = box_iou(boxes, gt), box_iou(candidates, gt)
        for i in np.where(~(iou >= 0.5).any(axis=1))[0]:
            off += 1
            if not left.any():
                continue
            g = np.where(left)[0][iou[i, left].argmax()]
            if 0.3 <= iou[i, g] < 0.5:
                near += 1
                with_candidate += int(iou_candidates[:, g].max() >= 0.5)
                wh, wh_true = boxes[i, 2:] - boxes[i, :2], gt[g, 2:] - gt[g, :2]
                area_ratio.append(wh.prod() / wh_true.prod())
    print(f"counted boxes on no chromosome: {off}; at IoU 0.3-0.5 with one not counted: {near}")
    print(f"... whose chromosome has a counting candidate at IoU >= 0.5: {with_candidate}")
    print("their area / the true box's, quantiles 0.1 0.25 0.5 0.75 0.9:")
    print(np.quantile(area_ratio, [0.1, 0.25, 0.5, 0.75, 0.9]).round(2))


def features(split: str):
    """
    Per image the box head's features (both branches) at boxes in the model's input pixels,
    and each box's largest IoU with a true box. train: every second image, the top-class boxes
    of the proposals of detector foreground >= 0.05 (NMS 0.9 among them); val: the counting
    candidates of the shipped rule, from the stage table's cache in output/count_stages.
    """
    from deepacc_d2.app.karyotype.candidates import _top_class_boxes, cached_proposal_outputs
    from deepacc_d2.data.mapper import build_eval_loader
    from deepacc_d2.engine.predictor import load_model
    from deepacc_d2.evaluation.karyotype_evaluation import annotations_to_arrays
    from deepacc_d2.studies import count_stages as cs

    from detectron2.data import DatasetCatalog
    from detectron2.layers import nms
    from detectron2.structures import Boxes, Instances, pairwise_iou

    cfg = _shipped()
    model = load_model(cfg)
    heads = model.roi_heads
    dataset = "cil24_" + split
    truth = {d["file_name"]: d for d in DatasetCatalog.get(dataset)}
    if split == "val":
        records = cached_proposal_outputs(cfg, dataset, "output/count_stages", None)
        records = {r["file_name"]: r for r in records}
        rules = cs.KaryotypeRules.from_config(cfg)
    out = []
    with torch.no_grad():
        for n, inputs in enumerate(build_eval_loader(cfg, dataset)):
            x = inputs[0]
            if split == "train" and n % 2:
                continue
            images = model.preprocess_image(inputs)
            feats = model.backbone(images.tensor)
            props, _ = model.proposal_generator(images, feats, None)
            size = props[0].image_size
            scale = torch.tensor([x["width"] / size[1], x["height"] / size[0]] * 2)
            gt, _ = annotations_to_arrays(truth[x["file_name"]])
            levels = [feats[k] for k in heads.box_in_features]
            if split == "train":
                pooled = heads.box_pooler(levels, [props[0].proposal_boxes])
                pred = heads.box_predictor(heads.box_head(pooled))
                boxes = heads.box_predictor.predict_boxes(pred, props)[0]
                probs = heads.box_predictor.predict_probs(pred, props)[0]
                fg = probs[:, :-1].sum(1)
                top = _top_class_boxes(boxes, probs)
                keep = torch.nonzero(fg >= 0.05).squeeze(1)
                keep = keep[nms(top[keep], fg[keep], 0.9)]
                boxes = top[keep]
                in_image = boxes * scale
            else:
                _, _, candidates, _ = cs._stage_boxes(cfg, records[x["file_name"]], rules)
                in_image = torch.as_tensor(candidates[0], dtype=torch.float32)
                boxes = in_image / scale
            inst = Instances(size)
            inst.proposal_boxes = Boxes(boxes)
            cls_x, reg_x = heads.box_head(heads.box_pooler(levels, [inst.proposal_boxes]))
            iou = torch.zeros(len(boxes))
            if len(gt):
                gt_boxes = Boxes(torch.as_tensor(gt, dtype=torch.float32))
                iou = pairwise_iou(Boxes(in_image), gt_boxes).max(1).values
            out.append(
                {
                    "file_name": x["file_name"],
                    "feats": torch.cat([cls_x.flatten(1), reg_x.flatten(1)], 1).half(),
                    "iou": iou,
                    "boxes": in_image,
                }
            )
            if len(out) % 25 == 0:
                print(len(out), flush=True)
    os.makedirs(OUT, exist_ok=True)
    torch.save(out, os.path.join(OUT, f"feats_{split}.pt"))


def _logistic(z_train, y_train, z_test):
    """A logistic regression fitted by L-BFGS; its logits on z_test."""
    zt, yt = torch.tensor(z_train, dtype=torch.float32), torch.tensor(y_train, dtype=torch.float32)
    lin = nn.Linear(zt.shape[1], 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(lin(zt).squeeze(1), yt)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return lin(torch.tensor(z_test, dtype=torch.float32)).squeeze(1).numpy()


def iou_head(steps: int = 4000):
    """An MLP from the train features to the IoU (binary cross-entropy on the soft target);
    on the val counting candidates: its AUC, the foreground's and the shipped judge's, and the
    judge and the predicted IoU stacked by a logistic regression fitted on half the cells."""
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs, one_box_labels
    from deepacc_d2.studies import count_stages as cs

    torch.manual_seed(0)
    train = torch.load(os.path.join(OUT, "feats_train.pt"))
    val = torch.load(os.path.join(OUT, "feats_val.pt"))
    x = torch.cat([r["feats"] for r in train]).float()
    y = torch.cat([r["iou"] for r in train]).float()
    print("train boxes", len(x), "IoU >= 0.5:", (y >= 0.5).float().mean().item())
    mu, sd = x.mean(0), x.std(0) + 1e-3
    head = nn.Sequential(nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 1))
    opt = torch.optim.AdamW(head.parameters(), 1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for it in range(steps):
        i = torch.randint(0, len(x), (512,))
        loss = nn.functional.binary_cross_entropy_with_logits(
            head((x[i] - mu) / sd).squeeze(1), y[i]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 1000 == 0:
            print(it, loss.item())
    cfg = _shipped()
    rules = cs.KaryotypeRules.from_config(cfg)
    records = cached_proposal_outputs(cfg, "cil24_val", "output/count_stages", None)
    records = {r["file_name"]: r for r in records}
    pred, judge, fg, one, cell, true_iou = [], [], [], [], [], []
    with torch.no_grad():
        for c, v in enumerate(val):
            r = records[v["file_name"]]
            _, _, (boxes, scores), _ = cs._stage_boxes(cfg, r, rules)
            assert np.allclose(boxes, v["boxes"].numpy(), atol=1e-3)
            pred.append(torch.sigmoid(head((v["feats"].float() - mu) / sd).squeeze(1)).numpy())
            judge.append(cs.judge_probabilities(rules.judge, boxes, scores))
            fg.append(scores[:, :24].sum(1))
            one.append(one_box_labels(boxes, r["gt_boxes"])[0])
            cell.append(np.full(len(boxes), c))
            true_iou.append(v["iou"].numpy())
    pred, judge, fg, one, cell, true_iou = map(
        np.concatenate, (pred, judge, fg, one, cell, true_iou)
    )
    print(
        "val candidates", len(pred), "corr(predicted, true IoU)", np.corrcoef(pred, true_iou)[0, 1]
    )
    print(
        "AUC, one box: fg",
        cs.auc(fg, one),
        "predicted IoU",
        cs.auc(pred, one),
        "judge",
        cs.auc(judge, one),
    )

    def logit(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    z = np.stack([logit(judge), logit(pred), logit(judge) * logit(pred)], 1)
    stacked = np.zeros(len(z))
    for k in range(2):
        test = (cell % 2) == k
        stacked[test] = _logistic(z[~test], one[~test], z[test])
    print(
        "AUC, one box: the judge and the predicted IoU stacked (2-fold by cell)",
        cs.auc(stacked, one),
    )


if __name__ == "__main__":
    import deepacc_d2  # noqa: F401

    torch.set_num_threads(2)
    arm, rest = sys.argv[1], sys.argv[2:]
    if arm == "refine":
        refine(rest)
    elif arm == "near-misses":
        near_misses()
    elif arm == "features":
        features(rest[0])
    else:
        iou_head()
