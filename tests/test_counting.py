"""Counting a cell: the candidates kept from the model's proposal outputs, the judge's labels
and features, the choice rule that counts and names together, and the judge in the
karyotype step."""

import dataclasses
import os

import numpy as np
import pytest
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype.assignment import assign_classes
from deepacc_d2.app.karyotype.candidates import (
    candidate_instances,
    one_box_labels,
    proposal_outputs,
)
from deepacc_d2.app.karyotype.cell import KaryotypeRules, counted_detections
from deepacc_d2.app.karyotype.judge import CandidateJudge, candidate_features, judge_state
from deepacc_d2.classes import CLASS_NAMES, NUM_CLASSES
from deepacc_d2.studies.count_stages import auc, error_kinds, stage_report
from deepacc_d2.studies.judge_training import (
    boxes_together,
    choose_rule,
    count_summary,
    judge_examples,
    train_judge,
    wrong_candidates,
)
from deepacc_d2.studies.karyotype_benchmark import detection_cells

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_one_box_labels_by_hand():
    gt = np.array([[0, 0, 10, 40], [8, 0, 18, 40]], float)  # two touching chromosomes
    boxes = np.array(
        [
            [0, 0, 10, 40],  # chromosome 0 exactly
            [0, 0, 10, 30],  # a second box on chromosome 0 (IoU 0.75)
            [0, 0, 10, 15],  # a fragment of it (IoU 0.375)
            [0, 0, 18, 40],  # both in one box (IoU 10 / 18 = 0.56 with each)
            [9, 1, 18, 40],  # chromosome 1 (IoU 351 / 400)
            [50, 50, 60, 60],  # debris
        ],
        float,
    )
    labels, matched = one_box_labels(boxes, gt)
    assert labels.tolist() == [True, False, False, False, True, False]
    assert matched.tolist() == [0, -1, -1, -1, 1, -1]
    # the best total IoU, not the first come: the two-in-one box alone takes one chromosome
    labels, matched = one_box_labels(boxes[[3, 0]], gt)
    assert matched.tolist() == [1, 0]
    assert one_box_labels(boxes[:0], gt)[0].shape == (0,)


def _named(classes, confidence=0.96):
    """Names sure of a class, the rest on the next class (renaming to any other is ~impossible)."""
    classes = np.asarray(classes)
    names = np.zeros((len(classes), NUM_CLASSES))
    names[np.arange(len(classes)), classes] = confidence
    names[np.arange(len(classes)), (classes + 1) % NUM_CLASSES] = 1 - confidence
    return names


def _normal_cell():
    return [k for k in range(22) for _ in range(2)] + [CLASS_NAMES.index("X"), 23]


def test_the_choice_rule_on_a_hand_made_cell():
    """Costs 8, 8 and -log p of the names (0.04 each): a candidate in a normal slot costs
    -log q - 8 + 0.04, in an extra slot -log q + 8 + 0.04, left out -log(1 - q)."""
    cell = _normal_cell()
    five = CLASS_NAMES.index("5")
    nine, seven, three, t21 = (CLASS_NAMES.index(c) for c in ("9", "7", "3", "21"))
    cell.remove(nine)  # one 9 is not among the sure ones
    classes = cell + [nine, seven, three, t21]
    keep = np.full(len(classes), 0.9999)  # sure ones: leaving one out costs -log 1e-4 = 9.2
    keep[[cell.index(five), cell.index(five) + 1]] = 0.9  # a touching pair of 5s: both unsure
    keep[-4:] = [
        0.3,  # a doubtful 9 that fills the empty 9 slot: -log .3 - 8 < -log .7 -> counted
        0.5,  # a second box on a 7 (a third 7): -log .5 + 8 > -log .5 -> left out
        0.4,  # a doubtful 47th (a third 3): -log .4 + 8 > -log .6 -> left out
        0.9999,  # a real third 21: -log .9999 + 8 = 8.0001 < -log .0001 = 9.2 -> counted
    ]
    # (with the other two 21s at q = 0.97, one of those would be left out instead: a gain is
    # counted only when all its copies are surer than exp(-8) of being chromosomes)
    names, margins = assign_classes(_named(classes), 8.0, 8.0, keep)
    assert names[-4:].tolist() == [nine, -1, -1, t21]
    assert (names[:-4] == np.array(cell)).all()  # the touching 5s and the rest counted as named
    assert (margins >= 0).all()
    # counting the left-out 7 as a third 7 would cost 8 - log .96 more; renaming it 8 and a
    # sure 8 to 9 in place of the doubtful 9 (left out) costs 2 log(.96 / .04) + log(.3 / .7)
    assert margins[-3] == pytest.approx(2 * np.log(0.96 / 0.04) + np.log(0.3 / 0.7), abs=1e-6)
    # without the judge everything counts: 47 + 3 chromosomes
    assert (assign_classes(_named(classes), 8.0, 8.0)[0] >= 0).all()


def test_a_trisomy_stays_callable_and_a_doubtful_one_does_not():
    cell = _normal_cell() + [CLASS_NAMES.index("21")]
    keep = np.full(len(cell), 0.999)
    names, _ = assign_classes(_named(cell), 4.0, 4.0, keep)
    assert (names >= 0).sum() == 47  # -log .001 = 6.9 > 4 + 0.04: the 47th is counted
    keep[-1] = 0.9
    names, _ = assign_classes(_named(cell), 4.0, 4.0, keep)
    assert (names >= 0).sum() == 46  # -log .1 = 2.3 < 4.04: left out


def test_candidate_features_by_hand():
    boxes = np.array([[0, 0, 10, 40], [0, 0, 10, 20], [100, 0, 110, 40]], float)
    class_scores = _named([0, 0, 5]) * np.array([[0.9], [0.6], [0.3]])
    f = candidate_features(boxes, class_scores)
    k = NUM_CLASSES
    assert f.shape == (3, NUM_CLASSES + 14)
    np.testing.assert_allclose(f[:, :k].sum(axis=1), 1.0, rtol=1e-6)  # names normalised
    np.testing.assert_allclose(f[:, k], [0.9, 0.6, 0.3], rtol=1e-6)  # foreground
    # confident (fg >= 0.5): boxes 0 and 1, median long side 30 -> log(40 / 30), log(20 / 30)
    np.testing.assert_allclose(f[:, k + 3], np.log([40 / 30, 20 / 30, 40 / 30]), rtol=1e-5)
    # the fragment lies wholly inside the stronger box 0: IoU 0.5, inside 1.0
    assert f[1, k + 8] == pytest.approx(0.5) and f[1, k + 9] == pytest.approx(1.0)
    assert f[1, k + 11] == pytest.approx(0.9)  # the stronger candidate's foreground
    assert f[0, k + 8] == 0 and f[0, k + 10] == 0  # nothing is stronger than box 0
    assert f[0, k + 13] == 1 and f[1, k + 12] == 1  # one weaker, one stronger neighbour
    assert candidate_features(boxes[:0], class_scores[:0]).shape == (0, NUM_CLASSES + 14)


def test_the_judge_learns_a_separable_rule():
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(40):
        fg = rng.uniform(0.05, 1.0, 60)
        x = np.zeros((60, NUM_CLASSES + 14), np.float32)
        x[:, NUM_CLASSES] = fg
        x[:, NUM_CLASSES + 9] = rng.uniform(0, 1, 60)  # share inside a stronger box
        examples.append((x, (fg > 0.5) & (x[:, NUM_CLASSES + 9] < 0.7)))
    judge = train_judge(examples, hidden=16, epochs=20, batch_size=256, lr=1e-2)
    x = torch.from_numpy(np.concatenate([e[0] for e in examples]))
    y = np.concatenate([e[1] for e in examples])
    with torch.no_grad():
        assert auc(judge(x).numpy(), y) > 0.97


def test_auc_by_hand():
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0])) == 1.0
    assert auc(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(0.875)


def test_what_the_count_gets_wrong_by_hand():
    # A and B touch side by side; C, D, E stand alone
    gt = np.array(
        [[0, 0, 10, 30], [12, 0, 22, 30], [50, 0, 60, 20], [80, 0, 90, 20], [100, 0, 110, 20]]
    )
    around_ab = [0, 0, 22, 30]  # IoU 0.45 with A and with B, both wholly inside
    fragment_c = [50, 0, 60, 8]  # IoU 0.4 with C, wholly inside it
    debris = [200, 200, 210, 210]
    counted = np.array([around_ab, fragment_c, gt[3], debris])
    candidates = np.concatenate([counted, [gt[0], [100, 0, 110, 21]]])  # A's and E's not counted
    kinds = error_kinds(counted, candidates, gt)
    # only D is counted once; B and C have no candidate at IoU >= 0.5, A and E have one; A
    # lies inside the counted box around A and B, E beside every counted box
    assert kinds == {
        "no_candidate": 2,
        "not_counted": 2,
        "not_counted_inside": 1,
        "around_two": 1,
        "fragment": 1,
        "other": 1,
    }
    nothing = error_kinds(np.zeros((0, 4)), np.zeros((0, 4)), gt)
    assert nothing["no_candidate"] == 5 and nothing["other"] == 0


def _constant_judge(path, logit):
    judge = CandidateJudge(hidden=4)
    with torch.no_grad():
        for p in judge.parameters():
            p.zero_()
        judge.net[-1].bias.fill_(logit)
    torch.save(judge_state(judge), path)
    return str(path)


def _cell_instances(classes):
    n = len(classes)
    x = 30.0 * np.arange(n)
    boxes = torch.tensor(np.stack([x, x * 0, x + 12, x * 0 + 40], axis=1), dtype=torch.float32)
    class_scores = torch.from_numpy(_named(classes) * 0.95).float()
    return Instances(
        (100, 30 * n + 20),
        pred_boxes=Boxes(boxes),
        scores=class_scores.max(dim=1).values,
        pred_classes=class_scores.argmax(dim=1),
        class_scores=class_scores,
    )


def test_the_karyotype_step_counts_what_the_judge_keeps(tmp_path):
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18_crops.yaml"))
    rules = dataclasses.replace(KaryotypeRules.from_config(cfg), judge="")
    instances = _cell_instances(_normal_cell() + [CLASS_NAMES.index("21")])
    assert len(counted_detections(instances, rules)["classes"]) == 47
    sure = dataclasses.replace(rules, judge=_constant_judge(tmp_path / "sure.pth", 12.0))
    assert len(counted_detections(instances, sure)["classes"]) == 47  # q = 1 - 6e-6
    none = dataclasses.replace(rules, judge=_constant_judge(tmp_path / "none.pth", -12.0))
    assert len(counted_detections(instances, none)["classes"]) == 0  # 12 - 8 > -log(1 - q)


def test_a_broken_judge_file_is_named(tmp_path):
    path = tmp_path / "judge.pth"
    path.write_bytes(b"not a checkpoint")
    rules = dataclasses.replace(
        KaryotypeRules.from_config(
            setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18_crops.yaml"))
        ),
        judge=str(path),
    )
    with pytest.raises(ValueError, match="judge.pth"):
        counted_detections(_cell_instances(_normal_cell()), rules)


@pytest.mark.parametrize("meta_architecture", ["GeneralizedRCNN", "MirrorViewRCNN"])
def test_candidates_from_the_proposal_outputs_are_the_models_detections(meta_architecture):
    """The kept proposal outputs give exactly the model's own top-1 detections, at the lowest
    score threshold they cover, in the image's own pixels (a resized input); with the mirror
    view, both views'."""
    thresh = 0.01 / NUM_CLASSES  # KEEP_FOREGROUND / K
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"),
        ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", str(thresh), "TEST.DETECTIONS_PER_IMAGE", "40"]
        + ["MODEL.META_ARCHITECTURE", meta_architecture],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    inputs = [{"image": torch.rand(3, 160, 208) * 255, "height": 240, "width": 312}]
    with torch.no_grad():
        expected = model(inputs)[0]["instances"]
        (outputs,) = proposal_outputs(model, inputs)
    expected = expected[expected.top1]
    views = 2 if meta_architecture == "MirrorViewRCNN" else 1
    assert len(outputs["proposals"]) == views * cfg.MODEL.RPN.POST_NMS_TOPK_TEST
    record = {"image_size": (240, 312), **outputs}
    got = candidate_instances(record, thresh, 0.5, 40)
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got.scores, expected.scores)
    assert (got.pred_classes == expected.pred_classes).all()
    torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="below"):  # what the kept outputs cannot cover
        candidate_instances(record, thresh / 2, 0.5, 40)


def _two_chromosome_cell(fifth_box):
    """A cell's proposal outputs: two chromosomes, each with its box (foreground 0.9, 0.8), a
    second box on the first (IoU 0.65, named otherwise, 0.4), debris (0.3) and ``fifth_box``
    at foreground 0.03."""
    boxes = np.array(
        [[0, 0, 10, 40], [50, 0, 60, 40], [0, 0, 10, 26], [80, 80, 90, 90], fifth_box],
        np.float32,
    )
    probs = np.zeros((5, NUM_CLASSES + 1), np.float32)
    for row, (k, fg) in enumerate([(0, 0.9), (1, 0.8), (5, 0.4), (2, 0.3), (0, 0.03)]):
        probs[row, k], probs[row, -1] = fg, 1 - fg
    return {
        "file_name": "cell.png",
        "image_size": (100, 100),
        "boxes": boxes,
        "probs": probs,
        "gt_boxes": np.array([[0, 0, 10, 40], [50, 0, 60, 40]], float),
    }


def test_judge_examples_are_the_candidates_the_karyotype_step_sees():
    """Two chromosomes, each with its box, a second box on the first and debris: the judge
    trains on the counting candidates (foreground >= 0.05, class-agnostic NMS 0.7) with the
    one box of each chromosome as the positives."""
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18_crops.yaml"))
    ((features, labels),) = judge_examples(cfg, [_two_chromosome_cell([0, 0, 10, 39])])
    # the fifth box is below foreground 0.05; the second box on the first chromosome (IoU
    # 0.65, named otherwise: per-class NMS does not see it) is kept at 0.7; in foreground order
    np.testing.assert_allclose(features[:, NUM_CLASSES], [0.9, 0.8, 0.4, 0.3], rtol=1e-5)
    assert labels.tolist() == [True, True, False, False]


def test_wrong_candidates_are_the_counting_candidates_on_no_chromosome():
    """The same cell: the second box on the first chromosome covers it (IoU 0.65): no wrong
    candidate; the debris box is; the box below foreground 0.05 is no candidate at all."""
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18_crops.yaml"))
    record = _two_chromosome_cell([30, 30, 40, 40])
    wrong = wrong_candidates(cfg, [record])
    assert list(wrong) == ["cell.png"]
    np.testing.assert_allclose(wrong["cell.png"], [[80, 80, 90, 90]])
    empty = dict(record, file_name="empty.png", gt_boxes=np.zeros((0, 4)))
    assert len(wrong_candidates(cfg, [empty])["empty.png"]) == 4  # no truth: all are wrong


def test_wrong_candidates_of_two_models_together():
    first = {"a.png": np.array([[0, 0, 4, 4]]), "b.png": np.zeros((0, 4))}
    second = {"a.png": np.array([[1, 1, 5, 5], [2, 2, 6, 6]]), "c.png": np.array([[3, 3, 7, 7]])}
    together = boxes_together(first, second)
    assert sorted(together) == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(together["a.png"], [[0, 0, 4, 4], [1, 1, 5, 5], [2, 2, 6, 6]])
    assert together["a.png"].dtype == np.float32
    assert together["b.png"].shape == (0, 4)
    np.testing.assert_array_equal(together["c.png"], [[3, 3, 7, 7]])
    assert boxes_together(first)["a.png"].tolist() == [[0, 0, 4, 4]]


def test_the_outputs_cache_knows_a_weights_file_replaced_under_its_name(tmp_path):
    from deepacc_d2.app.karyotype.candidates import _cache_key

    from detectron2.data import DatasetCatalog

    if "cache_key_toy" not in DatasetCatalog.list():
        DatasetCatalog.register("cache_key_toy", lambda: [{"file_name": "a.png"}])
    weights = tmp_path / "crops.pth"
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18_crops.yaml"),
        ["MODEL.SECOND_LOOK.WEIGHTS", str(weights)],
    )
    weights.write_bytes(b"one classifier")
    before = _cache_key(cfg, "cache_key_toy", None)
    weights.write_bytes(b"another classifier")
    assert _cache_key(cfg, "cache_key_toy", None) != before
    weights.write_bytes(b"one classifier")
    assert _cache_key(cfg, "cache_key_toy", None) == before
    # a margin without turned crops renames nothing; with them it renames the doubtful ones
    cfg.defrost()
    cfg.MODEL.SECOND_LOOK.TURNS_MARGIN = 0.3
    assert _cache_key(cfg, "cache_key_toy", None) == before
    cfg.MODEL.SECOND_LOOK.TURNS = 4
    turned = _cache_key(cfg, "cache_key_toy", None)
    cfg.MODEL.SECOND_LOOK.TURNS_MARGIN = 0.5
    assert len({before, turned, _cache_key(cfg, "cache_key_toy", None)}) == 3
    # both views' outputs are another model's
    cfg.MODEL.SECOND_LOOK.TURNS = 1
    assert _cache_key(cfg, "cache_key_toy", None) == before
    cfg.MODEL.META_ARCHITECTURE = "MirrorViewRCNN"
    assert _cache_key(cfg, "cache_key_toy", None) != before


def test_the_share_counted_on_no_chromosome_by_hand():
    """The two-chromosome cell, every candidate counted (no judge; the cut at foreground 0.05
    and NMS 0.7 leave four): the second box on the first chromosome (IoU 0.65) lies on a
    chromosome, the debris box on none: 1 of 4 counted objects."""
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18_crops.yaml"))
    rules = dataclasses.replace(KaryotypeRules.from_config(cfg), judge="")
    record = _two_chromosome_cell([0, 0, 10, 39])
    record["gt_classes"] = np.array([0, 1])
    (cell,) = detection_cells(cfg, [record])
    summary = count_summary([cell], rules)
    assert summary["counted_per_cell"] == 4 and summary["not_chromosome"] == 25.0
    assert summary["named_right"] == 100.0  # both chromosomes counted once, named right


def _summary(exact_normal, exact_abnormal, exact):
    return dict(exact_normal=exact_normal, exact_abnormal=exact_abnormal, exact=exact)


def test_the_rule_chosen_calls_normal_and_abnormal_cells_alike():
    results = {
        "normal only": _summary(95.0, 0.0, 85.0),  # the most exact calls, never 45,X or 47,XXY
        "both": _summary(88.0, 30.0, 80.0),
        "both, fewer exact": _summary(90.0, 28.0, 79.0),  # 118 as well
    }
    assert choose_rule(results) == "both"
    del results["both"]
    assert choose_rule(results) == "both, fewer exact"


def test_the_stage_table_of_a_hand_made_cell(tmp_path):
    """The two-chromosome cell, every candidate counted: both chromosomes reach every stage
    and are counted once; 1 of the 4 counted objects (the debris) lies on no chromosome."""
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18_crops.yaml"),
        ["TEST.KARYOTYPE.COUNT_JUDGE", ""],
    )
    record = _two_chromosome_cell([0, 0, 10, 39])
    record.update(gt_classes=np.array([0, 1]), proposals=record["boxes"])
    report, table = stage_report(cfg, [record], "toy", "a command", str(tmp_path))
    assert [s["covered_pct"] for s in report["stages"]] == [100.0] * len(report["stages"])
    assert report["counted_once_pct"] == 100.0 and report["not_chromosome_pct"] == 25.0
    assert "a command" in table and os.path.isfile(tmp_path / "count_errors_toy.png")
