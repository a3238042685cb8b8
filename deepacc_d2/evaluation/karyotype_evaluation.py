"""
``KaryotypeEvaluator``: the metrics of DeepACC §3.1 for a dataset of whole metaphase images
labelled with the canonical 24 classes.

- mAP: AP at IoU >= 0.5 per class, all-point interpolation, averaged over the classes that
  have ground truth, on detectron2's per-class detections (``all_classes`` of the DeepACC
  heads' outputs; every detection of another model). Matching: see :mod:`.metrics`.
- mAPmax: the same on the top-1 class of each proposal, selected before NMS (``top1`` of the
  DeepACC heads' outputs; else :func:`.metrics.top1_mask`: ``class_scores``, or equal boxes).
- Acc and AER: top-1 detections, score >= p (``TEST.KARYOTYPE.SCORE_THRESH``),
  class-agnostic NMS (``NMS_THRESH``), then
  :func:`.metrics.match_karyotype`. Acc = TP / predictions; AER = (FP + FN) / ground truths,
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
import contextlib
import csv
import io
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
from tabulate import tabulate

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

from ..classes import (
    CLASS_NAMES,
    DENVER_GROUPS,
    NUM_CLASSES,
    class_index,
    denver_group_of,
    group_adjacency_matrix,
)
from .metrics import (
    match_karyotype,
    per_class_average_precision,
    select_for_counting,
    top1_mask,
)

__all__ = [
    "KaryotypeEvaluator",
    "compute_karyotype_metrics",
    "coco_average_precision",
    "evaluate_predictions",
]

logger = logging.getLogger(__name__)

_GROUP_NAMES = list(DENVER_GROUPS)


class KaryotypeEvaluator(DatasetEvaluator):
    """
    Evaluate chromosome detection + 24-class classification with the paper's mAP, mAPmax,
    Acc and AER (see the module docstring), per class and per Denver group, plus a 24 x 24
    confusion matrix and the per-image chromosome count.

    Ground truth comes from ``DatasetCatalog.get(dataset_name)`` by ``image_id`` (test-time
    mappers drop annotations); with ``dataset_name=None``, from each input's "annotations".
    """

    def __init__(self, dataset_name: Optional[str], output_dir: Optional[str] = None, *,
                 iou_thresh: float, score_thresh: float, nms_thresh: float,
                 distributed: bool = True):
        """
        Args:
            dataset_name (str or None): a registered dataset whose category_id is the
                canonical class index; None to read ground truth from the inputs.
            output_dir (str or None): where the per-image counts, the confusion matrix
                (csv/json) and the plots go; nothing is written when None.
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
                    d.get("image_id", d.get("file_name")): _annotations_to_arrays(d)
                    for d in DatasetCatalog.get(self._dataset_name)
                }
            if key in self._gt_by_image:
                return self._gt_by_image[key]
        if "annotations" in image:
            return _annotations_to_arrays(image)
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
                logger.info("Predictions carry no 'class_scores': for mAPmax and Acc/AER, "
                            "detections with identical boxes count as one proposal (exact "
                            "for class-agnostic boxes; with class-specific box regression "
                            "every detection is its own top-1).")
            self._images.append({
                "image_id": image.get("image_id", ""),
                "file_name": image.get("file_name", ""),
                "gt_boxes": gt_boxes,
                "gt_classes": gt_classes,
                "boxes": boxes,
                "scores": scores,
                "classes": classes,
                **dict(zip(("top1", "all_classes"), detection_subsets(instances))),
            })

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
            images, self._iou_thresh, self._score_thresh, self._nms_thresh)
        _log_results(metrics, details, self._dataset_name)
        if self._output_dir:
            _write_outputs(self._output_dir, metrics, details)
        return OrderedDict({"karyotype": metrics})


def detection_subsets(instances) -> Tuple[np.ndarray, np.ndarray]:
    """
    Which of a model's detections mAPmax / Acc / AER and mAP judge.

    Args:
        instances (Instances): on the CPU; the DeepACC heads' ``top1`` and ``all_classes``
            fields when present (see ``DeepACCOutputLayers.inference``).

    Returns:
        top1, all_classes (ndarray, ndarray): (R,) bool each. Without those fields: top-1 by
        :func:`.metrics.top1_mask` (``class_scores``, or equal boxes) and every detection.
    """
    if instances.has("top1") and instances.has("all_classes"):
        return instances.top1.numpy().astype(bool), instances.all_classes.numpy().astype(bool)
    class_scores = None
    if instances.has("class_scores"):
        # (R, K) foreground probabilities; a trailing background column is ignored.
        class_scores = instances.class_scores.numpy()[:, :NUM_CLASSES]
    top1 = top1_mask(instances.pred_boxes.tensor.numpy(), instances.scores.numpy(),
                     instances.pred_classes.numpy(), class_scores)
    return top1, np.ones(len(instances), dtype=bool)


def evaluate_predictions(pairs: Iterable, output_dir: Optional[str] = None, *,
                         iou_thresh: float, score_thresh: float,
                         nms_thresh: float) -> "OrderedDict":
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
    evaluator = KaryotypeEvaluator(None, output_dir, iou_thresh=iou_thresh,
                                   score_thresh=score_thresh, nms_thresh=nms_thresh,
                                   distributed=False)
    for dataset_dict, instances in pairs:
        evaluator.process([dataset_dict], [{"instances": instances}])
    return evaluator.evaluate()


def compute_karyotype_metrics(images: List[Dict], iou_thresh: float, score_thresh: float,
                              nms_thresh: float,
                              coco_check: bool = True) -> Tuple["OrderedDict", Dict]:
    """
    Args:
        images (list[dict]): per image "gt_boxes" (G, 4) XYXY, "gt_classes" (G,),
            "boxes" (R, 4), "scores" (R,), "classes" (R,), "top1" (R,) bool and optionally
            "all_classes" (R,) bool (the detections mAP uses; default all), "image_id",
            "file_name".
        iou_thresh, score_thresh, nms_thresh (float): see :class:`KaryotypeEvaluator`.
        coco_check (bool): run pycocotools for COCO_AP* (most of the time taken); NaN if not.

    Returns:
        metrics (OrderedDict): flat name -> float (see the module docstring).
        details (dict): confusion matrix, per-class counts and per-image counts, for files.
    """
    K = NUM_CLASSES
    images = [dict(im, all_classes=im.get("all_classes", np.ones(len(im["classes"]), bool)))
              for im in images]
    ap = per_class_average_precision(images, K, iou_thresh, subset="all_classes",
                                     interpolations=("all", "coco101"))
    ap_max = per_class_average_precision(images, K, iou_thresh, subset="top1")["all"]
    num_gt_per_class = ap["num_gt"]

    confusion = np.zeros((K, K), dtype=np.int64)
    tp_per_class = np.zeros(K, dtype=np.int64)  # by class (predicted = true)
    pred_per_class = np.zeros(K, dtype=np.int64)  # kept predictions, by predicted class
    fn_per_class = np.zeros(K, dtype=np.int64)  # by true class
    per_image = []
    for im in images:
        keep = select_for_counting(im["boxes"], im["scores"], im["top1"],
                                   score_thresh, nms_thresh)
        classes = np.asarray(im["classes"], dtype=np.int64)[keep]
        gt_classes = np.asarray(im["gt_classes"], dtype=np.int64)
        judged = match_karyotype(im["gt_boxes"], gt_classes, np.asarray(im["boxes"])[keep],
                                 np.asarray(im["scores"])[keep], classes, iou_thresh, K)
        confusion += judged["confusion"]
        tp_per_class += np.bincount(classes[judged["is_tp"]], minlength=K)
        pred_per_class += np.bincount(classes, minlength=K)
        fn_per_class += np.bincount(gt_classes[judged["is_fn"]], minlength=K)
        tp = int(judged["is_tp"].sum())
        per_image.append({
            "image_id": str(im.get("image_id", "")),
            "file_name": str(im.get("file_name", "")),
            "num_gt": int(len(gt_classes)),
            "num_pred": int(len(keep)),
            "TP": tp,
            "FP": int(len(keep)) - tp,
            "FN": int(judged["is_fn"].sum()),
        })

    tp, num_pred = int(tp_per_class.sum()), int(pred_per_class.sum())
    fn, num_gt = int(fn_per_class.sum()), int(num_gt_per_class.sum())
    fp = num_pred - tp
    fp_per_class = pred_per_class - tp_per_class
    misclassified = confusion - np.diag(np.diag(confusion))
    same_group = group_adjacency_matrix() | np.eye(NUM_CLASSES, dtype=bool)
    count_error = np.array([r["num_pred"] - r["num_gt"] for r in per_image])

    if coco_check:
        coco = coco_average_precision(images, K, subset="all_classes")
    else:
        coco = {"AP": np.nan, "AP50": np.nan, "AP75": np.nan,
                "AP50_per_class": np.full(K, np.nan)}

    m = OrderedDict()
    m["mAP"] = _percent(_nanmean(ap["all"]))
    m["mAPmax"] = _percent(_nanmean(ap_max))
    m["Acc"] = _percent(_ratio(tp, num_pred))
    m["AER"] = _percent(_ratio(fp + fn, num_gt))
    m["COCO_AP"] = _percent(coco["AP"])
    m["COCO_AP50"] = _percent(coco["AP50"])
    m["COCO_AP75"] = _percent(coco["AP75"])
    m["mAP101"] = _percent(_nanmean(ap["coco101"]))
    # Share of the misclassified boxes (off-diagonal) whose wrong class is in the true
    # class's Denver group: the errors the GIA loss (Eq. 3) targets.
    m["InGroupErr"] = _percent(_ratio(misclassified[same_group].sum(), misclassified.sum()))
    m["CountExact"] = _percent(float(np.mean(count_error == 0)))
    m["CountMAE"] = float(np.mean(np.abs(count_error)))
    m["TP"], m["FP"], m["FN"] = float(tp), float(fp), float(fn)
    m["num_gt"], m["num_pred"] = float(num_gt), float(num_pred)
    for k, name in enumerate(CLASS_NAMES):
        m[f"AP-{name}"] = _percent(ap["all"][k])
    for k, name in enumerate(CLASS_NAMES):
        m[f"APmax-{name}"] = _percent(ap_max[k])
    for k, name in enumerate(CLASS_NAMES):
        m[f"Acc-{name}"] = _percent(_ratio(tp_per_class[k], pred_per_class[k]))
    for k, name in enumerate(CLASS_NAMES):
        m[f"AER-{name}"] = _percent(
            _ratio(fp_per_class[k] + fn_per_class[k], num_gt_per_class[k]))
    for g in _GROUP_NAMES:
        members = np.array([denver_group_of(k) == g for k in range(K)])
        m[f"AP-group{g}"] = _percent(_nanmean(ap["all"][members]))
        m[f"APmax-group{g}"] = _percent(_nanmean(ap_max[members]))
        m[f"Acc-group{g}"] = _percent(
            _ratio(tp_per_class[members].sum(), pred_per_class[members].sum()))
        m[f"AER-group{g}"] = _percent(
            _ratio(fp_per_class[members].sum() + fn_per_class[members].sum(),
                   num_gt_per_class[members].sum()))

    details = {
        "thresholds": {"iou": iou_thresh, "score": score_thresh, "nms": nms_thresh},
        "class_names": list(CLASS_NAMES),
        "confusion": confusion.tolist(),
        "per_class": {
            name: {"num_gt": int(num_gt_per_class[k]), "num_pred": int(pred_per_class[k]),
                   "TP": int(tp_per_class[k]), "FP": int(fp_per_class[k]),
                   "FN": int(fn_per_class[k])}
            for k, name in enumerate(CLASS_NAMES)
        },
        "per_image": per_image,
        "coco_ap50_per_class": coco["AP50_per_class"].tolist(),
    }
    return m, details


def coco_average_precision(images: List[Dict], num_classes: int,
                           subset: Optional[str] = None) -> Dict:
    """
    pycocotools' bbox AP (IoU 0.50:0.95), AP50 and AP75 of the same detections, with the
    default parameters (101 recall points, maxDets 100 per image and class, area "all").

    Args:
        subset (str or None): as in :func:`.metrics.per_class_average_precision`.

    Returns:
        dict: "AP", "AP50", "AP75" in [0, 1] (NaN without ground truth) and
        "AP50_per_class" (K,) (NaN for a class without ground truth).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_annotations, detections = [], []
    for image_id, im in enumerate(images):
        for box, k in zip(np.asarray(im["gt_boxes"]).reshape(-1, 4), im["gt_classes"]):
            xywh = _xyxy_to_xywh(box)
            # ids start at 1: pycocotools reads id 0 as "unmatched".
            gt_annotations.append({"id": len(gt_annotations) + 1, "image_id": image_id,
                                   "category_id": int(k) + 1, "bbox": xywh,
                                   "area": xywh[2] * xywh[3], "iscrowd": 0})
        keep = np.asarray(im[subset], bool) if subset else np.ones(len(im["classes"]), bool)
        for box, k, s in zip(np.asarray(im["boxes"]).reshape(-1, 4)[keep],
                             np.asarray(im["classes"])[keep], np.asarray(im["scores"])[keep]):
            detections.append({"image_id": image_id, "category_id": int(k) + 1,
                               "bbox": _xyxy_to_xywh(box), "score": float(s)})

    nan = float("nan")
    result = {"AP": nan, "AP50": nan, "AP75": nan, "AP50_per_class": np.full(num_classes, nan)}
    if not gt_annotations:
        return result
    has_gt = np.bincount([a["category_id"] - 1 for a in gt_annotations],
                         minlength=num_classes) > 0
    if not detections:
        result.update(AP=0.0, AP50=0.0, AP75=0.0,
                      AP50_per_class=np.where(has_gt, 0.0, nan))
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
    result.update(AP=float(stats[0]), AP50=float(stats[1]), AP75=float(stats[2]),
                  AP50_per_class=ap50_per_class)
    return result


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
            f"order; dataset {dataset_name!r} has thing_classes={list(thing_classes)}")


def _annotations_to_arrays(dataset_dict: Dict) -> Tuple[np.ndarray, np.ndarray]:
    annotations = dataset_dict.get("annotations", [])
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
             for a in annotations]
    classes = [int(a["category_id"]) for a in annotations]
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray(classes, dtype=np.int64))


def _xyxy_to_xywh(box) -> List[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _percent(value: float) -> float:
    return 100.0 * float(value)


def _log_results(metrics: Dict, details: Dict, dataset_name: Optional[str]):
    main = OrderedDict((k, metrics[k]) for k in (
        "mAP", "mAPmax", "Acc", "AER", "COCO_AP", "COCO_AP50", "COCO_AP75", "mAP101",
        "InGroupErr", "CountExact", "CountMAE"))
    logger.info(f"Karyotype metrics on {dataset_name or 'the given images'} "
                f"(IoU {details['thresholds']['iou']}, score {details['thresholds']['score']},"
                f" NMS {details['thresholds']['nms']}): \n" + create_small_table(main))
    logger.info("TP {TP:.0f}, FP {FP:.0f}, FN {FN:.0f}, {num_pred:.0f} predictions, "
                "{num_gt:.0f} ground truths".format(**metrics))
    rows = []
    for name in CLASS_NAMES:
        counts = details["per_class"][name]
        rows.append([name, denver_group_of(CLASS_NAMES.index(name)), counts["num_gt"],
                     counts["num_pred"], metrics[f"AP-{name}"], metrics[f"APmax-{name}"],
                     metrics[f"Acc-{name}"], metrics[f"AER-{name}"]])
    for g in _GROUP_NAMES:
        members = DENVER_GROUPS[g]
        rows.append([f"group {g}", g,
                     sum(details["per_class"][n]["num_gt"] for n in members),
                     sum(details["per_class"][n]["num_pred"] for n in members),
                     metrics[f"AP-group{g}"], metrics[f"APmax-group{g}"],
                     metrics[f"Acc-group{g}"], metrics[f"AER-group{g}"]])
    table = tabulate(rows, headers=["class", "group", "#gt", "#pred", "AP", "APmax", "Acc",
                                    "AER"], tablefmt="pipe", floatfmt=".2f", numalign="left")
    logger.info("Per-class karyotype metrics: \n" + table)


def _write_outputs(output_dir: str, metrics: Dict, details: Dict):
    PathManager.mkdirs(output_dir)
    with PathManager.open(os.path.join(output_dir, "karyotype_details.json"), "w") as f:
        json.dump({"metrics": metrics, **details}, f, indent=1)
    with PathManager.open(os.path.join(output_dir, "karyotype_per_image.csv"), "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(details["per_image"][0]))
        writer.writeheader()
        writer.writerows(details["per_image"])
    with PathManager.open(os.path.join(output_dir, "karyotype_confusion.csv"), "w") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\pred"] + list(CLASS_NAMES))
        for name, row in zip(CLASS_NAMES, details["confusion"]):
            writer.writerow([name] + list(row))
    try:
        _plot_confusion(os.path.join(output_dir, "karyotype_confusion.png"),
                        np.asarray(details["confusion"]))
        _plot_per_class_ap(os.path.join(output_dir, "karyotype_per_class_ap.png"), metrics)
    except ImportError as e:  # pragma: no cover
        logger.warning(f"matplotlib unavailable, no karyotype plots: {e}")


def _new_figure(size):
    # A bare Figure with an Agg canvas: no pyplot, no change to the global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _group_order() -> Tuple[np.ndarray, List[float]]:
    """Class indices sorted by Denver group (X joins C, Y joins G), and the positions of
    the lines between groups in that order."""
    order = np.array(sorted(range(NUM_CLASSES), key=lambda k: _GROUP_NAMES.index(
        denver_group_of(k))))
    groups = [denver_group_of(k) for k in order]
    boundaries = [i + 0.5 for i in range(NUM_CLASSES - 1) if groups[i] != groups[i + 1]]
    return order, boundaries


def _plot_confusion(path: str, confusion: np.ndarray):
    """Rows normalized to the true class (colour), counts written in the cells; classes in
    Denver group order, so the in-group errors lie in the blocks along the diagonal."""
    order, boundaries = _group_order()
    names = [CLASS_NAMES[k] for k in order]
    confusion = confusion[np.ix_(order, order)]
    fig = _new_figure((10, 9))
    ax = fig.add_subplot(1, 1, 1)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = confusion / np.maximum(totals, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i, j in zip(*np.nonzero(confusion)):
        ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6,
                color="white" if shares[i, j] > 0.5 else "black")
    for b in boundaries:
        ax.axhline(b, color="gray", linewidth=0.6)
        ax.axvline(b, color="gray", linewidth=0.6)
    ticks = np.arange(NUM_CLASSES)
    ax.set_xticks(ticks)
    ax.set_xticklabels(names, fontsize=7)
    ax.set_yticks(ticks)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Matched boxes (score, NMS and IoU as for Acc/AER)")
    fig.tight_layout()
    with PathManager.open(path, "wb") as f:
        fig.savefig(f, format="png")


def _plot_per_class_ap(path: str, metrics: Dict):
    order, boundaries = _group_order()
    names = [CLASS_NAMES[k] for k in order]
    fig = _new_figure((10, 4))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(NUM_CLASSES)
    ax.bar(x - 0.2, [metrics[f"AP-{n}"] for n in names], width=0.4, label="AP")
    ax.bar(x + 0.2, [metrics[f"APmax-{n}"] for n in names], width=0.4, label="APmax")
    for b in boundaries:
        ax.axvline(b, color="gray", linewidth=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 100)
    ax.set_ylabel("AP50 (%)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    with PathManager.open(path, "wb") as f:
        fig.savefig(f, format="png")
