"""Choosing the review flags' thresholds: each flag at every setting of the grid on a hand-made
cell, and the choice on hand-made cells."""

import dataclasses

import numpy as np

from deepacc_d2.app.karyotype.cell import KaryotypeRules
from deepacc_d2.classes import NUM_CLASSES
from deepacc_d2.studies.review_choice import (
    GRID,
    choose_thresholds,
    flag_firing,
    plot_tradeoff,
    threshold_rows,
)

RULES = KaryotypeRules(0.5, 0.5, 0.8, 0.1, 0.3, 0.2, count_by="foreground", assign=True)


def _normal_cell():
    """46,XY: 46 boxes apart; 0 and 1 overlap at IoU 0.4, 4 calls score 0.6, one name's
    assignment margin is 0.7 and one call's top two (4 and 5, group B) are 0.08 apart."""
    classes = np.array([k for k in range(22) for _ in (0, 1)] + [22, 23])
    x = 30.0 * np.arange(46)
    x[1] = 60.0 / 7  # (20 - x) / (20 + x) = 0.4
    boxes = np.stack([x, np.zeros(46), x + 20, np.full(46, 50.0)], axis=1)
    class_scores = np.zeros((46, NUM_CLASSES))
    class_scores[np.arange(46), classes] = 0.9
    scores = np.full(46, 0.9)
    scores[10:14] = 0.6
    margins = np.full(46, 5.0)
    margins[20] = 0.7
    class_scores[6, 3], class_scores[6, 4] = 0.5, 0.42  # a chromosome 4
    return {
        "boxes": boxes,
        "classes": classes,
        "scores": scores,
        "class_scores": class_scores,
        "margins": margins,
    }


def test_each_flag_fires_at_the_settings_it_should():
    firing = flag_firing(_normal_cell(), RULES)
    assert firing["call"] == "46,XY" and not firing["fixed"]
    assert firing["unsure_names"] == [False, False, True, True, True]  # margin 0.7
    assert firing["unsure_sex"] == [False] * 5 + [True] * 2  # X and Y: margin 5
    # 4 of 46 (8.7 %) below 0.7 and 0.8, none below 0.6: only with share 0.05
    low = [i for i, fires in enumerate(firing["low_confidence"]) if fires]
    assert [GRID["low_confidence"][i] for i in low] == [
        {"low_score": 0.7, "low_score_share": 0.05},
        {"low_score": 0.8, "low_score_share": 0.05},
    ]
    assert firing["overlap"] == [False, True, False, False]  # IoU 0.4
    assert firing["within_group_ambiguity"] == [False, False, True, True]  # 0.08 apart
    # a 45th chromosome: the count flags without a threshold
    short = {k: v[1:] for k, v in _normal_cell().items()}
    assert flag_firing(short, RULES)["fixed"]


def _firing(fixed, **on):
    """A cell's flags: each tunable one off except at the settings in ``on``."""
    out = {"fixed": fixed}
    for flag, settings in GRID.items():
        out[flag] = [i in on.get(flag, ()) for i in range(len(settings))]
    return out


def test_the_fewest_cells_sent_without_letting_a_wrong_call_pass(tmp_path):
    everywhere = range(1, 20)
    firings = [
        _firing(False, overlap=everywhere),  # exact: overlaps at every setting
        _firing(True),  # wrong: the count flags it
        _firing(False, unsure_names=(2, 3, 4)),  # wrong: only unsure names at margin >= 1
        _firing(False, low_confidence=everywhere),  # exact
    ]
    exact = [True, False, False, True]
    rows = threshold_rows(firings, exact)
    best = choose_thresholds(rows, 0.0)[0]
    assert best["settings"] == {
        "name_margin": 1.0,
        "sex_margin": 0.0,
        "low_score": 0.8,
        "low_score_share": 1.0,
        "overlap_iou": 1.01,
        "ambiguity_margin": 0.0,
    }
    assert (best["sent"], best["wrong_not_sent"], best["right_sent"]) == (50.0, 0.0, 0.0)
    # letting one wrong cell in four pass: every tunable flag off
    loose = choose_thresholds(rows, 30.0)[0]
    assert loose["settings"]["name_margin"] == 0.0
    assert (loose["sent"], loose["wrong_not_sent"]) == (25.0, 25.0)
    assert threshold_rows([], []) == []
    plot_tradeoff(rows, str(tmp_path / "review.png"))
    assert (tmp_path / "review.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the grid's first settings turn every flag off
    off = dataclasses.replace(RULES, **{k: v for s in GRID.values() for k, v in s[0].items()})
    firing = flag_firing(_normal_cell(), off)
    assert not any(firing[flag][0] for flag in GRID)
