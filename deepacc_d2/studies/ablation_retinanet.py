"""
Table 2's one-stage baseline, RetinaNet, in the protocol of :mod:`.ablation`: its head trained
on the frozen backbone + FPN of the same trained detector, from a seeded fresh initialisation,
for the same iterations, on the same images in the same order.

RetinaNet has no proposals to cache: the FPN levels its head reads are cached once per image
(train images at the test-time size, as for the rows), and detectron2's own RetinaNet forward
runs on them, its backbone replaced by the cache (:class:`CachedFeatures`), so anchor labels,
focal loss and inference are the installed detectron2's (through :class:`KaryotypeRetinaNet`,
which also keeps each detection's class vector for mAPmax, Acc and AER).

Levels and anchors: P3-P6 of the detector's FPN (its P2 would cost the head four times the
compute; its P6, a max-pool of P5, stands in for RetinaNet's own P6 and P7: at 512 px no
chromosome needs P7). Anchors are Table 2's, three scales per octave from 32 px on P3 for
800-px images, scaled to the detector's test size, with the paper's elongated aspect ratios.
One image per forward pass; an iteration averages the losses of ``IMS_PER_BATCH`` images.
"""

import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from ..data.mapper import build_eval_loader
from ..data.stream import derived_seed, seeded_order
from ..engine.precision import cpu_bf16_inference
from ..engine.solver import build_lr_scheduler
from ..evaluation.karyotype_evaluation import annotations_to_arrays, evaluate_predictions
from .table1 import METRICS

LEVELS = ("p3", "p4", "p5", "p6")


def retinanet_opts(cfg) -> List[str]:
    """Config changes that make the detector's config a RetinaNet on the same trunk."""
    scale = cfg.INPUT.MIN_SIZE_TEST / 800  # Table 2's anchors are for 800-px images
    sizes = [[round(32 * 2 ** (level + i / 3) * scale, 2) for i in range(3)] for level in range(4)]
    return [
        "MODEL.META_ARCHITECTURE",
        "KaryotypeRetinaNet",
        "MODEL.RETINANET.IN_FEATURES",
        str(list(LEVELS)),
        "MODEL.RETINANET.NUM_CLASSES",
        str(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
        "MODEL.ANCHOR_GENERATOR.SIZES",
        str(sizes),
    ]


class CachedFeatures(nn.Module):
    """A backbone that hands out features computed before (``self.features``), with the
    shapes and padding of the backbone that computed them."""

    def __init__(self, backbone):
        super().__init__()
        self.shapes = backbone.output_shape()
        self.size_divisibility = backbone.size_divisibility
        self.padding_constraints = getattr(backbone, "padding_constraints", {})
        self.features = None

    def output_shape(self):
        return self.shapes

    def forward(self, images):
        return self.features


@dataclass
class CachedLevels:
    """One image's FPN levels (:data:`LEVELS`, (1, C, H_l, W_l) float16) at the resized scale
    (``image_size``); for training its true boxes there, for evaluation its dataset dict."""

    features: Dict[str, torch.Tensor]
    image_size: tuple
    instances: Optional[Instances] = None
    dataset_dict: Optional[Dict] = None


@torch.no_grad()
def cache_levels(cfg, weights: str, dataset_name: str, training: bool, max_images: int = 0):
    """The frozen detector's FPN levels of a dataset's images (the first ``max_images``,
    0: all), read as the evaluation reads them (:func:`.data.mapper.build_eval_loader`)."""
    model = build_model(cfg)
    DetectionCheckpointer(model).load(weights)  # the trunk; the detector's heads are unused
    model.eval()
    truth = {d["file_name"]: d for d in DatasetCatalog.get(dataset_name)}
    cached = []
    with cpu_bf16_inference(cfg, model):
        for inputs in build_eval_loader(cfg, dataset_name):
            d = truth[inputs[0]["file_name"]]
            images = model.preprocess_image(inputs)
            features = model.backbone(images.tensor)
            h, w = images.image_sizes[0]
            levels = {k: features[k].half().cpu() for k in LEVELS}
            if training:
                gt_boxes, gt_classes = annotations_to_arrays(d)
                scale = torch.tensor([w / d["width"], h / d["height"]] * 2)
                gt = Instances((h, w))
                gt.gt_boxes = Boxes(torch.as_tensor(gt_boxes, dtype=torch.float32) * scale)
                gt.gt_classes = torch.as_tensor(gt_classes, dtype=torch.long)
                cached.append(CachedLevels(levels, (h, w), instances=gt))
            else:
                cached.append(CachedLevels(levels, (h, w), dataset_dict=d))
            if max_images and len(cached) >= max_images:
                break
    return cached


def build_retinanet(cfg, seed: int):
    """A RetinaNet whose head starts from a fresh initialisation drawn with ``seed``, on
    cached features."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.backbone = CachedFeatures(model.backbone)
    return model


def _inputs(model, image: CachedLevels, **fields):
    model.backbone.features = {k: v.float() for k, v in image.features.items()}
    # the pixels are not read (the features are cached); the size is
    return [{"image": torch.zeros(3, *image.image_size), **fields}]


def train_retinanet(cfg, model, cache: List[CachedLevels], seed: int, iterations: int) -> Dict:
    """Train the head on cached levels, in the image order of :func:`.ablation.train_head`
    for this seed, in float32 as the rows. Returns the training seconds."""
    if not cache:
        raise ValueError("no training image could be read: nothing to train on")
    model.train()
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    batch = cfg.SOLVER.IMS_PER_BATCH
    order = seeded_order(seed, iterations * batch, len(cache))
    start = time.perf_counter()
    with EventStorage(0) as storage:
        for it in range(iterations):
            storage.iter = it
            torch.manual_seed(derived_seed(seed, it))
            optimizer.zero_grad()
            for i in order[it * batch : (it + 1) * batch]:
                image = cache[i]
                losses = model(_inputs(model, image, instances=image.instances))
                (sum(losses.values()) / batch).backward()
            optimizer.step()
            scheduler.step()
    return {"train_s": time.perf_counter() - start}


@torch.no_grad()
def evaluate_retinanet(cfg, model, cache: List[CachedLevels]) -> Dict[str, float]:
    """mAP, mAPmax, Acc, AER of the head on cached evaluation levels (§3.1 thresholds)."""
    model.eval()
    pairs = []
    for image in cache:
        d = image.dataset_dict
        (output,) = model(_inputs(model, image, height=d["height"], width=d["width"]))
        pairs.append((d, output["instances"].to("cpu")))
    k = cfg.TEST.KARYOTYPE
    metrics = evaluate_predictions(
        pairs, iou_thresh=k.IOU_THRESH, score_thresh=k.SCORE_THRESH, nms_thresh=k.NMS_THRESH
    )["karyotype"]
    return {m: float(metrics[m]) for m in METRICS}
