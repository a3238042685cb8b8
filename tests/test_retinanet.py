"""KaryotypeRetinaNet: detectron2's RetinaNet detections, each with its anchor's class vector."""

import os

import pytest
import torch

import deepacc_d2  # noqa: F401  (compatibility fixes, registration)
from deepacc_d2.classes import NUM_CLASSES
from deepacc_d2.evaluation.selection import top1_mask

from detectron2.config import get_cfg
from detectron2.modeling import build_model

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@pytest.mark.slow
def test_retinanet_detections_carry_their_class_vector():
    cfg = get_cfg()
    deepacc_d2.add_deepacc_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, "cpu", "Base-DeepACC-CPU.yaml"))
    cfg.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6"]  # the CPU model's FPN levels
    cfg.MODEL.RETINANET.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0  # an untrained model's scores are ~0.01
    models = []
    for name in ("RetinaNet", "KaryotypeRetinaNet"):
        cfg.MODEL.META_ARCHITECTURE = name
        torch.manual_seed(0)
        models.append(build_model(cfg).eval())
    torch.manual_seed(1)
    image = {"image": torch.rand(3, 128, 160) * 255, "height": 128, "width": 160}
    with torch.no_grad():
        theirs, ours = (m([image])[0]["instances"] for m in models)
    assert len(ours) == len(theirs) > 0
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert torch.equal(ours.scores, theirs.scores)
    assert torch.equal(ours.pred_classes, theirs.pred_classes)
    # Each detection's score is its anchor's score for its class.
    assert ours.class_scores.shape == (len(ours), NUM_CLASSES)
    picked = ours.class_scores.gather(1, ours.pred_classes[:, None])[:, 0]
    assert torch.equal(picked, ours.scores)
    # The top-1 rule then is the R-CNN rows' one: the class that is the anchor's argmax.
    top1 = top1_mask(
        ours.pred_boxes.tensor.numpy(),
        ours.scores.numpy(),
        ours.pred_classes.numpy(),
        ours.class_scores.numpy(),
    )
    assert (top1 == (ours.scores == ours.class_scores.max(dim=1).values).numpy()).all()
    assert 0 < top1.sum() <= len(set(map(tuple, ours.pred_boxes.tensor.tolist())))
