"""
A model's candidates for counting, kept once per image so that every counting rule can be
measured (and the candidate judge trained) without running the model again:

* :func:`proposal_outputs`: per image the RPN's proposals and each proposal's box of its top
  class with its class probabilities, in the image's own pixels;
* :func:`candidate_instances`: from those, the detections the model itself would return
  (its top-1-first set, :func:`..modeling.detections.detection_sets`) for any score
  threshold, NMS and detections cap.

Shape shorthand: P proposals, R kept proposal outputs, K foreground classes, G true boxes.
"""

import hashlib
import json
import logging
import os
from typing import Dict, List, Optional

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from detectron2.data import DatasetCatalog

from ...classes import NUM_CLASSES
from ...data.mapper import build_eval_loader
from ...engine.files import file_sha256, write_atomic
from ...engine.precision import cpu_bf16_inference
from ...engine.predictor import load_model
from ...evaluation.karyotype_evaluation import annotations_to_arrays
from ...evaluation.matching import box_iou
from ...modeling.detections import detection_sets
from ...modeling.mirror_view import proposal_predictions

logger = logging.getLogger(__name__)

KEEP_FOREGROUND = 0.01  # proposal outputs below this foreground probability are not kept


def _top_class_boxes(boxes: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """(R, 4): each proposal's box of its most probable foreground class."""
    per_class = boxes.view(boxes.shape[0], -1, 4)
    if per_class.shape[1] == 1:
        return per_class[:, 0]
    top = probs[:, :-1].argmax(dim=1)
    return per_class[torch.arange(len(top)), top]


@torch.no_grad()
def proposal_outputs(model, inputs: List[Dict]) -> List[Dict]:
    """
    One batch's proposals and proposal outputs, in each image's own pixels (``height``,
    ``width`` of the input dict), through the model's own modules (a GeneralizedRCNN with
    :class:`..modeling.roi_heads.DeepACCROIHeads`; both views' of a
    :class:`..modeling.mirror_view.MirrorViewRCNN`).

    Returns:
        list[dict]: per image "proposals" (P, 4) float32, "boxes" (R, 4) float32 the top-class
        box of each proposal whose foreground probability is >= KEEP_FOREGROUND, "probs"
        (R, K + 1) float32 (background last).
    """
    _, proposals, boxes, probs = proposal_predictions(model, inputs)
    out = []
    for x, props, boxes_i, probs_i in zip(inputs, proposals, boxes, probs):
        h, w = props.image_size
        scale = torch.tensor([x["width"] / w, x["height"] / h] * 2)
        probs_i = probs_i.float()
        keep = probs_i[:, :-1].sum(dim=1) >= KEEP_FOREGROUND
        top = _top_class_boxes(boxes_i.float(), probs_i)[keep]
        out.append(
            {
                "proposals": (props.proposal_boxes.tensor.float() * scale).numpy(),
                "boxes": (top * scale).numpy(),
                "probs": probs_i[keep].numpy(),
            }
        )
    return out


def collect_proposal_outputs(cfg, model, dataset_name: str, limit: Optional[int] = None):
    """
    :func:`proposal_outputs` of every readable image of a registered dataset (the first
    ``limit``), with its truth.

    Returns:
        list[dict]: per image "file_name", "image_size" (height, width), "gt_boxes" (G, 4),
        "gt_classes" (G,) and :func:`proposal_outputs`' arrays.
    """
    truth = {d["file_name"]: d for d in DatasetCatalog.get(dataset_name)}
    records = []
    with cpu_bf16_inference(cfg, model):
        for inputs in build_eval_loader(cfg, dataset_name):
            if limit is not None and len(records) >= limit:
                break
            (outputs,) = proposal_outputs(model, inputs)
            gt_boxes, gt_classes = annotations_to_arrays(truth[inputs[0]["file_name"]])
            records.append(
                {
                    "file_name": inputs[0]["file_name"],
                    "image_size": (inputs[0]["height"], inputs[0]["width"]),
                    "gt_boxes": gt_boxes,
                    "gt_classes": gt_classes,
                    **outputs,
                }
            )
            if len(records) % 50 == 0:
                logger.info(f"proposal outputs of {len(records)} images")
    return records


def candidate_instances(record: Dict, score_thresh: float, nms_thresh: float, topk: int):
    """
    The model's top-1-first detections (``top1``) of one image from its kept proposal outputs,
    as ``ROI_HEADS.SCORE_THRESH_TEST`` / ``NMS_THRESH_TEST`` and ``TEST.DETECTIONS_PER_IMAGE``
    would give them (score_thresh >= KEEP_FOREGROUND / K loses nothing by the kept subset).

    Returns:
        Instances: fields as the model's output (``pred_boxes``, ``scores``, ``pred_classes``,
        ``class_scores``, ``top1``, ``all_classes``), the top-1 detections only.
    """
    if score_thresh * NUM_CLASSES < KEEP_FOREGROUND:
        raise ValueError(
            f"score threshold {score_thresh} is below what the kept outputs cover "
            f"({KEEP_FOREGROUND} / {NUM_CLASSES})"
        )
    instances, _ = detection_sets(
        torch.as_tensor(record["boxes"]),
        torch.as_tensor(record["probs"]),
        tuple(record["image_size"]),
        score_thresh,
        nms_thresh,
        topk,
    )
    return instances[instances.top1]


def model_detections(cfg, record: Dict):
    """The model's detections of a proposal-outputs record, as the config's model returns
    them (:func:`.candidates.candidate_instances`)."""
    heads = cfg.MODEL.ROI_HEADS
    return candidate_instances(
        record, heads.SCORE_THRESH_TEST, heads.NMS_THRESH_TEST, cfg.TEST.DETECTIONS_PER_IMAGE
    )


def detection_record(record: Dict, detections) -> Dict:
    """A cell of the rules' benchmark (:func:`.benchmark.judge_cell`) from the model's
    detections of a proposal-outputs record."""
    return {
        "file_name": record["file_name"],
        "image_size": tuple(record["image_size"]),
        "gt_boxes": record["gt_boxes"],
        "gt_classes": record["gt_classes"],
        "boxes": detections.pred_boxes.tensor.numpy(),
        **{k: v.numpy() for k, v in detections.get_fields().items() if k != "pred_boxes"},
    }


def _weights_digest(path: str) -> str:
    """A weights file's content digest (a file replaced under the same name is another
    model); the name itself where it is no file here."""
    return file_sha256(path) if os.path.isfile(path) else path


def _cache_key(cfg, dataset_name: str, limit: Optional[int]) -> str:
    files = [d["file_name"] for d in DatasetCatalog.get(dataset_name)]
    look = dict(cfg.MODEL.SECOND_LOOK)
    look["WEIGHTS"] = _weights_digest(look["WEIGHTS"])
    if look["TURNS"] == 1:  # no turned crops: the margin changes nothing, the caches of before stay
        del look["TURNS"], look["TURNS_MARGIN"]
    arch = cfg.MODEL.META_ARCHITECTURE
    what = [
        files,
        *([arch] if arch != "GeneralizedRCNN" else []),  # one-view caches keep their key
        limit,
        _weights_digest(cfg.MODEL.WEIGHTS),
        # every setting of the second look, which renames the proposals
        sorted(look.items()) if look["ENABLED"] else "",
        cfg.MODEL.RPN.PRE_NMS_TOPK_TEST,
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST,
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        cfg.INPUT.MIN_SIZE_TEST,
        cfg.INPUT.MAX_SIZE_TEST,
    ]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:12]


def cached_proposal_outputs(cfg, dataset_name: str, cache_dir: str, limit=None) -> List[Dict]:
    """:func:`.candidates.collect_proposal_outputs` of a registered dataset, read from
    ``cache_dir`` when the same model, budget and files ran before."""
    path = os.path.join(
        cache_dir,
        f"proposal_outputs_{dataset_name}_{cfg.MODEL.RPN.PRE_NMS_TOPK_TEST}_"
        f"{_cache_key(cfg, dataset_name, limit)}.pt",
    )
    if os.path.isfile(path):
        logger.info(f"proposal outputs from {path}")
        return torch.load(path, weights_only=False)
    records = collect_proposal_outputs(cfg, load_model(cfg), dataset_name, limit)
    os.makedirs(cache_dir, exist_ok=True)
    write_atomic(path, lambda f: torch.save(records, f))
    logger.info(f"proposal outputs written to {path}")
    return records


def foreground(instances) -> np.ndarray:
    """(R,) each detection's foreground probability 1 - p_background."""
    return instances.class_scores.numpy()[:, :NUM_CLASSES].sum(axis=1).astype(np.float64)


def one_box_labels(boxes: np.ndarray, gt_boxes: np.ndarray, iou_thresh: float = 0.5):
    """
    Which candidates are *the one box of a chromosome*: the one-to-one matching of candidates
    to true boxes with the largest total IoU, among pairs at IoU >= ``iou_thresh``. A second
    box on a chromosome, a fragment, a box around two chromosomes or debris is not.

    Args:
        boxes (ndarray): (R, 4) candidate boxes XYXY.
        gt_boxes (ndarray): (G, 4) true boxes XYXY.

    Returns:
        ndarray: (R,) bool, whether each candidate is matched.
        ndarray: (R,) int, the true box it is matched to (-1 when none).
    """
    matched = np.full(len(boxes), -1, dtype=np.int64)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return matched >= 0, matched
    ious = box_iou(np.asarray(boxes, np.float64), np.asarray(gt_boxes, np.float64))
    gain = np.where(ious >= iou_thresh, ious, 0.0)
    rows, cols = linear_sum_assignment(-gain)
    pair = gain[rows, cols] > 0
    matched[rows[pair]] = cols[pair]
    return matched >= 0, matched
