"""
Table 1 over seeds on real metaphases, at a cost two CPU cores can pay.

Protocol: the parts every row shares (backbone, FPN, RPN) come from one trained detector and
stay frozen. Its proposals and their RoIAlign features are computed once per image (train
images at the test-time size, no augmentation) and cached in memory. Each row of Table 1 then
trains only its box head and predictor (``MODEL.DEEPACC`` switches of the row) from a fresh
initialisation, for the same iterations, with the same image order and the same proposal
sampling for a given seed (detectron2's IoU matcher and ``subsample_labels``, seeded by (seed,
iteration)), and is evaluated on the cached ``cil24_val`` proposals with the project's
evaluator (mAP, mAPmax, Acc, AER). A seed changes the head's initialisation, the image order
and the sampling, equally for every row, so rows compare paired by seed. Table 2's RetinaNet
(row "r") trains its head on the same frozen trunk (:mod:`.ablation_retinanet`).
"""

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.sampling import subsample_labels
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

from ..app.config import setup_cfg
from ..data.mapper import build_eval_loader
from ..data.stream import derived_seed, seeded_order
from ..engine.files import write_atomic
from ..engine.precision import cpu_bf16_inference
from ..engine.runs import REUSE, run_decision
from ..engine.solver import build_lr_scheduler
from ..evaluation.karyotype_evaluation import annotations_to_arrays, evaluate_predictions
from .ablation_retinanet import (
    build_retinanet,
    cache_levels,
    evaluate_retinanet,
    retinanet_opts,
    train_retinanet,
)
from .table1 import METRICS, table1_rows

logger = logging.getLogger(__name__)

RETINANET = "r"  # the row of Table 2's RetinaNet: not a switch of the RoI head
RETINANET_NAME = "RetinaNet (Table 2)"
BRANCH_STATS = (
    "fast_rcnn/fg_cls_accuracy",
    "deepacc/margin/fg_cls_accuracy",
    "deepacc/local_center_fraction",
    "deepacc/local_center_purity",
)


def row_name(row: str) -> str:
    """A row's name in the tables: Table 1's (:mod:`.table1`), or RetinaNet's."""
    return RETINANET_NAME if row == RETINANET else table1_rows()[row].name


@dataclass
class CachedImage:
    """One image's RoIs: their pooled features (P, C, S, S) float16 and boxes (P, 4) at the
    resized scale; for training, each RoI's label (-1 ignored, K background, else the class)
    and its matched true box; for evaluation, the dataset dict and the original size."""

    features: torch.Tensor
    boxes: torch.Tensor
    image_size: tuple
    labels: Optional[torch.Tensor] = None
    matched_boxes: Optional[torch.Tensor] = None
    dataset_dict: Optional[Dict] = None


@torch.no_grad()
def cache_rois(cfg, weights: str, dataset_name: str, training: bool, max_images: int = 0):
    """
    The frozen detector's proposals and RoI features of a dataset's images (the first
    ``max_images``, 0: all), with the true boxes appended as RoIs for training (as detectron2
    does) and labelled by its matcher.

    Returns:
        list[CachedImage]
    """
    model = build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    model.eval()
    heads = model.roi_heads
    truth = {d["file_name"]: d for d in DatasetCatalog.get(dataset_name)}
    cached = []
    with cpu_bf16_inference(cfg, model):
        for inputs in build_eval_loader(cfg, dataset_name):
            d = inputs[0]
            images = model.preprocess_image(inputs)
            features = model.backbone(images.tensor)
            proposals, _ = model.proposal_generator(images, features, None)
            boxes = proposals[0].proposal_boxes.tensor.float()
            h, w = images.image_sizes[0]
            gt_boxes, gt_classes = annotations_to_arrays(truth[d["file_name"]])
            item = {}
            if training:
                scale = torch.tensor([w / d["width"], h / d["height"]] * 2)
                gt = (torch.as_tensor(gt_boxes, dtype=torch.float32) * scale).to(boxes.device)
                boxes = torch.cat([boxes, gt])
                labels, matched_boxes = label_rois(heads, boxes, gt, gt_classes)
                item = {"labels": labels, "matched_boxes": matched_boxes}
            else:
                item = {"dataset_dict": truth[d["file_name"]]}
            pooled = heads.box_pooler([features[f] for f in heads.box_in_features], [Boxes(boxes)])
            item = {k: v.cpu() if torch.is_tensor(v) else v for k, v in item.items()}
            cached.append(CachedImage(pooled.half().cpu(), boxes.cpu(), (h, w), **item))
            if max_images and len(cached) >= max_images:
                break
    return cached


def label_rois(heads, boxes: torch.Tensor, gt: torch.Tensor, gt_classes):
    """
    detectron2's labels of RoIs (``StandardROIHeads.label_and_sample_proposals`` before its
    sampling): the class of the true box each matches at IoU >= the threshold, background
    (K) below it, -1 where the matcher ignores it; and each RoI's matched true box.

    Args:
        boxes (Tensor): (P, 4) RoIs, the true boxes among them.
        gt (Tensor): (G, 4) true boxes; gt_classes: (G,) their classes.
    """
    if not len(gt):
        return torch.full((len(boxes),), heads.num_classes, dtype=torch.long), boxes
    matched, matched_labels = heads.proposal_matcher(pairwise_iou(Boxes(gt), Boxes(boxes)))
    labels = torch.as_tensor(gt_classes, device=boxes.device)[matched]
    labels[matched_labels == 0] = heads.num_classes
    labels[matched_labels == -1] = -1
    return labels, gt[matched]


def build_head(cfg, seed: int):
    """The row's ROI heads from a fresh initialisation drawn with ``seed``."""
    torch.manual_seed(seed)
    return build_model(cfg).roi_heads


def train_head(cfg, heads, cache: List[CachedImage], seed: int, iterations: int) -> Dict:
    """
    Train a row's box head and predictor on cached RoIs. Image order and RoI sampling depend
    on ``seed`` only, not on the row.

    Returns:
        dict: the mean over the last fifth of the iterations of the branch statistics the
        heads log (:data:`BRANCH_STATS`), and the training seconds.
    """
    if not cache:
        raise ValueError("no training image could be read: nothing to train on")
    heads.train()
    device = torch.device(cfg.MODEL.DEVICE)
    params = torch.nn.ModuleList([heads.box_head, heads.box_predictor])
    optimizer = build_optimizer(cfg, params)
    scheduler = build_lr_scheduler(cfg, optimizer)
    batch = cfg.SOLVER.IMS_PER_BATCH
    order = seeded_order(seed, iterations * batch, len(cache))
    logged = {k: [] for k in BRANCH_STATS}
    start = time.perf_counter()
    with EventStorage(0) as storage:
        for it in range(iterations):
            storage.iter = it
            torch.manual_seed(derived_seed(seed, it))
            x, proposals = [], []
            for i in order[it * batch : (it + 1) * batch]:
                image = cache[i]
                fg, bg = subsample_labels(
                    image.labels,
                    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
                    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION,
                    heads.num_classes,
                )
                keep = torch.cat([fg, bg])
                x.append(image.features[keep].to(device, torch.float32))
                proposals.append(
                    Instances(
                        image.image_size,
                        proposal_boxes=Boxes(image.boxes[keep].to(device)),
                        gt_classes=image.labels[keep].to(device),
                        gt_boxes=Boxes(image.matched_boxes[keep].to(device)),
                    )
                )
            predictions = heads.box_predictor(heads.box_head(torch.cat(x)))
            losses = heads.box_predictor.losses(predictions, proposals)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            scheduler.step()
            if it >= iterations * 4 // 5:
                for key in BRANCH_STATS:
                    if key in storage.latest():
                        logged[key].append(storage.latest()[key][0])
    stats_ = {k: float(np.mean(v)) for k, v in logged.items() if v}
    return {**stats_, "train_s": time.perf_counter() - start}


@torch.no_grad()
def evaluate_head(cfg, heads, cache: List[CachedImage]) -> Dict[str, float]:
    """mAP, mAPmax, Acc, AER of a row on cached evaluation RoIs (§3.1 thresholds)."""
    heads.eval()
    device = torch.device(cfg.MODEL.DEVICE)
    pairs = []
    for image in cache:
        features = image.features.to(device, torch.float32)
        predictions = heads.box_predictor(heads.box_head(features))
        proposal = Instances(image.image_size, proposal_boxes=Boxes(image.boxes.to(device)))
        (result,), _ = heads.box_predictor.inference(predictions, [proposal])
        d = image.dataset_dict
        pairs.append((d, detector_postprocess(result.to("cpu"), d["height"], d["width"])))
    k = cfg.TEST.KARYOTYPE
    metrics = evaluate_predictions(
        pairs, iou_thresh=k.IOU_THRESH, score_thresh=k.SCORE_THRESH, nms_thresh=k.NMS_THRESH
    )["karyotype"]
    return {m: float(metrics[m]) for m in METRICS}


def run_table(
    config: str,
    weights: str,
    out_dir: str,
    rows=None,
    seeds=(0, 1, 2),
    iterations: int = 1500,
    train_images: int = 600,
    val_images: int = 0,
    opts=(),
) -> Dict:
    """
    Every (row, seed): train and evaluate; each run's result is written to
    ``out_dir/runs/<row>_s<seed>.json`` when it ends, and a run whose file exists with the
    same setting is not run again (an interrupted table goes on where it stopped).

    Args:
        rows: letters of :func:`.table1.table1_rows` and :data:`RETINANET` (None: Table 1's).

    Returns:
        dict: (row, seed) -> result.
    """
    table = table1_rows()
    rows = tuple(table) if rows is None else tuple(rows)
    unknown = [r for r in rows if r != RETINANET and r not in table]
    if unknown:
        raise ValueError(f"rows {unknown}: Table 1 has {''.join(table)}, RetinaNet {RETINANET}")
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    schedule = ["SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", str(iterations)]
    # what a run's result depends on besides its row and seed: a run file made otherwise
    # is made again
    setting = {
        "config": config,
        "weights": weights,
        "iterations": iterations,
        "train_images": train_images,
        "val_images": val_images,
        "opts": list(opts),
    }
    todo = [(r, s) for r in rows for s in seeds if _done(out_dir, r, s, setting) is None]
    cached = _cache_inputs(
        config, weights, list(opts), schedule, {r for r, _ in todo}, train_images, val_images
    )
    for row, seed in todo:
        result = _run_one(config, list(opts), schedule, row, seed, iterations, cached)
        result.update(row=row, seed=seed, setting=setting)
        write_atomic(_run_path(out_dir, row, seed), json.dumps(result, indent=1))
        logger.info(f"row {row} seed {seed}: " + ", ".join(f"{m} {result[m]:.1f}" for m in METRICS))
    return {(r, s): _done(out_dir, r, s, setting) for r in rows for s in seeds}


def _cache_inputs(config, weights, opts, schedule, rows, train_images, val_images) -> Dict:
    """
    What the runs of ``rows`` train and are evaluated on, computed once by the frozen
    detector: "levels": (RetinaNet's config, train, val FPN levels) when :data:`RETINANET` is
    among them; "rois": (train, val RoIs) when a Table 1 row is.
    """
    base = setup_cfg(config, opts + schedule, training=True)
    train_name, val_name = base.DATASETS.TRAIN[0], base.DATASETS.TEST[0]
    cached = {}
    if RETINANET in rows:
        start = time.perf_counter()
        cfg = setup_cfg(config, opts + retinanet_opts(base) + schedule, training=True)
        cached["levels"] = (
            cfg,
            cache_levels(cfg, weights, train_name, True, train_images),
            cache_levels(cfg, weights, val_name, False, val_images),
        )
        logger.info(f"cached the FPN levels in {time.perf_counter() - start:.0f} s")
    if rows - {RETINANET}:
        start = time.perf_counter()
        # the training proposals as the RPN makes them in training (detectron2's counts)
        rpn = base.MODEL.RPN
        train_cfg = setup_cfg(
            config,
            opts
            + schedule
            + ["MODEL.RPN.PRE_NMS_TOPK_TEST", str(rpn.PRE_NMS_TOPK_TRAIN)]
            + ["MODEL.RPN.POST_NMS_TOPK_TEST", str(rpn.POST_NMS_TOPK_TRAIN)],
            training=True,
        )
        train = cache_rois(train_cfg, weights, train_name, True, train_images)
        val = cache_rois(base, weights, val_name, False, val_images)
        cached["rois"] = (train, val)
        logger.info(
            f"cached {len(train)} + {len(val)} images in {time.perf_counter() - start:.0f} s"
        )
    return cached


def _run_one(config, opts, schedule, row, seed, iterations, cached) -> Dict:
    """Train and evaluate one (row, seed) on the cached inputs (:func:`_cache_inputs`)."""
    if row == RETINANET:
        cfg, train, val = cached["levels"]
        model = build_retinanet(cfg, seed)
        result = train_retinanet(cfg, model, train, seed, iterations)
        result.update(evaluate_retinanet(cfg, model, val))
        return result
    train, val = cached["rois"]
    row_opts = table1_rows()[row].opts()
    cfg = setup_cfg(config, opts + row_opts + schedule, training=True)
    heads = build_head(cfg, seed)
    result = train_head(cfg, heads, train, seed, iterations)
    result.update(evaluate_head(cfg, heads, val))
    return result


def _run_path(out_dir, row, seed):
    return os.path.join(out_dir, "runs", f"{row}_s{seed}.json")


def _done(out_dir, row, seed, setting) -> Optional[Dict]:
    """The run's result when its file was made with ``setting``, else None (:func:`run_decision`:
    a file made otherwise is logged and made again)."""
    path = _run_path(out_dir, row, seed)
    result = None
    if os.path.isfile(path):
        with open(path) as f:
            result = json.load(f)
    decision = run_decision(
        path,
        setting,
        None if result is None else result.get("setting", {}),
        done=int(result is not None),
        if_other="start",
        advice="run again",
    )
    return result if decision == REUSE else None
