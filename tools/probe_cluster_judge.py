"""A first look (not the product): a CNN judge of each counting candidate that sees its pixels
with context (the box grown by half its longest side on every side, 64 px), where the box
lies, and where the stronger candidates overlapping it lie; stacked on the shipped MLP judge.

    python tools/probe_cluster_judge.py extract val     # 17 s
    python tools/probe_cluster_judge.py extract train   # 50 s, 1.2 GB
    python tools/probe_cluster_judge.py train           # 5 epochs, 4.6 min
    python tools/probe_cluster_judge.py count           # 1.5 min

Run from the repository root, with the mirror model's candidates cached in
output/count_stages_mirror (MODEL_ZOO.md, cil-r18-crops-mirror's judge command) and its judge
trained on the 976 fit cells in output/judge_mirror/judge_fit.pth.
"""

import dataclasses
import hashlib
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.ops import roi_align

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype import cell as cellmod
from deepacc_d2.app.karyotype.candidates import (
    cached_proposal_outputs,
    model_detections,
    one_box_labels,
)
from deepacc_d2.app.karyotype.cell import KaryotypeRules, counting_candidates
from deepacc_d2.app.karyotype.judge import candidate_features, load_judge
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.data.images import read_metaphase
from deepacc_d2.modeling.backbone import basic_resnet
from deepacc_d2.studies import judge_training as jt
from deepacc_d2.studies.count_stages import auc
from deepacc_d2.studies.karyotype_benchmark import detection_cells

OUT = "output/cluster_judge"
CACHE = "output/count_stages_mirror"
S = 64
GROW = 0.5
torch.set_num_threads(2)


def setup():
    cf, w, mo = resolve_model("cil-r18-crops-mirror", None)
    cfg = setup_cfg(cf, mo, w)
    return cfg, KaryotypeRules.from_config(cfg)


def squares(boxes):
    x0, y0, x1, y1 = boxes.unbind(1)
    longest = torch.maximum(x1 - x0, y1 - y0).clamp(min=1.0)
    side = longest * (1 + 2 * GROW)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - side / 2, cy - side / 2, side


def cell_crops(image, boxes, fg):
    """(R, 3, S, S) uint8: gray with context, this box, the stronger overlapping boxes."""
    gray = torch.from_numpy(image.mean(axis=2).astype(np.float32))[None, None]
    b = torch.from_numpy(boxes).float()
    left, top, side = squares(b)
    rois = torch.stack([torch.zeros_like(left), left, top, left + side, top + side], 1)
    crops = roi_align(gray, rois, (S, S), 1.0, 0, True)[:, 0]  # R x S x S
    steps = (torch.arange(S, dtype=torch.float32) + 0.5) / S
    gx = left[:, None] + steps[None] * side[:, None]  # R x S
    gy = top[:, None] + steps[None] * side[:, None]
    h, w = image.shape[:2]
    outside = ((gy < 0) | (gy > h))[:, :, None] | ((gx < 0) | (gx > w))[:, None, :]
    crops = torch.where(outside, torch.full_like(crops, 255.0), crops)
    x0, y0, x1, y1 = b.unbind(1)
    # in_x[i, j, s]: column s of crop i lies inside box j
    in_x = (gx[:, None, :] >= x0[None, :, None]) & (gx[:, None, :] <= x1[None, :, None])
    in_y = (gy[:, None, :] >= y0[None, :, None]) & (gy[:, None, :] <= y1[None, :, None])
    r = len(b)
    own = (
        in_y[torch.arange(r), torch.arange(r)][:, :, None]
        & in_x[torch.arange(r), torch.arange(r)][:, None, :]
    )
    ix = (torch.minimum(x1[:, None], x1[None]) - torch.maximum(x0[:, None], x0[None])).clamp(min=0)
    iy = (torch.minimum(y1[:, None], y1[None]) - torch.maximum(y0[:, None], y0[None])).clamp(min=0)
    f = torch.from_numpy(fg).float()
    nbr = (ix * iy > 0) & (f[None, :] > f[:, None])  # [i, j]: j stronger and overlapping i
    strong = torch.zeros(r, S, S, dtype=torch.bool)
    for i in range(r):
        js = torch.nonzero(nbr[i])[:, 0]
        if len(js):
            strong[i] = (in_y[i, js][:, :, None] & in_x[i, js][:, None, :]).any(0)
    out = torch.stack([crops.clamp(0, 255), own.float() * 255, strong.float() * 255], 1)
    return out.round().to(torch.uint8).numpy()


def extract(split):
    cfg, rules = setup()
    rules0 = dataclasses.replace(rules, judge="")
    judge = load_judge("output/judge_mirror/judge_fit.pth")
    records = cached_proposal_outputs(cfg, f"cil24_{split}", CACHE)
    crops, labels, cells, logits_mlp = [], [], [], []
    t = time.time()
    for k, rec in enumerate(records):
        boxes, cs = counting_candidates(model_detections(cfg, rec), rules0)
        is_one, _ = one_box_labels(boxes, rec["gt_boxes"])
        image = read_metaphase(rec["file_name"])
        crops.append(cell_crops(image, boxes, cs.sum(1)))
        labels.append(is_one)
        cells.append(np.full(len(boxes), k))
        with torch.no_grad():
            x = torch.from_numpy(candidate_features(boxes, cs))
            logits_mlp.append(judge(x).numpy() if len(x) else np.zeros(0))
        if k % 100 == 0:
            print(split, k, f"{time.time() - t:.0f} s", flush=True)
    np.savez(
        f"{OUT}/{split}.npz",
        crops=np.concatenate(crops),
        labels=np.concatenate(labels),
        cells=np.concatenate(cells),
        logits_mlp=np.concatenate(logits_mlp),
    )


def net_from_crop_classifier():
    net = basic_resnet(3, 32, 32, 18, "BN", None, num_classes=1)
    state = torch.load("models/cil_crop_classifier.pth", map_location="cpu", weights_only=True)[
        "model"
    ]
    state = {k[len("net.") :]: v.float() for k, v in state.items() if k.startswith("net.")}
    own = net.state_dict()
    for k, v in state.items():
        if k not in own:
            continue
        if own[k].shape == v.shape:
            own[k] = v
        elif v.dim() == 4 and v.shape[1] == 1:  # the stem: gray into channel 0
            own[k].zero_()
            own[k][:, :1] = v
    net.load_state_dict(own)
    return net


def forward(net, x):
    x = x.float() / 127.5 - 1
    return net(x)["linear"][:, 0]


def train(epochs=5, batch=256, lr=2e-3):
    d = np.load(f"{OUT}/train.npz")
    fit, held = jt.split_images(int(d["cells"].max()) + 1, 0.2, 0)
    on = np.isin(d["cells"], fit)
    x, y = torch.from_numpy(d["crops"][on]), torch.from_numpy(d["labels"][on].astype(np.float32))
    print("training candidates", len(y), "positives", int(y.sum()), flush=True)
    torch.manual_seed(0)
    net = net_from_crop_classifier()
    steps = epochs * (len(y) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(0)
    t, step = time.time(), 0
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for s in range(len(y) // batch):
            idx = order[s * batch : (s + 1) * batch]
            xb = x[idx]
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(3)
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(2)
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.transpose(2, 3)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.binary_cross_entropy_with_logits(forward(net, xb).float(), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                print(
                    f"epoch {epoch} step {step}/{steps} loss {loss.item():.4f} "
                    f"{time.time() - t:.0f} s",
                    flush=True,
                )
    torch.save(net.state_dict(), f"{OUT}/net.pth")


@torch.no_grad()
def predict(net, crops, batch=1024):
    net.eval()
    out = []
    for s in range(0, len(crops), batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(forward(net, torch.from_numpy(crops[s : s + batch])).float())
    return torch.cat(out).numpy()


def count(weights=(0.0, 0.25, 0.5, 1.0, 2.0)):
    cfg, rules = setup()
    net = basic_resnet(3, 32, 32, 18, "BN", None, num_classes=1)
    net.load_state_dict(torch.load(f"{OUT}/net.pth"))
    for split in ("train", "val"):
        d = np.load(f"{OUT}/{split}.npz")
        cnn = predict(net, d["crops"])
        labels, cells, mlp = d["labels"], d["cells"], d["logits_mlp"]
        records = cached_proposal_outputs(cfg, f"cil24_{split}", CACHE)
        keep = (
            jt.split_images(len(records), 0.2, 0)[1]
            if split == "train"
            else np.arange(len(records))
        )
        on = np.isin(cells, keep)
        print(
            split,
            "AUC mlp",
            round(auc(mlp[on], labels[on]), 4),
            "cnn",
            round(auc(cnn[on], labels[on]), 4),
        )
        cellset = detection_cells(cfg, [records[i] for i in keep])
        rules0 = dataclasses.replace(rules, judge="")
        for w in weights:
            z = mlp + w * cnn
            table_q = {}
            for i in keep:
                boxes, cs = counting_candidates(model_detections(cfg, records[i]), rules0)
                key = hashlib.sha1(np.ascontiguousarray(boxes).tobytes()).hexdigest()
                table_q[key] = 1 / (1 + np.exp(-z[cells == i]))
            cellmod.judge_probabilities = lambda path, boxes, cs, t=table_q: t[
                hashlib.sha1(np.ascontiguousarray(boxes).tobytes()).hexdigest()
            ]
            s = jt.count_summary(cellset, rules)
            print(
                f"{split} w={w}: AUC {auc(z[on], labels[on]):.4f} right {s['count_right']:.1f} "
                f"exact {s['exact']:.1f} named {s['named_right']:.2f} "
                f"none {s['not_chromosome']:.2f} per cell {s['counted_per_cell']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    import os

    os.makedirs(OUT, exist_ok=True)
    cmd = sys.argv[1]
    if cmd == "extract":
        extract(sys.argv[2])
    elif cmd == "train":
        train(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    elif cmd == "count":
        count()
