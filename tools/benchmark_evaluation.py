#!/usr/bin/env python
"""
Time ``KaryotypeEvaluator`` on synthetic metaphases: N images of 46 chromosomes, 100
detections each (jittered truths, some wrong classes, extras), the load of a detectron2
model at TEST.DETECTIONS_PER_IMAGE = 100.

    python tools/benchmark_evaluation.py --num-images 100 678
"""

import argparse
import time

import numpy as np

import deepacc_d2  # noqa: E402,F401
from deepacc_d2.classes import NUM_CLASSES  # noqa: E402
from deepacc_d2.evaluation import coco_average_precision, compute_karyotype_metrics  # noqa: E402
from deepacc_d2.evaluation.selection import top1_mask  # noqa: E402


def synthetic_image(rng, num_chromosomes=46, num_detections=100):
    xy = rng.uniform(0, 1500, (num_chromosomes, 2))
    wh = rng.uniform(20, 120, (num_chromosomes, 2))
    gt_boxes = np.concatenate([xy, xy + wh], axis=1)
    gt_classes = rng.integers(NUM_CLASSES, size=num_chromosomes)
    source = rng.integers(num_chromosomes, size=num_detections)
    sizes = np.concatenate([wh[source], wh[source]], axis=1)
    boxes = gt_boxes[source] + rng.normal(0, 0.08, (num_detections, 4)) * sizes
    classes = np.where(
        rng.random(num_detections) < 0.8,
        gt_classes[source],
        rng.integers(NUM_CLASSES, size=num_detections),
    )
    scores = rng.random(num_detections)
    return {
        "gt_boxes": gt_boxes,
        "gt_classes": gt_classes,
        "boxes": boxes,
        "scores": scores,
        "classes": classes,
        "top1": top1_mask(boxes, scores, classes),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--num-images", type=int, nargs="+", default=[100])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from deepacc_d2.config import add_deepacc_config

    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_deepacc_config(cfg)
    k = cfg.TEST.KARYOTYPE  # the default thresholds
    rows = []
    for n in args.num_images:
        rng = np.random.default_rng(args.seed)
        images = [synthetic_image(rng) for _ in range(n)]
        start = time.perf_counter()
        metrics, _ = compute_karyotype_metrics(
            images, k.IOU_THRESH, k.SCORE_THRESH, k.NMS_THRESH, coco_check=False
        )
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        coco = coco_average_precision(images, NUM_CLASSES)
        coco_s = time.perf_counter() - start
        rows.append((n, ours_s, coco_s, metrics["mAP"], 100 * coco["AP50"]))
    print(f"{'images':>7} {'ours s':>7} {'pycocotools s':>14} {'mAP':>6} {'COCO_AP50':>9}")
    for n, ours_s, coco_s, m, c in rows:
        print(f"{n:>7} {ours_s:>7.2f} {coco_s:>14.2f} {m:>6.2f} {c:>9.2f}")


if __name__ == "__main__":
    main()
