"""The karyotype rules' benchmark on hand-made cells: perfect detections give exact calls, a
known confusion gives the known mistakes, simulated cells keep their karyotypes."""

import dataclasses

import numpy as np

from deepacc_d2.app.config import add_application_config
from deepacc_d2.app.karyotype.cell import KaryotypeRules
from deepacc_d2.classes import NUM_CLASSES
from deepacc_d2.studies.karyotype_benchmark import (
    compare_rules,
    detection_bank,
    judge_cell,
    judge_simulated_cell,
    simulate_cells,
    summarize,
)

from detectron2.config import get_cfg

NORMAL_XY = [k for k in range(22) for _ in range(2)] + [22, 23]


def rules(**changes):
    cfg = get_cfg()
    add_application_config(cfg)
    return dataclasses.replace(KaryotypeRules.from_config(cfg), **changes)


def record(true_classes, vectors, foreground=0.9):
    """A labelled cell whose detections sit exactly on its chromosomes (one each), with the
    given class vectors (rows sum to 1) scaled by the foreground probability."""
    n = len(true_classes)
    boxes = np.array([[30.0 * i, 0, 30.0 * i + 20, 40] for i in range(n)])
    class_scores = foreground * np.asarray(vectors, dtype=np.float32)
    top = class_scores.argmax(axis=1)
    return {
        "file_name": "cell.png",
        "image_size": (40, 30 * n),
        "gt_boxes": boxes,
        "gt_classes": np.asarray(true_classes),
        "boxes": boxes.astype(np.float32),
        "scores": class_scores[np.arange(n), top],
        "pred_classes": top,
        "class_scores": class_scores,
        "top1": np.ones(n, bool),
        "all_classes": np.ones(n, bool),
    }


def one_hot(classes, p=1.0):
    v = np.full((len(classes), NUM_CLASSES), (1 - p) / (NUM_CLASSES - 1))
    v[np.arange(len(classes)), classes] = p
    return v


def test_perfect_detections_give_the_exact_call():
    cell = record(NORMAL_XY, one_hot(NORMAL_XY))
    for rule in (rules(), rules(count_by="foreground", assign=True)):
        judged = judge_cell(cell, rule)
        assert judged["exact"] and judged["call"] == "46,XY" and judged["truth"] == "46,XY"
        assert judged["named_right"] == 46 and judged["count_right"]


def test_score_counting_misses_what_foreground_counting_keeps():
    # every chromosome's name at 0.55 of a foreground of 0.8: score 0.44 < 0.5, foreground 0.8
    cell = record(NORMAL_XY, one_hot(NORMAL_XY, 0.55), foreground=0.8)
    assert judge_cell(cell, rules())["counted"] == 0
    judged = judge_cell(cell, rules(count_by="foreground"))
    assert judged["counted"] == 46 and judged["exact"]


def test_the_assignment_fixes_a_look_alike_the_top_class_gets_wrong():
    vectors = one_hot(NORMAL_XY, 0.97)
    eight = NORMAL_XY.index(7) + 1  # the second chromosome 8 (class index 7)
    vectors[eight] = 0.0
    vectors[eight, 6], vectors[eight, 7] = 0.6, 0.4  # looks like a 7
    cell = record(NORMAL_XY, vectors)
    by_top = judge_cell(cell, rules(count_by="foreground"))
    assert by_top["call"] == "46,XY,+7,-8" and not by_top["exact"]
    assert by_top["named_right"] == 45
    together = judge_cell(cell, rules(count_by="foreground", assign=True))
    assert together["named_right"] == 46 and together["exact"]


def test_simulated_cells_keep_their_karyotypes():
    cells = [record(NORMAL_XY, one_hot(NORMAL_XY))]
    bank = detection_bank(cells, rules(count_by="foreground"))
    assert bank["miss_rate"].max() == 0 and len(bank["false"]) == 0
    simulated = simulate_cells(bank, 200, abnormality_scale=6.0, seed=0)
    summary = summarize([judge_simulated_cell(c, rules(assign=True)) for c in simulated])
    assert summary["abnormal_cells"] > 120  # default rates sum to 0.14, x 6: 84 % abnormal
    assert summary["exact"] == 100.0 and summary["named_right"] == 100.0
    truths = {c["truth"] for c in simulated}
    assert {"47,XXY", "45,X"} <= truths and any("+21" in t for t in truths)


def test_compare_rules_never_chooses_a_rule_worse_on_abnormal_cells():
    rng = np.random.default_rng(0)
    cells = []
    for _ in range(4):
        vectors = one_hot(NORMAL_XY, 0.8) + rng.uniform(0, 0.2, (46, NUM_CLASSES))
        cells.append(record(NORMAL_XY, vectors / vectors.sum(axis=1, keepdims=True)))
    candidates = {
        "top": rules(count_by="foreground"),
        "assign": rules(count_by="foreground", assign=True),
        "assign, gains free": rules(count_by="foreground", assign=True, extra_cost=0.0),
    }
    results, chosen = compare_rules(cells, candidates, 100, 6.0, 0)
    floor = results["top"]["simulated"]["exact_abnormal"]
    assert results[chosen]["simulated"]["exact_abnormal"] >= floor
    assert set(results) == set(candidates)


def test_the_plot_shows_each_rule_once_the_chosen_last():
    from deepacc_d2.studies.karyotype_benchmark import rules_to_plot

    results = {
        "top-1 score >= p, top class": {},
        "foreground >= 0.3, NMS 0.5, assignment (extra 8, missing 8)": {},
        "the config's rule: the judge's candidates, counted and named together": {},
        "foreground >= 0.3, NMS 0.7, top class": {},
    }
    chosen = "the config's rule: the judge's candidates, counted and named together"
    assert rules_to_plot(results, chosen) == [
        "top-1 score >= p, top class",
        "foreground >= 0.3, NMS 0.7, top class",
        chosen,
    ]
