"""
KaryotypeEvaluator and its metric functions on hand-built detections whose right answers
are worked out in the comments, plus a cross-check against pycocotools on real CIL boxes.

Boxes are XYXY; the unit square A = [0, 0, 10, 10] has area 100, and boxes on different
"chromosomes" are placed far apart (IoU 0) unless a comment says otherwise.
"""

import glob
import math
import os

import numpy as np
import pytest
import torch

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2)
from deepacc_d2 import add_deepacc_config
from deepacc_d2.classes import CLASS_NAMES, NUM_CLASSES
from deepacc_d2.evaluation import (
    KaryotypeEvaluator,
    coco_average_precision,
    compute_karyotype_metrics,
    evaluate_predictions,
)
from deepacc_d2.evaluation.acc_aer import match_karyotype
from deepacc_d2.evaluation.matching import box_iou
from deepacc_d2.evaluation.metrics import (
    average_precision,
    per_class_average_precision,
    precision_recall,
)
from deepacc_d2.evaluation.selection import nms, top1_mask

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances


def square(x, y=0.0, size=10.0):
    return [x, y, x + size, y + size]


A, B, C, D, E = (square(100.0 * i) for i in range(5))  # five separate chromosomes


def image(gt, dets, class_scores=None, image_id="im"):
    """gt: [(box, class)]; dets: [(box, class, score)] -> an evaluator image record."""
    boxes = np.array([d[0] for d in dets], dtype=np.float64).reshape(-1, 4)
    scores = np.array([d[2] for d in dets], dtype=np.float64)
    classes = np.array([d[1] for d in dets], dtype=np.int64)
    return {
        "image_id": image_id,
        "gt_boxes": np.array([g[0] for g in gt], dtype=np.float64).reshape(-1, 4),
        "gt_classes": np.array([g[1] for g in gt], dtype=np.int64),
        "boxes": boxes,
        "scores": scores,
        "classes": classes,
        "top1": top1_mask(boxes, scores, classes, class_scores),
    }


# The thresholds the hand-computed answers below assume (the config's defaults).
THRESHOLDS = dict(iou_thresh=0.5, score_thresh=0.5, nms_thresh=0.7)


def metrics_of(*images):
    return compute_karyotype_metrics(list(images), **THRESHOLDS)


# ------------------------------------------------------------------ metric functions
def test_box_iou():
    # [1, 0, 11, 10] vs A: intersection 9 x 10 = 90, union 110.
    iou = box_iou(np.array([A, square(1.0), B]), np.array([A]))
    np.testing.assert_allclose(iou[:, 0], [1.0, 90 / 110, 0.0])
    assert box_iou(np.zeros((0, 4)), np.array([A])).shape == (0, 1)


def test_average_precision_known_curve():
    # One class, 4 ground truths; ranked detections TP FP TP FP TP FP (the 4th is missed).
    # recall    .25  .25  .50  .50  .75  .75
    # precision 1    1/2  2/3  1/2  3/5  1/2
    # envelope  1    2/3  2/3  3/5  3/5  1/2
    # all-point: .25 * 1 + .25 * 2/3 + .25 * 3/5 = 0.5666...
    # 101-point: recalls 0..0.25 (26 of them) -> 1, 0.26..0.50 (25) -> 2/3,
    #            0.51..0.75 (25) -> 3/5, 0.76..1 (25) -> 0: (26 + 50/3 + 15) / 101
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    hits = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    recall, precision = precision_recall(scores[::-1], hits[::-1], 4)  # any input order
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5, 0.5, 0.75, 0.75])
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5, 1 / 2])
    assert average_precision(recall, precision, "all") == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 5))
    assert average_precision(recall, precision, "coco101") == pytest.approx(
        (26 + 50 / 3 + 15) / 101
    )
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_ap_known_curve_end_to_end_and_pycocotools():
    # The same curve built from boxes: 4 ground truths of class "1", detections on
    # A (.9, TP), E-shifted nowhere (.8, FP), B (.7, TP), far (.6, FP), C (.5, TP), far (.4, FP).
    far = [square(1000.0 + 50 * i, 500.0) for i in range(3)]
    im = image(
        [(A, 0), (B, 0), (C, 0), (D, 0)],
        [
            (A, 0, 0.9),
            (far[0], 0, 0.8),
            (B, 0, 0.7),
            (far[1], 0, 0.6),
            (C, 0, 0.5),
            (far[2], 0, 0.4),
        ],
    )
    m, _ = metrics_of(im)
    assert m["mAP"] == pytest.approx(100 * 0.25 * (1 + 2 / 3 + 3 / 5))
    assert m["mAP101"] == pytest.approx(100 * (26 + 50 / 3 + 15) / 101)
    # pycocotools samples 101 recalls: it must give exactly our 101-point number.
    assert m["COCO_AP50"] == pytest.approx(m["mAP101"], abs=1e-9)
    # Every hit has IoU 1, so AP at IoU .50:.95 and .75 equal AP50.
    assert m["COCO_AP"] == pytest.approx(m["COCO_AP50"], abs=1e-9)
    assert m["COCO_AP75"] == pytest.approx(m["COCO_AP50"], abs=1e-9)


def test_nms_is_class_agnostic_and_strict():
    # [1,0,11,10] overlaps A at 90/110 = .82 > .7: suppressed; [3,0,13,10] at 70/130 = .54:
    # kept. Classes are not passed at all.
    keep = nms(np.array([square(1.0), A, square(3.0)]), np.array([0.8, 0.9, 0.7]), 0.7)
    assert keep.tolist() == [1, 2]


def test_top1_mask_with_class_scores_and_fallback():
    boxes = np.array([A, A, B, B])
    scores = np.array([0.5, 0.45, 0.1, 0.4])
    classes = np.array([0, 1, 0, 1])
    class_scores = np.zeros((4, NUM_CLASSES))
    class_scores[:2, :2] = [0.5, 0.45]  # proposal on A prefers class 0
    class_scores[2:, :2] = [0.1, 0.4]  # proposal on B prefers class 1
    assert top1_mask(boxes, scores, classes, class_scores).tolist() == [1, 0, 0, 1]
    # No class_scores: equal boxes = one proposal; its best score wins.
    assert top1_mask(boxes, scores, classes).tolist() == [1, 0, 0, 1]
    # Class-specific boxes (all different): every detection is its own proposal.
    assert top1_mask(boxes + np.arange(4)[:, None], scores, classes).all()
    assert top1_mask(np.zeros((0, 4)), np.zeros(0), np.zeros(0)).shape == (0,)


# ------------------------------------------------------------------ the paper's metrics
def test_perfect_detections():
    # Every chromosome found once with its class: everything 100, AER 0.
    gt = [(A, 0), (B, 1), (C, 23)]
    m, details = metrics_of(image(gt, [(box, k, 0.9) for box, k in gt]))
    for key in (
        "mAP",
        "mAPmax",
        "Acc",
        "COCO_AP",
        "COCO_AP50",
        "COCO_AP75",
        "mAP101",
        "CountExact",
    ):
        assert m[key] == pytest.approx(100.0), key
    assert m["AER"] == 0.0 and m["CountMAE"] == 0.0
    assert (m["TP"], m["FP"], m["FN"]) == (3, 0, 0)
    assert m["AP-1"] == m["AP-2"] == m["AP-Y"] == 100.0
    assert math.isnan(m["AP-3"])  # no ground truth: NaN, and not in the mean
    assert m["Acc-Y"] == 100.0 and m["AER-Y"] == 0.0
    assert math.isnan(m["InGroupErr"])  # no misclassification at all
    confusion = np.array(details["confusion"])
    assert confusion.trace() == 3 and confusion.sum() == 3


def test_wrong_class_counts_once_as_fp():
    # A: class "1" right (TP). B is a "2" called "3" (same box): TP 1, FP 1, and B is not an
    # FN because a kept prediction overlaps it. Acc = 1/2, AER = (1 + 0) / 2.
    # AP: class "1" 100, class "2" 0 (its only box was called "3"); "3" has no truth -> 50.
    m, details = metrics_of(image([(A, 0), (B, 1)], [(A, 0, 0.9), (B, 2, 0.8)]))
    assert (m["TP"], m["FP"], m["FN"]) == (1, 1, 0)
    assert m["Acc"] == 50.0 and m["AER"] == 50.0
    assert m["mAP"] == 50.0 and m["COCO_AP50"] == pytest.approx(50.0)
    assert m["Acc-1"] == 100.0 and m["Acc-3"] == 0.0 and math.isnan(m["Acc-2"])
    confusion = np.array(details["confusion"])
    assert confusion[0, 0] == 1 and confusion[1, 2] == 1 and confusion.sum() == 2
    # "2" and "3" are both Denver group A: the one error stays in its group.
    assert m["InGroupErr"] == 100.0
    assert m["Acc-groupA"] == 50.0 and m["AER-groupA"] == 50.0


def test_wrong_class_across_groups():
    # A "1" (group A) called "X" (group C): the error leaves its group.
    m, details = metrics_of(image([(A, 0)], [(A, 22, 0.9)]))
    assert m["InGroupErr"] == 0.0 and m["AER"] == 100.0 and m["Acc"] == 0.0
    assert np.array(details["confusion"])[0, 22] == 1


def test_duplicate_removed_by_class_agnostic_nms():
    # A "1" at A (.9) and a duplicate "2" at [1,0,11,10] (.8), IoU .82 > .7: the NMS is
    # class-agnostic, so the duplicate goes although its class differs. TP 1, FP 0.
    m, _ = metrics_of(image([(A, 0)], [(A, 0, 0.9), (square(1.0), 1, 0.8)]))
    assert (m["TP"], m["FP"], m["FN"], m["num_pred"]) == (1, 0, 0, 1)
    assert m["Acc"] == 100.0 and m["AER"] == 0.0
    # mAP sees all detections: class "2" has no truth, so only "1" counts: 100.
    assert m["mAP"] == 100.0


def test_duplicate_below_nms_thresh_is_a_false_positive():
    # [3,0,13,10] overlaps A at .54: it survives the NMS (<= .7), overlaps A at >= .5 but A is
    # taken: FP. A is not an FN. Acc = 1/2, AER = 1/1. AP of "1": TP then FP -> 100.
    m, details = metrics_of(image([(A, 0)], [(A, 0, 0.9), (square(3.0), 0, 0.8)]))
    assert (m["TP"], m["FP"], m["FN"]) == (1, 1, 0)
    assert m["Acc"] == 50.0 and m["AER"] == 100.0 and m["mAP"] == 100.0
    assert np.array(details["confusion"]).sum() == 1  # a duplicate is no matched box


def test_missed_chromosome():
    # A found, B ("2") missed: TP 1, FN 1, Acc 100, AER 1/2; AP "1" 100, "2" 0 -> mAP 50.
    m, details = metrics_of(image([(A, 0), (B, 1)], [(A, 0, 0.9)]))
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 1)
    assert m["Acc"] == 100.0 and m["AER"] == 50.0 and m["mAP"] == 50.0
    assert m["AER-2"] == 100.0 and m["AER-1"] == 0.0
    assert details["per_image"][0]["num_gt"] == 2 and details["per_image"][0]["num_pred"] == 1
    assert m["CountExact"] == 0.0 and m["CountMAE"] == 1.0


def test_fn_is_a_truth_no_kept_prediction_was_matched_to():
    # Two overlapping "1"s, A and [1,0,11,10] (IoU .82), one prediction exactly on A. It
    # matches A; the other truth is overlapped (.82) by that prediction, but one prediction
    # never finds two chromosomes: TP 1, FP 0, FN 1, AER 1/2.
    m, details = metrics_of(image([(A, 0), (square(1.0), 0)], [(A, 0, 0.9)]))
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 1)
    assert m["AER"] == 50.0 and m["CountMAE"] == 1.0
    # AP counts it as missed too: recall 1/2 at precision 1.
    assert m["mAP"] == 50.0
    # A second prediction of the wrong class on the other truth: one FP, and no FN (a right
    # box with the wrong class is one error).
    m, _ = metrics_of(image([(A, 0), (B, 0)], [(A, 0, 0.9), (B, 1, 0.8)]))
    assert (m["TP"], m["FP"], m["FN"]) == (1, 1, 0)


def test_low_score_box_dropped():
    # Kept for Acc/AER: A (.9, TP), B (.6, TP) and D (.5: >= p is kept, FP on nothing);
    # C (.3) is dropped. TP 2, FP 1, FN 0: Acc 2/3, AER 1/2 (with C: 2/4 and 2/2).
    m, _ = metrics_of(image([(A, 0), (B, 1)], [(A, 0, 0.9), (B, 1, 0.6), (C, 5, 0.3), (D, 5, 0.5)]))
    assert (m["TP"], m["FP"], m["FN"], m["num_pred"]) == (2, 1, 0, 3)
    assert m["Acc"] == pytest.approx(200 / 3) and m["AER"] == 50.0
    assert m["mAP"] == 100.0  # class "6" has no truth; "1" and "2" are perfect


def test_two_classes_per_proposal_map_vs_mapmax():
    # Proposal on A (truth "1") scores ("1" .5, "2" .45); proposal on B (truth "2") scores
    # ("1" .1, "2" .4). Each gives two detections.
    # mAP, all four: "1": A .5 TP, B .1 FP -> 100. "2": A .45 FP, B .4 TP -> envelope 1/2
    #   over recall [0, 1] -> 50. mAP 75 (COCO too: a constant envelope samples exactly).
    # mAPmax, top-1 only (A as "1", B as "2"): both 100.
    # Acc/AER: only A "1" (.5) passes p: TP 1; B is overlapped by nothing kept: FN 1.
    dets = [(A, 0, 0.5), (A, 1, 0.45), (B, 0, 0.1), (B, 1, 0.4)]
    class_scores = np.zeros((4, NUM_CLASSES))
    class_scores[:2, :2] = [0.5, 0.45]
    class_scores[2:, :2] = [0.1, 0.4]
    gt = [(A, 0), (B, 1)]
    for cs in (class_scores, None):  # the fallback (equal boxes) gives the same top-1
        m, _ = metrics_of(image(gt, dets, cs))
        assert m["mAP"] == 75.0 and m["COCO_AP50"] == pytest.approx(75.0)
        assert m["mAPmax"] == 100.0
        assert m["AP-2"] == 50.0 and m["APmax-2"] == 100.0
        assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 1)
        assert m["Acc"] == 100.0 and m["AER"] == 50.0


def test_mapmax_below_map():
    # Proposal on A (truth "1") prefers "2" (.6) over "1" (.3); the proposal on B (truth "2")
    # prefers "2" (.2 over .1), giving one detection.
    # mAP: "1": A .3 TP -> 100. "2": A .6 FP, B .2 TP -> envelope 1/2 -> 50. Mean 75.
    # mAPmax drops A-as-"1": "1" has no detection -> 0; "2" unchanged 50. Mean 25.
    dets = [(A, 1, 0.6), (A, 0, 0.3), (B, 1, 0.2)]
    class_scores = np.zeros((3, NUM_CLASSES))
    class_scores[:2, :2] = [0.3, 0.6]
    class_scores[2, :2] = [0.1, 0.2]
    m, _ = metrics_of(image([(A, 0), (B, 1)], dets, class_scores))
    assert m["mAP"] == 75.0 and m["mAPmax"] == 25.0


def test_image_without_ground_truth():
    # Image 1: A "1" found (.9). Image 2 has no truth and one "1" box at .95 (an FP ranked
    # first). AP "1": FP, TP -> envelope 1/2 -> 50 (COCO 50 too). Acc 1/2; AER (1 + 0) / 1.
    empty = image([], [(A, 0, 0.95)], image_id="empty")
    m, details = metrics_of(image([(A, 0)], [(A, 0, 0.9)]), empty)
    assert m["mAP"] == 50.0 and m["COCO_AP50"] == pytest.approx(50.0)
    assert m["Acc"] == 50.0 and m["AER"] == 100.0
    assert details["per_image"][1] == {
        "image_id": "empty",
        "file_name": "",
        "num_gt": 0,
        "num_pred": 1,
        "TP": 0,
        "FP": 1,
        "FN": 0,
    }
    # Nothing at all: NaN, no crash.
    m, _ = metrics_of(image([], []))
    assert math.isnan(m["mAP"]) and math.isnan(m["Acc"]) and math.isnan(m["AER"])
    assert math.isnan(m["COCO_AP50"]) and m["CountExact"] == 100.0


def test_truth_without_any_detection():
    # Truth but no detection anywhere: AP 0 (pycocotools agrees), Acc undefined, AER 100.
    m, _ = metrics_of(image([(A, 0), (B, 1)], []))
    assert m["mAP"] == 0.0 and m["COCO_AP50"] == pytest.approx(0.0)
    assert math.isnan(m["Acc"]) and m["AER"] == 100.0 and m["FN"] == 2


def test_match_karyotype_confusion_only_on_unclaimed_truths():
    # A "1" (.9 TP); a "2" on A (.8) is an FP but A is taken -> no confusion entry.
    # B "3" truth called "4" (.7) -> confusion[3-1, 4-1].
    gt_boxes, gt_classes = np.array([A, B]), np.array([0, 2])
    judged = match_karyotype(
        gt_boxes,
        gt_classes,
        np.array([A, A, B]),
        np.array([0.9, 0.8, 0.7]),
        np.array([0, 1, 3]),
        0.5,
        NUM_CLASSES,
    )
    assert judged["is_tp"].tolist() == [True, False, False]
    assert judged["gt_index"].tolist() == [0, -1, 1]
    assert judged["is_fn"].tolist() == [False, False]
    assert judged["confusion"][0, 0] == 1 and judged["confusion"][2, 3] == 1
    assert judged["confusion"].sum() == 2


# ------------------------------------------------------------------ the evaluator
def _instances(dets, class_scores=None, size=(1200, 1600)):
    inst = Instances(size)
    boxes = np.array([d[0] for d in dets], dtype=np.float32).reshape(-1, 4)
    inst.pred_boxes = Boxes(torch.from_numpy(boxes))
    inst.scores = torch.tensor([d[2] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([d[1] for d in dets], dtype=torch.int64)
    if class_scores is not None:
        inst.class_scores = torch.as_tensor(class_scores, dtype=torch.float32)
    return inst


def _dataset_dict(image_id, gt):
    # XYWH on purpose: the evaluator converts by bbox_mode.
    return {
        "image_id": image_id,
        "file_name": f"{image_id}.jpg",
        "height": 1200,
        "width": 1600,
        "annotations": [
            {
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": k,
            }
            for b, k in gt
        ],
    }


def test_evaluator_on_registered_dataset(tmp_path):
    name = "_test_karyotype_eval"
    dicts = [
        _dataset_dict("a", [(A, 0), (B, 1)]),
        _dataset_dict("b", [(A, 0)]),
        _dataset_dict("c", []),
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(CLASS_NAMES))
    try:
        cfg = get_cfg()
        add_deepacc_config(cfg)
        cfg.TEST.KARYOTYPE.NMS_THRESH = 0.6
        evaluator = KaryotypeEvaluator.from_config(cfg, name, output_dir=str(tmp_path))
        assert evaluator._nms_thresh == 0.6 and evaluator._score_thresh == 0.5
        evaluator.reset()
        # Test-time inputs carry no annotations: the truth comes from the catalog.
        inputs = [{"image_id": d["image_id"], "file_name": d["file_name"]} for d in dicts]
        class_scores = np.zeros((2, NUM_CLASSES))
        class_scores[:, :2] = [0.6, 0.4]  # one proposal on A, two detections
        outputs = [
            {"instances": _instances([(A, 0, 0.9), (B, 2, 0.8)])},
            {"instances": _instances([(A, 0, 0.6), (A, 1, 0.4)], class_scores)},
            {"instances": _instances([])},
        ]
        evaluator.process(inputs[:2], outputs[:2])
        evaluator.process(inputs[2:], outputs[2:])
        results = evaluator.evaluate()["karyotype"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    # Kept: a: A "1" TP, B "3" FP (on a "2": no FN); b: A "1" TP ("2" is not top-1).
    # TP 2, FP 1, FN 0 over 3 truths: Acc 2/3, AER 1/3.
    assert results["Acc"] == pytest.approx(200 / 3) and results["AER"] == pytest.approx(100 / 3)
    # AP "1": two TPs -> 100; "2": its one detection (b's A as "2") hits no "2" -> 0. mAP 50.
    assert results["mAP"] == 50.0 and results["mAPmax"] == 50.0
    assert all(isinstance(v, float) for v in results.values())
    for f in (
        "karyotype_confusion.png",
        "karyotype_per_class_ap.png",
        "karyotype_confusion.csv",
        "karyotype_per_image.csv",
        "karyotype_details.json",
    ):
        assert (tmp_path / f).stat().st_size > 0, f
    rows = (tmp_path / "karyotype_per_image.csv").read_text().splitlines()
    assert rows[0] == "image_id,file_name,num_gt,num_pred,TP,FP,FN"
    assert rows[3] == "c,c.jpg,0,0,0,0,0"


def test_evaluate_predictions_pairs():
    pairs = [(_dataset_dict("a", [(A, 0), (B, 1)]), _instances([(A, 0, 0.9), (B, 1, 0.8)]))]
    results = evaluate_predictions(pairs, **THRESHOLDS)["karyotype"]
    assert results["mAP"] == 100.0 and results["AER"] == 0.0


def test_evaluator_gathers_all_processes(monkeypatch):
    # Two processes, each saw one image; the main one evaluates both, the other returns {}.
    # Rank 0: A "1" found. Rank 1: B "2" called "3" -> FP, no FN. Acc 1/2, AER 1/2.
    from detectron2.utils import comm

    ranks = [KaryotypeEvaluator(None, **THRESHOLDS), KaryotypeEvaluator(None, **THRESHOLDS)]
    ranks[0].process([_dataset_dict("a", [(A, 0)])], [{"instances": _instances([(A, 0, 0.9)])}])
    ranks[1].process([_dataset_dict("b", [(B, 1)])], [{"instances": _instances([(B, 2, 0.9)])}])
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [r._images for r in ranks])
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert ranks[1].evaluate() == {}
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    results = ranks[0].evaluate()["karyotype"]
    assert results["num_gt"] == 2 and results["Acc"] == 50.0 and results["AER"] == 50.0


def test_evaluator_rejects_other_classes():
    name = "_test_karyotype_wrong_classes"
    MetadataCatalog.get(name).set(thing_classes=["chromosome"])
    try:
        with pytest.raises(ValueError, match="canonical"):
            KaryotypeEvaluator(name, **THRESHOLDS)
    finally:
        MetadataCatalog.remove(name)


# ------------------------------------------------------------------ pycocotools, real boxes
def _noisy_detections(gt_boxes, gt_classes, rng):
    """Jittered truths with random scores, some wrong classes, duplicates and extras."""
    dets = []
    for box, k in zip(gt_boxes, gt_classes):
        if rng.random() < 0.1:
            continue  # missed
        w, h = box[2] - box[0], box[3] - box[1]
        for _ in range(1 + int(rng.random() < 0.2)):  # sometimes a duplicate
            jitter = rng.normal(0.0, 0.12, 4) * [w, h, w, h]
            cls = int(k) if rng.random() > 0.2 else int(rng.integers(NUM_CLASSES))
            dets.append((box + jitter, cls, float(rng.random())))
    x_max, y_max = gt_boxes[:, 2].max(), gt_boxes[:, 3].max()
    for _ in range(8):  # boxes on nothing in particular
        x, y = rng.random() * x_max, rng.random() * y_max
        dets.append(
            (
                [x, y, x + 20 + 60 * rng.random(), y + 20 + 60 * rng.random()],
                int(rng.integers(NUM_CLASSES)),
                float(rng.random()),
            )
        )
    return dets


def test_ap50_agrees_with_pycocotools_on_cil(cil24):
    from deepacc_d2.data.datasets import parse_voc_xml

    xml_files = sorted(glob.glob(os.path.join(cil24, "Annotations", "*.xml")))[:5]
    rng = np.random.default_rng(0)
    images = []
    for xml in xml_files:
        d = parse_voc_xml(xml, xml.replace(".xml", ".jpg"))
        gt = [
            (BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS), a["category_id"])
            for a in d["annotations"]
        ]
        gt_boxes = np.array([g[0] for g in gt])
        images.append(
            image(gt, _noisy_detections(gt_boxes, [g[1] for g in gt], rng), image_id=d["image_id"])
        )
    assert sum(len(im["gt_classes"]) for im in images) > 200

    ours = per_class_average_precision(images, NUM_CLASSES, 0.5, interpolations=("all", "coco101"))
    coco = coco_average_precision(images, NUM_CLASSES)
    # Same matching and the same 101 samples: equal per class up to float rounding.
    np.testing.assert_allclose(ours["coco101"], coco["AP50_per_class"], rtol=0, atol=1e-9)
    m, _ = metrics_of(*images)
    assert m["mAP101"] == pytest.approx(m["COCO_AP50"], abs=1e-7)
    # All-point vs 101 points: a Riemann sum of the same non-increasing step function,
    # so the gap is at most one AP point per class, hence for the mean.
    assert abs(ours["all"] - ours["coco101"]).max() <= 0.01 + 1e-12
    assert abs(m["mAP"] - m["COCO_AP50"]) <= 1.0
    # The noise is real: neither trivially perfect nor useless.
    assert 30.0 < m["mAP"] < 95.0
