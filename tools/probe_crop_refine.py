#!/usr/bin/env python
"""
Probe (a first look, not shipped): a box refinement from the crop. Each counting candidate is
cut from the model's pixels with a wide context (the box grown by ``--margin`` x its longest
side), and a small ResNet (the crop classifier's, started from the shipped classifier's
weights) regresses the four edges of the true box it overlaps most, in units of the
candidate's longest side. Trained on the counting candidates of cil24_train at IoU >= 0.3
with a true box; then the stage table of cil24_val with the refined boxes and the shipped judge.

    python tools/probe_crop_refine.py patches --dataset cil24_train          # IoU >= 0.3
    python tools/probe_crop_refine.py patches --dataset cil24_train --all    # every candidate
    python tools/probe_crop_refine.py patches --dataset cil24_val --all
    python tools/probe_crop_refine.py train --epochs 4 --fit-only   # the judge's 976 cells
    python tools/probe_crop_refine.py eval --moves 0.5 1.0          # shipped judge, cil24_val
    python tools/probe_crop_refine.py judge --move 0.5 [--move-features] --judge-args \
        --dataset cil24_train --out output/judge_refine_m05 --judge-weights 1 --costs 8 \
        --sex-costs 2
    python tools/probe_crop_refine.py stages --move 0.5 [--move-features] --judge-args \
        --dataset cil24_val --out output/count_stages_refine \
        --opts TEST.KARYOTYPE.COUNT_JUDGE output/judge_refine_m05/judge.pth
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from torch.nn import functional as F

OUT = "output/probe_refine"


def setup(args):
    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs
    from deepacc_d2.app.karyotype.cell import KaryotypeRules
    from deepacc_d2.app.model_zoo import resolve_model

    config_file, weights, model_opts = resolve_model("cil-r18-crops", None)
    cfg = setup_cfg(config_file, model_opts, weights)
    records = cached_proposal_outputs(cfg, args.dataset, args.cache)
    return cfg, records, KaryotypeRules.from_config(cfg)


def counting_boxes(cfg, record, rules):
    from deepacc_d2.app.karyotype.candidates import candidate_instances
    from deepacc_d2.app.karyotype.cell import counting_candidates

    detections = candidate_instances(
        record,
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
        cfg.TEST.DETECTIONS_PER_IMAGE,
    )
    return counting_candidates(detections, rules)[0]


def image_crops(cfg, file_name, boxes, size, margin):
    """(R, size, size) uint8 crops of ``boxes`` (image pixels) from the model's pixels."""
    from deepacc_d2.data.images import read_metaphase, resize_for_test
    from deepacc_d2.modeling.crop_classifier import crop_boxes

    image = read_metaphase(file_name)
    h, w = image.shape[:2]
    resized = resize_for_test(image, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    gray = torch.from_numpy(resized.astype(np.float32).mean(axis=2))[None, None]
    nh, nw = resized.shape[:2]
    scale = torch.tensor([nw / w, nh / h] * 2, dtype=torch.float32)
    b = torch.as_tensor(boxes, dtype=torch.float32) * scale
    crops = crop_boxes(
        gray, torch.tensor([[nh, nw]]), b, torch.zeros(len(b), dtype=torch.int64), size, margin
    )
    return crops[:, 0].round().clamp(0, 255).to(torch.uint8)


def edge_targets(boxes, gt):
    """(R, 4) the true box's edges minus the candidate's, over the candidate's longest side."""
    longest = np.clip((boxes[:, 2:] - boxes[:, :2]).max(axis=1), 1.0, None)
    return (gt - boxes) / longest[:, None]


def cmd_patches(args):
    from deepacc_d2.evaluation.matching import box_iou

    cfg, records, rules = setup(args)
    crops, targets, ious, cells, wh = [], [], [], [], []
    start = time.time()
    for i, r in enumerate(records):
        boxes = counting_boxes(cfg, r, rules)
        gt = r["gt_boxes"]
        if len(boxes) == 0 or len(gt) == 0:
            continue
        iou = box_iou(boxes, gt)
        best = iou.max(axis=1)
        keep = (best >= args.min_iou) if not args.all else np.ones(len(boxes), bool)
        boxes = boxes[keep]
        crops.append(image_crops(cfg, r["file_name"], boxes, args.size, args.margin))
        targets.append(edge_targets(boxes, gt[iou[keep].argmax(axis=1)]))
        ious.append(best[keep])
        wh.append(boxes[:, 2:] - boxes[:, :2])
        cells.append(np.full(len(boxes), i))
        if i % 100 == 0:
            print(f"{i} images, {sum(len(c) for c in crops)} crops, {time.time() - start:.0f} s")
    os.makedirs(OUT, exist_ok=True)
    torch.save(
        {
            "crops": torch.cat(crops),
            "targets": torch.as_tensor(np.concatenate(targets), dtype=torch.float32),
            "ious": torch.as_tensor(np.concatenate(ious)),
            "cells": torch.as_tensor(np.concatenate(cells)),
            "wh": torch.as_tensor(np.concatenate(wh), dtype=torch.float32),
            "size": args.size,
            "margin": args.margin,
        },
        os.path.join(OUT, f"patches_{args.dataset}{'_all' if args.all else ''}.pt"),
    )
    print(f"{sum(len(c) for c in crops)} crops in {time.time() - start:.0f} s")


class Refiner(torch.nn.Module):
    """The crop classifier's ResNet on two channels: the crop and where the candidate's box
    lies in it; four outputs, the edges' moves x 10."""

    def __init__(self):
        super().__init__()
        from deepacc_d2.modeling.backbone import basic_resnet

        self.net = basic_resnet(2, 32, 32, 18, "BN", None, num_classes=4)

    def forward(self, x):
        return self.net(x / 127.5 - 1)["linear"]


def box_masks(wh, size, margin):
    """(R, 1, S, S) 255 inside each candidate's box (centred, its longest side
    size / (1 + 2 margin)), 0 outside."""
    longest = wh.max(dim=1).values.clamp(min=1.0)
    half = (wh / longest[:, None]) * size / (1 + 2 * margin) / 2  # R x 2 (w, h)
    c = (torch.arange(size, dtype=torch.float32) + 0.5) - size / 2
    inside_x = c[None, :].abs() <= half[:, :1]
    inside_y = c[None, :].abs() <= half[:, 1:]
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None] * 255


def build_net(init: bool):
    from deepacc_d2.modeling.crop_classifier import read_classifier_state

    net = Refiner()
    if init:
        state = read_classifier_state("models/cil_crop_classifier.pth")
        state = {k: v for k, v in state.items() if "linear" not in k}
        stem = [k for k in state if k.endswith("stem.conv1.weight")][0]
        w = state[stem]
        state[stem] = torch.cat([w, torch.zeros_like(w)], dim=1)
        missing, _ = net.load_state_dict(state, strict=False)
        print("not from the classifier:", missing)
    return net


def flipped(crops, t, h: bool, v: bool):
    """Crops flipped left-right / up-down and their edge targets with them."""
    if h:
        crops = crops.flip(-1)
        t = torch.stack([-t[:, 2], t[:, 1], -t[:, 0], t[:, 3]], dim=1)
    if v:
        crops = crops.flip(-2)
        t = torch.stack([t[:, 0], -t[:, 3], t[:, 2], -t[:, 1]], dim=1)
    return crops, t


def cmd_train(args):
    torch.manual_seed(0)
    data = torch.load(os.path.join(OUT, f"patches_{args.train_dataset}.pt"))
    if args.fit_only:
        from deepacc_d2.studies.judge_training import split_images

        fit, _ = split_images(int(data["cells"].max()) + 1, 0.2, 0)
        rows = torch.as_tensor(np.isin(data["cells"].numpy(), fit))
        data = {
            k: (v[rows] if torch.is_tensor(v) and len(v) == len(rows) else v)
            for k, v in data.items()
        }
        print(f"{int(rows.sum())} of {len(rows)} crops: the judge's {len(fit)} training cells")
    crops, targets = data["crops"], data["targets"]
    masks = box_masks(data["wh"], data["size"], data["margin"]).to(torch.uint8)[:, 0]
    crops = torch.stack([crops, masks], dim=1)  # R x 2 x S x S
    n = len(crops)
    net = build_net(init=not args.scratch).train()
    steps = args.epochs * (n // args.batch)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    start, step = time.time(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=g)
        for b in range(n // args.batch):
            idx = order[b * args.batch : (b + 1) * args.batch]
            x = crops[idx].float()
            t = targets[idx]
            h, v = torch.rand(2, generator=g) < 0.5
            x, t = flipped(x, t, bool(h), bool(v))
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.smooth_l1_loss(net(x) * 0.1, t, beta=0.02)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if args.max_steps and step >= args.max_steps:
                break
            if step % 50 == 0:
                print(
                    f"epoch {epoch} step {step}/{steps} loss {loss.item():.4f} "
                    f"{(time.time() - start) / step:.2f} s/step",
                    flush=True,
                )
        torch.save({"model": net.state_dict()}, os.path.join(OUT, "refiner.pth"))


@torch.no_grad()
def predict(net, data, batch=512):
    net.eval()
    crops = data["crops"]
    masks = box_masks(data["wh"], data["size"], data["margin"])
    out = []
    for s in range(0, len(crops), batch):
        x = torch.cat([crops[s : s + batch].float()[:, None], masks[s : s + batch]], dim=1)
        x = x.contiguous(memory_format=torch.channels_last)
        out.append(net(x) * 0.1)
    return torch.cat(out)


def cmd_eval(args):
    from deepacc_d2.app.karyotype import cell
    from deepacc_d2.evaluation.matching import box_iou
    from deepacc_d2.studies import count_stages

    cfg, records, rules = setup(args)
    data = torch.load(os.path.join(OUT, f"patches_{args.dataset}_all.pt"))
    net = build_net(init=False)
    net.load_state_dict(torch.load(os.path.join(OUT, "refiner.pth"))["model"])
    pred = predict(net, data).numpy()
    cells = data["cells"].numpy()
    boxes_of = {}
    for i, r in enumerate(records):
        boxes_of[r["file_name"]] = (counting_boxes(cfg, r, rules), pred[cells == i])
    # the refiner alone: IoU with the nearest true box before and after, by IoU before
    before, after = [], []
    for r in records:
        boxes, t = boxes_of[r["file_name"]]
        if len(boxes) == 0:
            continue
        longest = np.clip((boxes[:, 2:] - boxes[:, :2]).max(axis=1), 1.0, None)
        new = boxes + t * longest[:, None]
        before.append(box_iou(boxes, r["gt_boxes"]).max(axis=1))
        after.append(box_iou(new, r["gt_boxes"]).max(axis=1))
    before, after = np.concatenate(before), np.concatenate(after)
    for lo, hi in [(0, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01)]:
        s = (before >= lo) & (before < hi)
        print(
            f"IoU before in [{lo}, {hi}): {s.sum()} candidates, mean IoU {before[s].mean():.3f}"
            f" -> {after[s].mean():.3f}; >= 0.5 after: {(after[s] >= 0.5).mean():.3f}"
        )

    state = {}
    original = cell.counting_candidates

    def refined(instances, rules_):
        boxes, scores = original(instances, rules_)
        kept, t = boxes_of[state["file"]]
        assert len(kept) == len(boxes) and np.allclose(kept, boxes)
        longest = np.clip((boxes[:, 2:] - boxes[:, :2]).max(axis=1), 1.0, None)
        boxes = boxes + state["move"] * t * longest[:, None]
        if args.renms > 0 and len(boxes):
            from torchvision.ops import nms

            keep = np.sort(
                nms(torch.as_tensor(boxes), torch.as_tensor(scores.sum(axis=1)), args.renms).numpy()
            )
            boxes, scores = boxes[keep], scores[keep]
        return boxes, scores

    cm = count_stages.counted_and_matched

    def matched(record, rules_):
        state["file"] = record["file_name"]
        return cm(record, rules_)

    cell.counting_candidates = refined
    count_stages.counted_and_matched = matched
    rows = []
    for move in args.moves:
        state["move"] = move
        report, _ = count_stages.stage_report(cfg, records, args.dataset, "probe", OUT)
        keys = (
            "counted_once_pct",
            "named_right_pct",
            "not_chromosome_pct",
            "duplicate_pct",
            "no_candidate_pct",
            "not_counted_pct",
            "named_wrong_pct",
            "count_right_pct",
            "call_exact_pct",
            "auc_judge",
        )
        row = {"move": move, **{k: round(report[k], 3) for k in keys}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(os.path.join(OUT, f"eval_{args.dataset}_renms{args.renms}.json"), "w") as f:
        json.dump(rows, f, indent=1)


def refined_boxes_of(args, dataset):
    """{unrefined counting boxes' bytes: refined boxes} of every image of ``dataset``."""
    args.dataset = dataset
    cfg, records, rules = setup(args)
    data = torch.load(os.path.join(OUT, f"patches_{dataset}_all.pt"))
    net = build_net(init=False)
    net.load_state_dict(torch.load(os.path.join(OUT, args.refiner))["model"])
    pred = predict(net, data).numpy()
    cells = data["cells"].numpy()
    out = {}
    for i, r in enumerate(records):
        boxes = counting_boxes(cfg, r, rules)
        t = pred[cells == i]
        assert len(t) == len(boxes)
        longest = np.clip((boxes[:, 2:] - boxes[:, :2]).max(axis=1), 1.0, None)
        new = boxes + args.move * t * longest[:, None]
        out[boxes.tobytes()] = new
        if args.move_features:
            from deepacc_d2.evaluation.matching import box_iou

            moved = np.diag(box_iou(boxes, boxes + t * longest[:, None])) if len(boxes) else []
            EXTRA[new.tobytes()] = np.concatenate(
                [t, np.abs(t).sum(axis=1, keepdims=True), np.asarray(moved)[:, None]], axis=1
            ).astype(np.float32)
    return out


EXTRA = {}  # refined boxes' bytes: (R, 6) the refiner's moves, their sum, IoU(box, refined)


def patch_features():
    """The judge's features with the refiner's moves (:data:`EXTRA`) appended."""
    from deepacc_d2.app.karyotype import cell, judge
    from deepacc_d2.studies import judge_training

    base = judge.candidate_features

    def features(boxes, class_scores):
        f = base(boxes, class_scores)
        extra = EXTRA.get(np.asarray(boxes, np.float64).reshape(-1, 4).tobytes())
        if extra is None:
            raise KeyError("no refiner moves for these boxes")
        return np.concatenate([f, extra], axis=1)

    def load(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        j = judge.CandidateJudge(int(state["hidden"]), state["model"]["mean"].shape[0])
        j.load_state_dict(state["model"])
        return j.eval()

    judge.candidate_features = features
    judge_training.candidate_features = features
    cell.load_judge = load


def patch_counting(refined):
    """Every caller of counting_candidates sees the refined boxes."""
    from deepacc_d2.app.karyotype import cell
    from deepacc_d2.studies import count_stages, judge_training

    original = cell.counting_candidates

    def counting(instances, rules):
        boxes, scores = original(instances, rules)
        return refined.get(boxes.tobytes(), boxes), scores

    cell.counting_candidates = counting
    judge_training.counting_candidates = counting
    count_stages.counting_candidates = counting  # the stage table's candidates row, too


def cmd_judge(args):
    """The judge trained and its rule chosen on refined candidates (train_candidate_judge)."""
    import importlib.util

    refined = refined_boxes_of(args, "cil24_train")
    patch_counting(refined)
    if args.move_features:
        patch_features()
    spec = importlib.util.spec_from_file_location("tcj", "tools/train_candidate_judge.py")
    tcj = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tcj)
    tcj.main(args.judge_args)


def cmd_stages(args):
    """The stage table of cil24_val on refined candidates (count_stages), --judge-args its opts."""
    import importlib.util

    refined = refined_boxes_of(args, "cil24_val")
    patch_counting(refined)
    if args.move_features:
        patch_features()
    spec = importlib.util.spec_from_file_location("cs", "tools/count_stages.py")
    cs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cs)
    cs.main(args.judge_args)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["patches", "train", "eval", "judge", "stages"])
    p.add_argument("--refiner", default="refiner.pth")
    p.add_argument("--dataset", default="cil24_val")
    p.add_argument("--cache", default="output/count_stages")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--margin", type=float, default=0.5)
    p.add_argument("--min-iou", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--scratch", action="store_true")
    p.add_argument("--renms", type=float, default=0.0)
    p.add_argument("--fit-only", action="store_true")
    p.add_argument("--move-features", action="store_true", help="the judge sees the moves")
    p.add_argument("--all", action="store_true", help="patches: every candidate, not IoU >= 0.3")
    p.add_argument("--move", type=float, default=1.0)
    p.add_argument("--judge-args", nargs=argparse.REMAINDER, default=[])
    p.add_argument("--train-dataset", default="cil24_train")
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--moves", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    args = p.parse_args()
    commands = {
        "patches": cmd_patches,
        "train": cmd_train,
        "eval": cmd_eval,
        "judge": cmd_judge,
        "stages": cmd_stages,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
