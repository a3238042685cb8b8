"""
``KaryotypeEvaluator``: the metrics of DeepACC §3.1 for a dataset of whole metaphase images
labelled with the canonical 24 classes.

- mAP: AP per class at IoU >= ``TEST.KARYOTYPE.IOU_THRESH`` (the paper: 0.5), all-point
  interpolation, averaged over the classes that have ground truth, on detectron2's per-class
  detections (``all_classes`` of the DeepACC heads' outputs; every detection of another
  model). Matching: see :mod:`.matching`.
- mAPmax: the same on the top-1 class of each proposal, selected before NMS (``top1`` of the
  DeepACC heads' outputs; else :func:`.selection.top1_mask`: ``class_scores``, or equal boxes).
- Acc and AER: top-1 detections, score >= p (``TEST.KARYOTYPE.SCORE_THRESH``), class-agnostic
  NMS (``NMS_THRESH``) (:mod:`.selection`), then :func:`.acc_aer.match_karyotype` (the counts:
  :func:`.acc_aer.acc_aer_counts`). Acc = TP / predictions; AER = (FP + FN) / ground truths,
  where FN is a ground truth that no kept prediction was matched to, one to one (a TP, or a
  wrong-class prediction on its box). A right box with the wrong class is one FP and no FN.
  The paper's numbers need that reading: were FN the
  ground truths left without a TP (G - TP), then AER * G = P - TP + G - TP with
  P = TP / Acc gives TP = G (1 - AER) / (2 - 1 / Acc), and Acc 85.54 with AER 15.45
  (Table 2) would need TP = 1.017 G, more true positives than chromosomes.
- COCO_AP / COCO_AP50 / COCO_AP75 from pycocotools on the same detections, as a cross-check.
  pycocotools samples the interpolated precision at the 101 recalls 0, 0.01, ..., 1 instead
  of taking the whole area under it. That non-increasing step function is the same for both,
  and the 101-point mean is a Riemann sum of its integral, so COCO_AP50 and mAP differ by at
  most one point (on noisy detections of real CIL images, 0.1 to 0.3 points, mAP the lower),
  and agree exactly when the interpolated precision is one constant over recalls 0..1 (all
  found at precision 1: 100; or an FP ranked above the only TP: 50).
  ``mAP101`` is our AP with pycocotools' 101-point sampling: it equals COCO_AP50 up to float
  rounding whenever no image has more than 100 detections of one class (pycocotools' maxDets).

All values are percents except the raw counts (``TP``, ``FP``, ``FN``, ``num_gt``,
``num_pred``) and ``CountMAE`` (chromosomes per image).
"""

import itertools
import logging
import os
from collections import OrderedDict
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from ..classes import CLASS_NAMES, NUM_CLASSES, class_index
from .metrics import compute_karyotype_metrics
from .report import log_report, write_report
from .selection import detection_subsets

__all__ = ["KaryotypeEvaluator", "evaluate_predictions"]

logger = logging.getLogger(__name__)


class KaryotypeEvaluator(DatasetEvaluator):
    """
    Evaluate chromosome detection + 24-class classification with the paper's mAP, mAPmax,
    Acc and AER (see the module docstring), per class and per Denver group, plus a 24 x 24
    confusion matrix and the per-image chromosome count.

    Ground truth comes from ``DatasetCatalog.get(dataset_name)`` by ``image_id`` (test-time
    mappers drop annotations); with ``dataset_name=None``, from each input's "annotations".
    """

    def __init__(
        self,
        dataset_name: Optional[str],
        output_dir: Optional[str] = None,
        *,
        iou_thresh: float,
        score_thresh: float,
        nms_thresh: float,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name (str or None): a registered dataset whose category_id is the
                canonical class index; None to read ground truth from the inputs.
            output_dir (str or None): where the per-image counts, the confusion matrix
                (csv/json) and the plots go (:func:`.report.write_report`); nothing is
                written when None.
            iou_thresh (float): IoU for a match, in every metric.
            score_thresh (float): Acc/AER keep top-1 detections with score >= this (p).
            nms_thresh (float): class-agnostic NMS IoU before Acc/AER.
                The three come from ``cfg.TEST.KARYOTYPE`` in :meth:`from_config`.
            distributed (bool): gather the results of all processes to the main one.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._iou_thresh = float(iou_thresh)
        self._score_thresh = float(score_thresh)
        self._nms_thresh = float(nms_thresh)
        self._distributed = distributed
        self._gt_by_image = None
        if dataset_name is not None:
            _check_classes(dataset_name)
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: Optional[str], output_dir: Optional[str] = None):
        """The thresholds from ``cfg.TEST.KARYOTYPE``; ``output_dir`` defaults to
        ``cfg.OUTPUT_DIR/inference``."""
        if output_dir is None:
            output_dir = os.path.join(cfg.OUTPUT_DIR, "inference")
        return cls(
            dataset_name,
            output_dir=output_dir,
            iou_thresh=cfg.TEST.KARYOTYPE.IOU_THRESH,
            score_thresh=cfg.TEST.KARYOTYPE.SCORE_THRESH,
            nms_thresh=cfg.TEST.KARYOTYPE.NMS_THRESH,
        )

    def reset(self):
        self._images = []
        self._told_no_class_scores = False

    def _ground_truth(self, image: Dict) -> Tuple[np.ndarray, np.ndarray]:
        key = image.get("image_id", image.get("file_name"))
        if self._dataset_name is not None:
            if self._gt_by_image is None:
                self._gt_by_image = {
                    d.get("image_id", d.get("file_name")): annotations_to_arrays(d)
                    for d in DatasetCatalog.get(self._dataset_name)
                }
            if key in self._gt_by_image:
                return self._gt_by_image[key]
        if "annotations" in image:
            return annotations_to_arrays(image)
        raise KeyError(f"no ground truth for image {key!r} in dataset {self._dataset_name!r}")

    def process(self, inputs, outputs):
        for image, output in zip(inputs, outputs):
            gt_boxes, gt_classes = self._ground_truth(image)
            instances = output["instances"].to("cpu")
            boxes = instances.pred_boxes.tensor.numpy().astype(np.float64)
            scores = instances.scores.numpy().astype(np.float64)
            classes = instances.pred_classes.numpy().astype(np.int64)
            if not instances.has("class_scores") and not self._told_no_class_scores:
                self._told_no_class_scores = True
                logger.info(
                    "Predictions carry no 'class_scores': for mAPmax and Acc/AER, "
                    "detections with identical boxes count as one proposal (exact "
                    "for class-agnostic boxes; with class-specific box regression "
                    "every detection is its own top-1)."
                )
            self._images.append(
                {
                    "image_id": image.get("image_id", ""),
                    "file_name": image.get("file_name", ""),
                    "gt_boxes": gt_boxes,
                    "gt_classes": gt_classes,
                    "boxes": boxes,
                    "scores": scores,
                    "classes": classes,
                    **dict(zip(("top1", "all_classes"), detection_subsets(instances))),
                }
            )

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            images = list(itertools.chain(*comm.gather(self._images, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            images = self._images
        if len(images) == 0:
            logger.warning("[KaryotypeEvaluator] Did not receive valid predictions.")
            return {}

        metrics, details = compute_karyotype_metrics(
            images, self._iou_thresh, self._score_thresh, self._nms_thresh
        )
        log_report(metrics, details, self._dataset_name)
        if self._output_dir:
            write_report(self._output_dir, metrics, details)
        return OrderedDict({"karyotype": metrics})


def evaluate_predictions(
    pairs: Iterable,
    output_dir: Optional[str] = None,
    *,
    iou_thresh: float,
    score_thresh: float,
    nms_thresh: float,
) -> "OrderedDict":
    """
    Evaluate predictions made elsewhere, one process.

    Args:
        pairs (iterable): (dataset_dict, instances) per image; the dict holds the
            ground truth ("annotations" with "bbox", "bbox_mode", "category_id"),
            ``instances`` is a detectron2 ``Instances`` as a model returns it.
        output_dir, iou_thresh, score_thresh, nms_thresh: see :class:`KaryotypeEvaluator`.

    Returns:
        OrderedDict: {"karyotype": {metric: value}}, as :meth:`KaryotypeEvaluator.evaluate`.
    """
    evaluator = KaryotypeEvaluator(
        None,
        output_dir,
        iou_thresh=iou_thresh,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        distributed=False,
    )
    for dataset_dict, instances in pairs:
        evaluator.process([dataset_dict], [{"instances": instances}])
    return evaluator.evaluate()


# ------------------------------------------------------------------ helpers
def _check_classes(dataset_name: str):
    thing_classes = MetadataCatalog.get(dataset_name).get("thing_classes", None)
    if thing_classes is None:
        return
    try:
        canonical = [class_index(name) for name in thing_classes] == list(range(NUM_CLASSES))
    except ValueError:
        canonical = False
    if not canonical:
        raise ValueError(
            f"KaryotypeEvaluator needs the canonical {NUM_CLASSES} classes {CLASS_NAMES} in "
            f"order; dataset {dataset_name!r} has thing_classes={list(thing_classes)}"
        )


def annotations_to_arrays(dataset_dict: Dict) -> Tuple[np.ndarray, np.ndarray]:
    """A dataset dict's true (G, 4) XYXY boxes and (G,) classes."""
    annotations = dataset_dict.get("annotations", [])
    boxes = [
        BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations
    ]
    classes = [int(a["category_id"]) for a in annotations]
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(classes, dtype=np.int64))
