"""The mirror view: boxes mirrored by hand, and both views of a picture joined in the image's
own pixels."""

import os

import pytest
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.modeling import mirror_view
from deepacc_d2.modeling.mirror_view import MirrorViewRCNN, mirrored_boxes, proposal_predictions

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 24


def test_mirrored_boxes_by_hand():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 1.0, 100.0, 2.0]])
    want = torch.tensor([[70.0, 20.0, 90.0, 40.0], [0.0, 1.0, 100.0, 2.0]])
    assert torch.equal(mirrored_boxes(boxes, 100), want)
    assert torch.equal(mirrored_boxes(mirrored_boxes(boxes, 100), 100), boxes)
    # one box per class (R, K x 4): each class's box mirrored on its own
    per_class = torch.tensor([[10.0, 20.0, 30.0, 40.0, 11.0, 21.0, 31.0, 41.0]])  # R x (2 x 4)
    want = torch.tensor([[70.0, 20.0, 90.0, 40.0, 69.0, 21.0, 89.0, 41.0]])
    assert torch.equal(mirrored_boxes(per_class, 100), want)
    assert mirrored_boxes(torch.zeros(0, 4 * K), 100).shape == (0, 4 * K)  # a view with no box


def _bright_rectangle_view(model, batched_inputs):
    """A stand-in for one pass of the model: the box of each input's bright pixels, in the
    pixel-edge convention of detectron2's boxes, as its one proposal and every class's box."""
    images = model.preprocess_image(batched_inputs)
    proposals, boxes, probs = [], [], []
    for x, size in zip(batched_inputs, images.image_sizes):
        ys, xs = torch.nonzero(x["image"][0] > 128, as_tuple=True)
        box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()[None]
        props = Instances(size)
        props.proposal_boxes = Boxes(box)
        props.objectness_logits = torch.ones(1)
        proposals.append(props)
        boxes.append(box.repeat(1, K))
        probs.append(torch.eye(K + 1)[:1])
    return images, proposals, boxes, probs


def test_both_views_give_the_image_its_own_box(monkeypatch):
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"),
        ["MODEL.META_ARCHITECTURE", "MirrorViewRCNN"],
    )
    model = build_model(cfg).eval()
    assert isinstance(model, MirrorViewRCNN)
    monkeypatch.setattr(mirror_view, "_one_view", _bright_rectangle_view)
    # 208 px wide: the batch is padded to 224, which the mirror must not use as the width
    image = torch.zeros(3, 96, 208)
    image[:, 10:30, 150:170] = 255
    _, proposals, boxes, probs = proposal_predictions(model, [{"image": image}])
    want = torch.tensor([150.0, 10.0, 170.0, 30.0])
    assert torch.equal(proposals[0].proposal_boxes.tensor, torch.stack([want, want]))
    assert torch.equal(boxes[0], want.repeat(2, K))
    assert probs[0].shape == (2, K + 1)
    # a plain GeneralizedRCNN has one view
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"))
    _, proposals, _, _ = proposal_predictions(build_model(cfg).eval(), [{"image": image}])
    assert len(proposals[0]) == 1


def test_the_mirror_view_is_the_one_view_model_on_the_mirror_image():
    """Both views of a batch of two images of different widths, each padded on its right to the
    same 224 px alone and in the batch: the first half is the one-view model's on the image,
    the second its outputs on the mirror image, mirrored back by the image's own width."""
    config = os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml")
    opts = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    torch.manual_seed(0)
    one_view = build_model(setup_cfg(config, opts)).eval()
    model = build_model(setup_cfg(config, opts + ["MODEL.META_ARCHITECTURE", "MirrorViewRCNN"]))
    model.load_state_dict(one_view.state_dict())
    model.eval()
    images = [torch.rand(3, 96, 208) * 255, torch.rand(3, 96, 200) * 255]
    with torch.no_grad():
        _, proposals, boxes, probs = proposal_predictions(model, [{"image": x} for x in images])
        for i, image in enumerate(images):
            width = image.shape[-1]
            own = proposal_predictions(one_view, [{"image": image}])
            other = proposal_predictions(one_view, [{"image": image.flip(-1)}])
            n = len(own[1][0])
            assert len(proposals[i]) == n + len(other[1][0]) and n > 0
            close = dict(atol=1e-3, rtol=0)  # pixels; batched, float sums differ slightly
            torch.testing.assert_close(
                proposals[i].proposal_boxes.tensor[:n], own[1][0].proposal_boxes.tensor, **close
            )
            torch.testing.assert_close(
                proposals[i].proposal_boxes.tensor[n:],
                mirrored_boxes(other[1][0].proposal_boxes.tensor, width),
                **close,
            )
            torch.testing.assert_close(boxes[i][n:], mirrored_boxes(other[2][0], width), **close)
            torch.testing.assert_close(
                probs[i], torch.cat([own[3][0], other[3][0]]), atol=1e-4, rtol=0
            )


def test_heads_without_proposal_predictions_are_refused():
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"),
        ["MODEL.META_ARCHITECTURE", "MirrorViewRCNN", "MODEL.ROI_HEADS.NAME", "StandardROIHeads"],
    )
    with pytest.raises(ValueError, match="DeepACCROIHeads"):
        build_model(cfg)
