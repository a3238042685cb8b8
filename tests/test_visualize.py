"""Pictures: one name per chromosome (top-1, score, class-agnostic NMS), group colours."""

import numpy as np
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2 import add_deepacc_config
from deepacc_d2.engine.evaluate import picture_thresholds
from deepacc_d2.evaluation.selection import select_detections
from deepacc_d2.visualize import GROUP_COLORS, class_colors, draw_comparison

from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances


def _instances():
    # proposal A yields class 0 (its top-1, 0.9) and class 1 (0.6); proposal B a box nearly
    # equal to A's (IoU 0.9) scoring 0.8; proposal C elsewhere scoring 0.3.
    boxes = torch.tensor([[10, 10, 30, 60], [10, 10, 30, 61], [10, 10, 30, 55], [50, 5, 60, 20.0]])
    cls = torch.tensor([0, 1, 2, 23])
    class_scores = torch.zeros(4, 24)
    class_scores[0, 0], class_scores[0, 1] = 0.9, 0.6
    class_scores[1, 0], class_scores[1, 1] = 0.9, 0.6
    class_scores[2, 2] = 0.8
    class_scores[3, 23] = 0.3
    return Instances(
        (80, 100),
        pred_boxes=Boxes(boxes),
        scores=torch.tensor([0.9, 0.6, 0.8, 0.3]),
        pred_classes=cls,
        class_scores=class_scores,
    )


def test_select_detections():
    kept = select_detections(_instances(), score_thresh=0.5, nms_thresh=0.7)
    # row 1 is not its proposal's top-1; row 2 (IoU 35*20/(50*20) = 0.9 > 0.7 with row 0) is
    # suppressed by the class-agnostic NMS; row 3 scores below 0.5
    assert kept.pred_classes.tolist() == [0]
    assert select_detections(
        _instances(), score_thresh=0.2, nms_thresh=0.7
    ).pred_classes.tolist() == [0, 23]


def test_pictures_take_the_configs_thresholds():
    cfg = get_cfg()
    add_deepacc_config(cfg)
    cfg.TEST.KARYOTYPE.SCORE_THRESH, cfg.TEST.KARYOTYPE.NMS_THRESH = 0.2, 0.95
    assert picture_thresholds(cfg) == (0.2, 0.95)
    assert picture_thresholds(cfg, 0.6) == (0.6, 0.95)  # --score-thresh replaces p only
    # at NMS 0.95 row 2 (IoU 0.9 with row 0) stays
    kept = select_detections(_instances(), *picture_thresholds(cfg))
    assert kept.pred_classes.tolist() == [0, 2, 23]


def test_colours_follow_denver_groups():
    colours = class_colors()
    assert colours[0] == colours[2] == GROUP_COLORS["A"]
    assert colours[22] == colours[5] == GROUP_COLORS["C"]  # X is in group C
    assert colours[23] == GROUP_COLORS["G"] != colours[22]


def test_comparison_picture_has_truth_and_prediction_panels():
    image = np.full((80, 100, 3), 200, np.uint8)
    truth = {
        "height": 80,
        "width": 100,
        "annotations": [{"bbox": [10, 10, 30, 60], "bbox_mode": 0, "category_id": 0}],
    }
    picture = draw_comparison(image, _instances(), truth, score_thresh=0.5, nms_thresh=0.7)
    assert picture.shape == (80, 208, 3)
    # group A is drawn red (230, 25, 75) on a gray image: both panels get red outlines ...
    rgb = picture.astype(int)
    red = rgb[..., 0] - rgb[..., 1] > 40
    assert red[:, :100].any() and red[:, 108:].any()
    # ... and nothing is drawn on the right when no detection passes the threshold
    rgb = draw_comparison(image, _instances(), truth, score_thresh=0.95, nms_thresh=0.7).astype(int)
    assert not (rgb[:, 108:, 0] - rgb[:, 108:, 1] > 40).any()
