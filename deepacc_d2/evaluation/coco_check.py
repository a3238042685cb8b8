"""
pycocotools' AP on the same detections: a cross-check of :mod:`.metrics`.
"""

import contextlib
import io
from typing import Dict, List, Optional

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..classes import CLASS_NAMES

__all__ = ["coco_average_precision"]


def coco_average_precision(
    images: List[Dict], num_classes: int, subset: Optional[str] = None
) -> Dict:
    """
    pycocotools' bbox AP (IoU 0.50:0.95), AP50 and AP75 of the same detections, with the
    default parameters (101 recall points, maxDets 100 per image and class, area "all").

    Args:
        subset (str or None): as in :func:`.metrics.per_class_average_precision`.

    Returns:
        dict: "AP", "AP50", "AP75" in [0, 1] (NaN without ground truth) and
        "AP50_per_class" (K,) (NaN for a class without ground truth).
    """

    gt_annotations, detections = [], []
    for image_id, im in enumerate(images):
        for box, k in zip(np.asarray(im["gt_boxes"]).reshape(-1, 4), im["gt_classes"]):
            xywh = _xyxy_to_xywh(box)
            # ids start at 1: pycocotools reads id 0 as "unmatched".
            gt_annotations.append(
                {
                    "id": len(gt_annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(k) + 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
        keep = np.asarray(im[subset], bool) if subset else np.ones(len(im["classes"]), bool)
        for box, k, s in zip(
            np.asarray(im["boxes"]).reshape(-1, 4)[keep],
            np.asarray(im["classes"])[keep],
            np.asarray(im["scores"])[keep],
        ):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(k) + 1,
                    "bbox": _xyxy_to_xywh(box),
                    "score": float(s),
                }
            )

    nan = float("nan")
    result = {"AP": nan, "AP50": nan, "AP75": nan, "AP50_per_class": np.full(num_classes, nan)}
    if not gt_annotations:
        return result
    has_gt = np.bincount([a["category_id"] - 1 for a in gt_annotations], minlength=num_classes) > 0
    if not detections:
        result.update(AP=0.0, AP50=0.0, AP75=0.0, AP50_per_class=np.where(has_gt, 0.0, nan))
        return result

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": i} for i in range(len(images))],
            "categories": [{"id": k + 1, "name": CLASS_NAMES[k]} for k in range(num_classes)],
            "annotations": gt_annotations,
        }
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    # precision: (T iou, R recall, K, A area, M maxDets); -1 where a class has no ground truth
    precision = coco_eval.eval["precision"][0, :, :, 0, -1]
    ap50_per_class = np.where(precision.min(axis=0) > -1, precision.mean(axis=0), nan)
    stats = coco_eval.stats
    result.update(
        AP=float(stats[0]),
        AP50=float(stats[1]),
        AP75=float(stats[2]),
        AP50_per_class=ap50_per_class,
    )
    return result


def _xyxy_to_xywh(box) -> List[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]
