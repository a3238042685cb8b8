"""
DeepACCROIHeads in a whole (small, CPU) GeneralizedRCNN: switches off == StandardROIHeads bit for
bit, the full DeepACC trains on a synthetic image, inference with no proposal and with a class
absent, and the same on CUDA when there is one.
"""

import os

import pytest
import torch

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2)
from deepacc_d2.classes import NUM_CLASSES

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# Dark rods on a light 128 x 128 "metaphase"; classes 1, 2, 6 and X.
BOXES = [(10, 10, 30, 60), (50, 20, 62, 70), (80, 80, 120, 95), (20, 90, 60, 110)]
CLASSES = [0, 1, 5, 22]


def small_cfg(name, **deepacc):
    cfg = get_cfg()
    deepacc_d2.add_deepacc_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, "cpu", name))
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 32
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # keep detections even from an untrained model
    for key, value in deepacc.items():
        node = cfg.MODEL.DEEPACC
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def metaphase(boxes=BOXES, classes=CLASSES, device="cpu"):
    image = torch.full((3, 128, 128), 220.0)
    for x0, y0, x1, y1 in boxes:
        image[:, y0:y1, x0:x1] = 40.0
    targets = Instances((128, 128))
    targets.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    targets.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return {"image": image.to(device), "instances": targets.to(device), "height": 128, "width": 128}


def check_detections(instances):
    assert instances.class_scores.shape == (len(instances), NUM_CLASSES)
    assert torch.isfinite(instances.class_scores).all() and torch.isfinite(instances.scores).all()
    assert (instances.class_scores.sum(dim=1) <= 1.0 + 1e-5).all()
    # Each detection's score is its proposal's probability for the detected class.
    picked = instances.class_scores.gather(1, instances.pred_classes[:, None])[:, 0]
    assert torch.equal(picked, instances.scores)


@pytest.mark.slow
def test_switches_off_is_standard_roi_heads_bit_for_bit():
    cfg_deepacc = small_cfg("a_faster_rcnn_cpu.yaml")
    cfg_standard = cfg_deepacc.clone()
    cfg_standard.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    models = []
    for cfg in (cfg_standard, cfg_deepacc):
        torch.manual_seed(0)
        models.append(build_model(cfg))
    standard, deepacc = models
    assert type(deepacc.roi_heads).__name__ == "DeepACCROIHeads"
    a, b = standard.state_dict(), deepacc.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)

    data = [metaphase(), metaphase(BOXES[:2], CLASSES[:2])]
    losses = []
    for model in models:
        model.train()
        torch.manual_seed(1)  # the proposal sampling draws random numbers
        with EventStorage():
            loss_dict = model(data)
        sum(loss_dict.values()).backward()
        losses.append(loss_dict)
    assert list(losses[0]) == list(losses[1])
    assert all(torch.equal(losses[0][k], losses[1][k]) for k in losses[0])
    for (name, p), q in zip(standard.named_parameters(), deepacc.parameters()):
        assert (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad), name

    outputs = []
    for model in models:
        model.eval()
        with torch.no_grad():
            outputs.append([x["instances"] for x in model(data)])
    for ours, theirs in zip(outputs[1], outputs[0]):
        check_detections(ours)
        ours = ours[ours.all_classes]  # detectron2's per-class set (the rest: top-1 first)
        assert len(ours) == len(theirs) > 0
        assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
        assert torch.equal(ours.scores, theirs.scores)
        assert torch.equal(ours.pred_classes, theirs.pred_classes)
        assert not theirs.has("class_scores")


def train(model, data, iterations, lr=0.01):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    history = []
    with EventStorage() as storage:
        for _ in range(iterations):
            loss_dict = model(data)
            assert all(torch.isfinite(v) for v in loss_dict.values()), loss_dict
            total = sum(loss_dict.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            history.append({k: v.item() for k, v in loss_dict.items()})
            storage.step()
    return loss_dict, history


@pytest.mark.slow
def test_deepacc_trains_and_infers_with_a_class_absent():
    torch.manual_seed(0)
    model = build_model(small_cfg("f_deepacc_cpu.yaml"))
    loss_dict, history = train(model, [metaphase()], iterations=25)
    assert set(loss_dict) == {
        "loss_cls",
        "loss_box_reg",
        "loss_aam",
        "loss_gia",
        "loss_rpn_cls",
        "loss_rpn_loc",
    }
    # The RPN and the margin branch learn the one image (L_CE jumps when a class switches to
    # its local center, so the total is no monotone curve).
    learned = [h["loss_rpn_cls"] + h["loss_aam"] for h in history]
    assert sum(learned[-5:]) < 0.8 * sum(learned[:5]), history

    model.eval()
    without_x = metaphase(BOXES[:3], CLASSES[:3])  # no X: its center falls back or is borrowed
    with torch.no_grad():
        out = model([without_x, metaphase()])
    for x in out:
        check_detections(x["instances"])
        assert len(x["instances"]) > 0


@pytest.mark.parametrize(
    "switches",
    [
        {"AAM__ENABLED": True},  # (c)
        {"AAM__ENABLED": False},  # (d) siamese, margin branch with m = 0
        {
            "SIAMESE__ENABLED": False,
            "SEPARATE_BRANCHES": False,
            "GIA__ENABLED": False,
        },  # (c) shared
        {"SIAMESE__CENTER_GRAD": True},
    ],
)
@pytest.mark.slow
def test_variants_train_a_few_iterations(switches):
    torch.manual_seed(0)
    cfg = small_cfg("f_deepacc_cpu.yaml", **switches)
    if switches.get("AAM__ENABLED") is True:  # (c): no siamese branch, no GIA
        cfg.MODEL.DEEPACC.SIAMESE.ENABLED = False
        cfg.MODEL.DEEPACC.GIA.ENABLED = False
    model = build_model(cfg)
    loss_dict, _ = train(model, [metaphase(), metaphase(BOXES[1:], CLASSES[1:])], iterations=3)
    assert ("loss_cls" in loss_dict) == cfg.MODEL.DEEPACC.SIAMESE.ENABLED
    model.eval()
    with torch.no_grad():
        check_detections(model([metaphase()])[0]["instances"])


@pytest.mark.parametrize("name", ["a_faster_rcnn_cpu.yaml", "f_deepacc_cpu.yaml"])
def test_inference_with_zero_proposals(name):
    torch.manual_seed(0)
    model = build_model(small_cfg(name)).eval()
    data = [metaphase(), metaphase()]
    images = model.preprocess_image(data)
    with torch.no_grad():
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
        empty = Instances(proposals[0].image_size)
        empty.proposal_boxes = Boxes(torch.zeros(0, 4))
        empty.objectness_logits = torch.zeros(0)
        # One image without any proposal, beside one with proposals, in one batch.
        results, _ = model.roi_heads(images, features, [empty, proposals[1]])
    assert len(results[0]) == 0 and results[0].class_scores.shape == (0, NUM_CLASSES)
    assert len(results[1]) > 0
    check_detections(results[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_deepacc_head_on_cuda():
    torch.manual_seed(0)
    cfg = small_cfg("f_deepacc_cpu.yaml")
    cfg.MODEL.DEVICE = "cuda"
    model = build_model(cfg)
    loss_dict, _ = train(model, [metaphase(device="cuda")], iterations=3)
    assert all(v.device.type == "cuda" for v in loss_dict.values())
    model.eval()
    with torch.no_grad():
        instances = model([metaphase(device="cuda")])[0]["instances"]
    assert instances.class_scores.device.type == "cuda"
    check_detections(instances)


@pytest.mark.slow
def test_deepacc_is_not_stuck_at_background():
    # The shipped (f) defaults learn one image of four rods: the final (inference-branch)
    # scores name at least three of them, score >= 0.5, after top-1 + class-agnostic NMS
    # (what Acc judges). A model stuck at "every proposal is background" names none.
    from deepacc_d2.evaluation.acc_aer import match_karyotype
    from deepacc_d2.evaluation.selection import select_detections

    torch.manual_seed(0)
    cfg = small_cfg("f_deepacc_cpu.yaml")
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
    model = build_model(cfg)
    train(model, [metaphase()], iterations=100, lr=0.02)
    model.eval()
    with torch.no_grad():
        kept = select_detections(model([metaphase()])[0]["instances"], 0.5, 0.7)
    judged = match_karyotype(
        torch.tensor(BOXES).numpy(),
        CLASSES,
        kept.pred_boxes.tensor.numpy(),
        kept.scores.numpy(),
        kept.pred_classes.numpy(),
        0.5,
    )
    assert judged["is_tp"].sum() >= 3, (kept.pred_classes.tolist(), kept.scores.tolist())


def test_top1_is_selected_before_nms():
    # Two proposals, K = 2. P0 scores (.45, .50) -> top-1 class 1; P1 (.40, .10) -> top-1
    # class 0. Their class-0 boxes overlap (IoU .82 > NMS .5). detectron2's per-class NMS
    # keeps P0's class-0 box (.45) and drops P1's (.40); a top-1 filter after it then drops
    # P0's class 0 too, and class 0 is lost. Top-1 first keeps P1's class 0.
    from deepacc_d2.modeling.detections import detection_sets

    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0, 50.0, 50.0, 60.0, 60.0],  # P0: class 0, 1
            [1.0, 0.0, 11.0, 10.0, 80.0, 80.0, 90.0, 90.0],
        ]
    )  # P1
    scores = torch.tensor([[0.45, 0.50, 0.05], [0.40, 0.10, 0.50]])
    result, proposal = detection_sets(boxes, scores, (100, 100), 0.05, 0.5, 100)
    found = {
        (p, c): (t, a)
        for p, c, t, a in zip(
            proposal.tolist(),
            result.pred_classes.tolist(),
            result.top1.tolist(),
            result.all_classes.tolist(),
        )
    }
    # (proposal, class): (in the top-1-first set, in detectron2's per-class set)
    assert found == {
        (0, 0): (False, True),
        (0, 1): (True, True),
        (1, 1): (False, True),
        (1, 0): (True, False),
    }
    assert torch.equal(result.class_scores, scores[proposal, :2])
