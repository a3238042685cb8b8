"""
The DeepACC loss pieces (deepacc_d2/modeling/classification.py) on toys small enough to do by hand.
Shapes: R proposals, K foreground classes, label K = background, D feature dim.
"""

import math

import numpy as np
import pytest
import torch

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2)
from deepacc_d2.classes import NUM_CLASSES, group_adjacency_matrix
from deepacc_d2.modeling import DeepACCOutputLayers
from deepacc_d2.modeling.classification import (
    aam_logits,
    aam_loss,
    additive_angular_margin,
    center_candidates,
    group_inner_adjacency_loss,
    local_class_centers,
    siamese_logits,
)

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

COS_M, SIN_M = math.cos(0.25), math.sin(0.25)  # 0.968912, 0.247404


def test_additive_angular_margin_by_hand():
    cosine = torch.tensor([0.6, -0.9, -0.99, 1.0, -1.0])
    out = additive_angular_margin(cosine, 0.25)
    expected = [
        0.6 * COS_M - 0.8 * SIN_M,  # cos(acos(0.6) + m) = 0.383424
        -0.9 * COS_M - math.sqrt(0.19) * SIN_M,  # θ = 2.69 < π - m: -0.979862
        -0.99 - (1 - COS_M),  # θ = 3.00 > π - m = 2.89: linear continuation, -1.021088
        COS_M,  # θ = 0: cos m (up to the sin² floor)
        -1.0 - (1 - COS_M),  # θ = π
    ]
    assert torch.allclose(out, torch.tensor(expected), atol=3e-4)
    assert out[0].item() == pytest.approx(0.383424, abs=1e-6)
    # Continuous at θ = π - m, decreasing in θ over the whole range.
    grid = torch.linspace(1.0, -1.0, 2001)
    values = additive_angular_margin(grid, 0.25)
    assert (values[1:] <= values[:-1] + 1e-6).all()
    assert (values <= grid + 1e-6).all()  # always a penalty


def test_aam_numerics_never_nan():
    # |cos θ| = 1 exactly (arccos'/sqrt' infinite there), θ + m past π, zero features.
    cosine = torch.tensor(
        [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [-0.999, 0.2, 0.1]], requires_grad=True
    )
    gt = torch.tensor([0, 1, 0])
    loss = aam_loss(cosine, gt, scale=64.0, margin=0.25)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(cosine.grad).all()
    # Through the normalisation, with an all-zero (all ReLUs off) feature.
    predictor = _predictor(num_classes=2, dim=3, siamese=False)
    features = torch.zeros(2, 3, requires_grad=True)
    (class_outputs, _) = predictor(features)
    loss = aam_loss(class_outputs["cosine"], torch.tensor([0, 2]), 64.0, 0.25)
    loss.backward()
    assert torch.isfinite(loss)
    assert (
        torch.isfinite(features.grad).all()
        and torch.isfinite(predictor.cls_score.weight.grad).all()
    )


def test_aam_logits_and_loss_on_three_class_toy():
    # K = 2 foreground classes + background (column 2); s = 2, m = 0.25.
    cosine = torch.tensor([[0.6, 0.0, -0.8], [0.5, 0.1, 0.3], [0.0, -0.9, 0.1]])
    gt = torch.tensor([0, 2, 1])  # row 1 is background: no margin (the background rule)
    logits = aam_logits(cosine, gt, scale=2.0, margin=0.25)
    expected = torch.tensor(
        [
            [2 * 0.383424, 0.0, -1.6],
            [1.0, 0.2, 0.6],  # s·cos θ unchanged, background included
            [0.0, 2 * -0.979862, 0.2],
        ]
    )
    assert torch.allclose(logits, expected, atol=1e-5)

    def ce(row, target):
        return -row[target] + math.log(sum(math.exp(v) for v in row))

    hand = (
        ce([0.766848, 0.0, -1.6], 0) + ce([1.0, 0.2, 0.6], 2) + ce([0.0, -1.959724, 0.2], 1)
    ) / 3
    assert aam_loss(cosine, gt, 2.0, 0.25).item() == pytest.approx(hand, abs=1e-5)
    # m = 0 is the normalised softmax (Table 1 (d)): plain CE on s·cos θ.
    plain = torch.nn.functional.cross_entropy(2.0 * cosine, gt)
    assert aam_loss(cosine, gt, 2.0, 0.0).item() == pytest.approx(plain.item(), abs=1e-6)
    # The background rule: a background row's loss does not depend on m.
    bg = cosine[1:2], gt[1:2]
    assert aam_loss(*bg, 2.0, 0.25).item() == pytest.approx(aam_loss(*bg, 2.0, 0.0).item())
    assert aam_loss(cosine[:0], gt[:0], 2.0, 0.25).item() == 0.0


# Siamese inference branch (Eq. 2) on 2-d features, K = 2 (+ background):
# W_M rows: class 0 = (1, 0), class 1 = (0, 1), background = (-1, -1).
GLOBAL = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
IMAGE_A = torch.tensor([[2.0, 0.2], [0.1, 1.0]])  # a clear 0 and a clear 1
IMAGE_B = torch.tensor([[3.0, 1.0], [1.0, 0.9]])  # a clear 0; class 1 not confidently present


def _predictor(
    num_classes=2, dim=2, siamese=True, center_grad=False, scale=10.0, delta=0.5, **kwargs
):
    return DeepACCOutputLayers(
        ShapeSpec(channels=dim),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        num_classes=num_classes,
        margin_branch=True,
        aam_scale=scale,
        aam_margin=0.25,
        siamese=siamese,
        siamese_delta=delta,
        center_grad=center_grad,
        **kwargs,
    )


def _proposals(*counts, num_classes=2):
    out = []
    for n in counts:
        p = Instances((64, 64))
        p.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n).reshape(n, 4))
        p.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 12.0, 12.0]] * n).reshape(n, 4))
        p.gt_classes = torch.arange(n) % (num_classes + 1)
        out.append(p)
    return out


def _cosine(features):
    return (
        torch.nn.functional.normalize(features, dim=1)
        @ torch.nn.functional.normalize(GLOBAL, dim=1).t()
    )


def _local(features, delta, labels=None):
    cos = _cosine(features)
    return local_class_centers(features, cos, GLOBAL, delta, center_candidates(cos, labels))


def test_local_class_centers_and_delta_fallback():
    centers, is_local, best = _local(IMAGE_B, 0.5)
    # Test time, candidates by top-1 cosine: both rows of B are 0s (cos_0 .949 and .743 vs
    # cos_1 .316 and .669). Class 0: best cos .949 > δ -> (3, 1)/√10. Class 1: no candidate ->
    # W_M,1. Background: always the normalised global row.
    assert is_local.tolist() == [True, False] and best.tolist() == [0, 2]
    expected = torch.tensor(
        [[3 / math.sqrt(10), 1 / math.sqrt(10)], [0.0, 1.0], [-1 / math.sqrt(2), -1 / math.sqrt(2)]]
    )
    assert torch.allclose(centers, expected, atol=1e-6)
    # Training, candidates by label: row 1 is labelled 1 and its cos_1 .669 > δ: local.
    centers, is_local, _ = _local(IMAGE_B, 0.5, torch.tensor([0, 1]))
    assert is_local.tolist() == [True, True]
    assert torch.allclose(centers[1], IMAGE_B[1] / IMAGE_B[1].norm(), atol=1e-6)
    # ... but not above δ = .7; δ above every score: everything falls back.
    assert _local(IMAGE_B, 0.7, torch.tensor([0, 1]))[1].tolist() == [True, False]
    centers, is_local, _ = _local(IMAGE_B, 0.99)
    assert not is_local.any()
    assert torch.allclose(centers, torch.nn.functional.normalize(GLOBAL, dim=1))
    # No proposal at all: global centers, no error.
    centers, is_local, _ = _local(IMAGE_B[:0], 0.5)
    assert not is_local.any() and torch.allclose(
        centers, torch.nn.functional.normalize(GLOBAL, dim=1)
    )
    # Eq. 2 logits on the unnormalised feature, bias b = (0.5, 0, 0).
    logits = siamese_logits(IMAGE_B[1:], expected, torch.tensor([0.5, 0.0, 0.0]))
    hand = [(3 + 0.9) / math.sqrt(10) + 0.5, 0.9, -1.9 / math.sqrt(2)]
    assert torch.allclose(logits, torch.tensor([hand]), atol=1e-6)


def test_center_choice_has_no_ties():
    # Saturation: with s = 64 both rows have softmax probability 1.0 for class 0 in float32,
    # and an argmax over probabilities returns the first row. The cosine ranks them.
    features = torch.tensor([[1.0, 0.3], [1.0, 0.1]])
    cos = _cosine(features)
    assert torch.equal(torch.softmax(64 * cos, dim=1)[:, 0], torch.ones(2))
    _, is_local, best = local_class_centers(features, cos, GLOBAL, 0.5, center_candidates(cos))
    assert best[0].item() == 1 and is_local[0]


def test_local_class_centers_are_chosen_per_image():
    predictor = _predictor()
    with torch.no_grad():
        predictor.cls_score.weight.copy_(GLOBAL)
        predictor.inference_bias.zero_()
    features = torch.cat([IMAGE_A, IMAGE_B])  # one batch, two images of two proposals
    predictions = predictor(features)
    predictor.eval()  # test-time centers, by prediction
    logits, is_local, _ = predictor.final_logits(predictions, _proposals(2, 2))
    assert [x.tolist() for x in is_local] == [[True, True], [True, False]]
    # Image A's class-0 center is A's own best 0, (2, 0.2)/|.|, not B's (3, 1), though B's
    # (3, 1) is the more confident 0 of the batch.
    a0 = IMAGE_A[0] / IMAGE_A[0].norm()
    b0 = IMAGE_B[0] / IMAGE_B[0].norm()
    assert torch.allclose(logits[0][:, 0], IMAGE_A @ a0, atol=1e-6)
    assert torch.allclose(logits[1][:, 0], IMAGE_B @ b0, atol=1e-6)
    assert torch.allclose(logits[0][:, 1], IMAGE_A @ (IMAGE_A[1] / IMAGE_A[1].norm()), atol=1e-6)
    assert torch.allclose(logits[1][:, 1], IMAGE_B[:, 1], atol=1e-6)  # global W_M,1 = (0, 1)
    # Final scores are the softmax of these logits, per image.
    probs = predictor.predict_probs(predictions, _proposals(2, 2))
    assert torch.allclose(probs[1], torch.softmax(logits[1], dim=1))


def test_center_gradients_switch():
    grads = []
    for center_grad in (False, True):
        predictor = _predictor(center_grad=center_grad)
        with torch.no_grad():
            predictor.cls_score.weight.copy_(GLOBAL)
        features = torch.cat([IMAGE_A, IMAGE_B]).requires_grad_(True)
        predictor.eval()  # test-time centers: image B's class 1 uses the global W_M,1
        logits, _, _ = predictor.final_logits(predictor(features), _proposals(2, 2))
        torch.nn.functional.cross_entropy(torch.cat(logits), torch.tensor([0, 1, 0, 1])).backward()
        # L_CE always trains the global centers it uses, and the bias.
        assert predictor.cls_score.weight.grad.abs().sum() > 0
        assert predictor.inference_bias.grad.abs().sum() > 0
        grads.append(features.grad.clone())
    # With center_grad the chosen proposals' features also get L_CE's gradient as centers.
    assert not torch.allclose(grads[0], grads[1])


# Group Inner-Adjacency (Eq. 3) on K = 3 classes of one group, background = column 3.
GROUP_OF_THREE = torch.tensor([[False, True, True], [True, False, True], [True, True, False]])


def test_gia_zero_when_orthogonal():
    probs = torch.eye(4)[:3]  # proposal k is surely class k: all vectors orthogonal
    loss = group_inner_adjacency_loss([probs], [torch.tensor([0, 1, 2])], GROUP_OF_THREE)
    assert loss.item() == 0.0


def test_gia_hand_value_per_image():
    image1 = torch.tensor(
        [
            [0.6, 0.3, 0.1, 0.0],  # label 0
            [0.2, 0.7, 0.0, 0.1],  # label 1
            [0.1, 0.1, 0.7, 0.1],  # label 2
            [0.1, 0.1, 0.1, 0.7],
        ]
    )  # background: not a positive
    image2 = torch.tensor([[0.5, 0.5, 0.0, 0.0]])  # label 0; classes 1 and 2 absent
    labels = [torch.tensor([0, 1, 2, 3]), torch.tensor([0])]
    # Image 1: tops are rows 0, 1, 2. M0·M1 = 0.33, M0·M2 = 0.16, M1·M2 = 0.10, summed over
    #   the adjacent classes (Eq. 3): label 0: 0.49; label 1: 0.43; label 2: 0.26.
    # Image 2: no adjacent class present (and never image 1's rows): 0, but it is a positive.
    hand = (0.49 + 0.43 + 0.26 + 0.0) / 4
    loss = group_inner_adjacency_loss([image1, image2], labels, GROUP_OF_THREE)
    assert loss.item() == pytest.approx(hand, abs=1e-6)
    # Only image 1: 1.18 / 3.
    assert group_inner_adjacency_loss([image1], labels[:1], GROUP_OF_THREE).item() == pytest.approx(
        1.18 / 3, abs=1e-6
    )
    # No positive proposal: 0, still differentiable.
    bg = image1[3:].clone().requires_grad_(True)
    zero = group_inner_adjacency_loss([bg], [torch.tensor([3])], GROUP_OF_THREE)
    zero.backward()
    assert zero.item() == 0.0


def test_gia_absent_class_is_left_out():
    # Like 21, 21, 22, 22 in a 46,XX cell (no Y): each surely its own class. Class 2 is absent;
    # picking "its" top proposal by p_2 would pair a class-0 row with itself (dot 1).
    probs = torch.eye(4)[[0, 0, 1, 1]]
    assert (
        group_inner_adjacency_loss([probs], [torch.tensor([0, 0, 1, 1])], GROUP_OF_THREE).item()
        == 0.0
    )


def test_gia_top_proposal_is_chosen_among_its_label():
    probs = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.0],  # label 0, but the highest p_1 of the image
            [0.1, 0.8, 0.1, 0.0],  # label 1: the top of class 1
            [0.3, 0.6, 0.1, 0.0],
        ]
    )  # label 1
    # Class 2 absent. Row 0 (label 0) pairs with row 1: 0.01 + 0.72 = 0.73.
    # Rows 1 and 2 (label 1) pair with row 0, the only class-0 proposal: 0.73 and 0.57.
    loss = group_inner_adjacency_loss([probs], [torch.tensor([0, 1, 1])], GROUP_OF_THREE)
    assert loss.item() == pytest.approx((0.73 + 0.73 + 0.57) / 3, abs=1e-6)


def test_denver_groups_forbidden_set():
    F = group_adjacency_matrix()
    assert F.shape == (NUM_CLASSES, NUM_CLASSES) and (F == F.T).all() and not F.diagonal().any()
    # N(y, j) per class: A 2, B 1, C 7 (with X), D 2, E 2, F 1, G 2 (with Y).
    expected = [2, 2, 2, 1, 1] + [7] * 7 + [2] * 3 + [2] * 3 + [1, 1] + [2, 2] + [7, 2]
    assert F.sum(axis=1).tolist() == expected
    assert F.sum() == 84
    x, y = NUM_CLASSES - 2, NUM_CLASSES - 1
    assert F[x, 5] and F[x, 11] and not F[x, 12]  # X with 6..12
    assert F[y, 20] and F[y, 21] and not F[y, 19]  # Y with 21, 22
    assert F[0, 1] and not F[2, 3]  # 1~2; 3 (A) and 4 (B) are not adjacent


def test_total_loss_weights():
    cfg = get_cfg()
    deepacc_d2.add_deepacc_config(cfg)
    d = cfg.MODEL.DEEPACC
    assert (d.AAM_LOSS_WEIGHT, d.CE_LOSS_WEIGHT, d.GIA_LOSS_WEIGHT) == (0.1, 1.0, 0.1)
    assert (d.AAM.SCALE, d.AAM.MARGIN) == (64.0, 0.25)

    def losses(alpha, beta, gamma):
        torch.manual_seed(0)
        predictor = _predictor(
            num_classes=NUM_CLASSES,
            dim=8,
            gia=True,
            scale=4.0,
            aam_loss_weight=alpha,
            ce_loss_weight=beta,
            gia_loss_weight=gamma,
        )
        torch.manual_seed(1)
        features = torch.rand(10, 8)
        proposals = _proposals(6, 4, num_classes=NUM_CLASSES)
        with EventStorage():
            return predictor.losses(predictor(features), proposals)

    unit, paper = losses(1.0, 1.0, 1.0), losses(0.1, 1.0, 0.1)
    assert set(paper) == {"loss_box_reg", "loss_aam", "loss_cls", "loss_gia"}
    for key, weight in [
        ("loss_aam", 0.1),
        ("loss_cls", 1.0),
        ("loss_gia", 0.1),
        ("loss_box_reg", 1.0),
    ]:
        assert unit[key].item() > 0
        assert paper[key].item() == pytest.approx(weight * unit[key].item(), rel=1e-6)
    # loss_gia is Eq. 3 of the margin branch's probabilities.
    assert np.isfinite([v.item() for v in paper.values()]).all()
