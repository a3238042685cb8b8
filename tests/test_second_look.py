"""The second look: crop geometry, the combination rule, which boxes it renames, its place in
the model's inference and in loading trained weights."""

import math
import os

import pytest
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.engine.predictor import load_model
from deepacc_d2.modeling.crop_classifier import CropClassifier, crop_boxes
from deepacc_d2.modeling.second_look import (
    SecondLook,
    combine_class_probs,
    name_margin,
    shared_crops,
)

from detectron2.modeling import build_model
from detectron2.structures import ImageList

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml")
K = 24


def _column_crop(box, size, margin, content=(20, 20)):
    """One box cropped from a 20 x 20 image whose pixels hold their column index, its content
    ``content`` = (height, width) of it (a padded batch's image is smaller than the tensor)."""
    image = torch.arange(20, dtype=torch.float32).repeat(20, 1)[None, None]
    boxes = torch.tensor([box], dtype=torch.float32)
    return crop_boxes(image, torch.tensor([content]), boxes, torch.tensor([0]), size, margin)[0, 0]


def test_a_known_box_gives_a_known_crop():
    # box 8 x 4 at (4, 4): square of side 8 centred at (8, 6) = [4, 2, 12, 10]; cell centres
    # x = 4.5 .. 11.5 read columns 4 .. 11; rows centred at y = 4.5 .. 7.5 lie in the box
    crop = _column_crop([4, 4, 12, 8], 8, 0.0)
    assert crop.shape == (8, 8)
    assert torch.allclose(crop[2:6], torch.arange(4.0, 12).repeat(4, 1), atol=1e-5)
    assert (crop[:2] == 255).all() and (crop[6:] == 255).all()


def test_the_margin_grows_the_box_and_the_image_border_is_white():
    # box [0, 0, 4, 4], margin 0.25 -> [-1, -1, 5, 5], side 6: cell centres -0.5 .. 4.5;
    # the cells left of / above the image are white, the others read columns 0 .. 4
    crop = _column_crop([0, 0, 4, 4], 6, 0.25)
    assert (crop[0] == 255).all() and (crop[:, 0] == 255).all()
    assert torch.allclose(crop[1:, 1:], torch.arange(5.0).repeat(5, 1), atol=1e-5)
    # the same image padded below row 3 (a batch's padding): rows from y = 3 on are white
    padded = _column_crop([0, 0, 4, 4], 6, 0.25, content=(3, 20))
    assert torch.equal(padded[:4], crop[:4]) and (padded[4:] == 255).all()


def test_combination_rule_by_hand():
    detector = torch.tensor([[0.2, 0.5, 0.1, 0.2]])  # K = 3, background 0.2
    crop = torch.tensor([[0.5, 0.25, 0.25]])
    # product: joint [0.1, 0.125, 0.025] / 0.25 = [0.4, 0.5, 0.1], x (1 - 0.2)
    assert torch.allclose(
        combine_class_probs(detector, crop, 1.0), torch.tensor([[0.32, 0.4, 0.08, 0.2]])
    )
    # w = 0: the crop classifier names, the detector says how sure it is of a chromosome
    assert torch.allclose(
        combine_class_probs(detector, crop, 0.0), torch.tensor([[0.4, 0.2, 0.2, 0.2]])
    )
    # w = 2: [0.04, 0.25, 0.01] x q = [0.02, 0.0625, 0.0025] / 0.085
    want = torch.tensor([0.02, 0.0625, 0.0025]) / 0.085 * 0.8
    assert torch.allclose(combine_class_probs(detector, crop, 2.0)[0, :3], want)


def test_the_crops_not_one_chromosome_sets_the_foreground_by_hand():
    detector = torch.tensor([[0.2, 0.5, 0.1, 0.2]])  # K = 3, foreground 0.8
    crop = torch.tensor([[0.25, 0.125, 0.125, 0.5]])  # "not one chromosome" 0.5
    # names: joint [0.05, 0.0625, 0.0125] / 0.125 = [0.4, 0.5, 0.1], as without the class
    names = torch.tensor([0.4, 0.5, 0.1])
    # v = 0: the detector's foreground; v = 1: 0.8 x (1 - 0.5); v = 0.5: 0.8 x sqrt(0.5)
    for v, fg in ((0.0, 0.8), (1.0, 0.4), (0.5, 0.8 * math.sqrt(0.5))):
        want = torch.cat([names * fg, torch.tensor([1 - fg])])[None]
        assert torch.allclose(combine_class_probs(detector, crop, 1.0, v), want)
    with pytest.raises(ValueError, match="not one chromosome"):
        combine_class_probs(detector, crop[:, :3], 1.0, 0.5)
    with pytest.raises(ValueError, match="NOT_CHROMOSOME"):
        build_model(_tiny_cfg("MODEL.SECOND_LOOK.FOREGROUND_WEIGHT", "0.5"))
    with pytest.raises(ValueError, match=r"\[0, 1\], not 1.5"):
        build_model(_tiny_cfg("MODEL.SECOND_LOOK.FOREGROUND_WEIGHT", "1.5"))
    with pytest.raises(ValueError, match=r"NMS_THRESH must lie in \[0, 1\], not -0.5"):
        build_model(_tiny_cfg("MODEL.SECOND_LOOK.NMS_THRESH", "-0.5"))
    with pytest.raises(ValueError, match=r"MIN_FOREGROUND must lie in \[0, 1\], not 1.2"):
        build_model(_tiny_cfg("MODEL.SECOND_LOOK.MIN_FOREGROUND", "1.2"))
    look = build_model(
        _tiny_cfg(
            "MODEL.SECOND_LOOK.NOT_CHROMOSOME", "True", "MODEL.SECOND_LOOK.FOREGROUND_WEIGHT", "0.5"
        )
    ).roi_heads.second_look
    assert look.classifier.net.linear.out_features == K + 1 and look.foreground_weight == 0.5


def _constant_classifier(probs):
    """A CropClassifier that answers ``probs`` (K,) whatever the crop."""
    classifier = CropClassifier(width=8)
    linear = classifier.net.linear
    torch.nn.init.zeros_(linear.weight)
    linear.bias.data.copy_(torch.log(probs))
    return classifier.eval()


def _look(classifier, **settings):
    """A second look with 16-px crops, the crop classifier's names alone (w = 0), candidates
    from foreground 0.05; ``settings`` replace these."""
    defaults = dict(
        pixel_mean=[100.0] * 3,
        pixel_std=[1.0] * 3,
        crop_size=16,
        crop_margin=0.08,
        detector_weight=0.0,
        score_thresh=0.05,
    )
    return SecondLook(classifier, **{**defaults, **settings})


def test_near_identical_boxes_share_one_crop_by_hand():
    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30], [0, 0, 10, 20]]
    )  # IoU(0, 1) = 100 / 110 = 0.91, IoU(0, 3) = 0.5
    scores, one_image = torch.tensor([0.9, 0.5, 0.7, 0.3]), torch.zeros(4, dtype=torch.int64)
    cropped, names_of = shared_crops(boxes, scores, one_image, 0.9)
    assert cropped.tolist() == [0, 2, 3]  # box 1 lies in box 0's group
    assert names_of.tolist() == [0, 0, 1, 2]
    cropped, names_of = shared_crops(boxes, scores, one_image, 0.95)
    assert cropped.tolist() == [0, 2, 1, 3] and names_of.tolist() == [0, 2, 1, 3]
    # on two images the same boxes share nothing
    cropped, names_of = shared_crops(boxes, scores, torch.tensor([0, 1, 0, 0]), 0.9)
    assert cropped[names_of].tolist() == [0, 1, 2, 3]  # each box its own crop


def test_a_shared_crop_names_both_boxes_with_one_classifier_pass():
    torch.manual_seed(0)
    images = ImageList(torch.rand(1, 3, 40, 40) * 50, [(40, 40)])
    probs = torch.zeros(3, K + 1)
    probs[:, 0], probs[:, K] = 0.8, 0.2
    boxes = torch.tensor([[2.0, 2, 20, 10], [2, 2, 20, 10.5], [22, 20, 38, 36]])
    named = {}
    for share in (0.0, 0.9):
        look = _look(CropClassifier(width=8).eval(), share_iou=share)
        look.classifier.load_state_dict(_reference_state())
        seen = []
        look.classifier.register_forward_hook(lambda m, i, o, seen=seen: seen.append(len(i[0])))
        (named[share],) = look(images, [boxes.repeat(1, K)], [probs])
        assert seen == [3 if share == 0 else 2]
    shared, own = named[0.9], named[0.0]
    assert torch.equal(shared[0], own[0]) and torch.equal(shared[2], own[2])
    assert torch.equal(shared[1], own[0]) and not torch.equal(own[1], own[0])


def _reference_state():
    torch.manual_seed(1)
    return CropClassifier(width=8).state_dict()


def test_only_boxes_that_can_become_detections_are_renamed():
    q = torch.full((K,), 0.1 / (K - 1))
    q[7] = 0.9
    look = _look(_constant_classifier(q))
    images = ImageList(torch.zeros(1, 3, 40, 40), [(40, 40)])
    probs = torch.zeros(3, K + 1)
    probs[0, 0], probs[0, K] = 0.9, 0.1  # a sure chromosome, named 1 by the detector
    probs[1, 1], probs[1, K] = 0.01, 0.99  # foreground 0.01 < 0.05: can never be kept
    probs[2, 2], probs[2, 3], probs[2, K] = 0.3, 0.2, 0.5
    boxes = torch.tensor([[2.0, 2, 20, 10]]).repeat(3, K)  # R x K*4
    (out,) = look(images, [boxes], [probs])
    assert torch.allclose(out[0], torch.cat([0.9 * q, torch.tensor([0.1])]), atol=1e-5)
    assert torch.equal(out[1], probs[1])
    assert torch.allclose(out[2], torch.cat([0.5 * q, torch.tensor([0.5])]), atol=1e-5)
    # foreground 0.5 < MIN_FOREGROUND 0.6: background, not cropped; below 0.05 as it was
    look = _look(_constant_classifier(q), min_foreground=0.6)
    seen = []
    look.classifier.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    (out,) = look(images, [boxes], [probs])
    assert seen == [1]
    assert torch.allclose(out[0], torch.cat([0.9 * q, torch.tensor([0.1])]), atol=1e-5)
    assert torch.equal(out[1], probs[1])
    assert torch.equal(out[2], torch.eye(K + 1)[K])


def _tiny_cfg(*opts):
    return setup_cfg(
        CPU_CONFIG,
        [
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "INPUT.MIN_SIZE_TEST",
            "160",
            "INPUT.MAX_SIZE_TEST",
            "224",
            "MODEL.SECOND_LOOK.ENABLED",
            "True",
            "MODEL.SECOND_LOOK.WIDTH",
            "8",
            *opts,
        ],
    )


def test_the_models_detections_carry_the_combined_names():
    torch.manual_seed(0)
    cfg = _tiny_cfg("MODEL.SECOND_LOOK.DETECTOR_WEIGHT", "0.0")
    model = build_model(cfg).eval()
    q = torch.full((K,), 0.05 / (K - 1))
    q[11] = 0.95
    model.roi_heads.second_look.classifier = _constant_classifier(q)
    with torch.no_grad():
        out = model.inference([{"image": torch.rand(3, 160, 208) * 255}], do_postprocess=False)
    instances = out[0]
    assert len(instances) > 0
    names = instances.class_scores / instances.class_scores.sum(dim=1, keepdim=True)
    assert torch.allclose(names, q.expand_as(names), atol=1e-4)
    assert (instances.pred_classes[instances.top1] == 11).all()


def test_trained_weights_load_with_the_classifiers_own_file(tmp_path):
    torch.manual_seed(0)
    detector = build_model(setup_cfg(CPU_CONFIG)).state_dict()
    torch.save({"model": detector}, tmp_path / "detector.pth")
    classifier = CropClassifier(width=8)
    torch.nn.init.normal_(classifier.net.linear.weight)
    for m in classifier.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics of a trained classifier
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            torch.nn.init.uniform_(m.weight, 0.5, 2)
    torch.save({"model": classifier.state_dict()}, tmp_path / "crops.pth")

    cfg = _tiny_cfg("MODEL.WEIGHTS", str(tmp_path / "detector.pth"))
    with pytest.raises(ValueError, match="missing.*second_look"):
        load_model(cfg)  # no classifier file: its weights would be random
    cfg = _tiny_cfg(
        "MODEL.WEIGHTS",
        str(tmp_path / "detector.pth"),
        "MODEL.SECOND_LOOK.WEIGHTS",
        str(tmp_path / "crops.pth"),
    )
    model = load_model(cfg)
    loaded = model.roi_heads.second_look.classifier
    assert not loaded.training
    crops = torch.rand(5, 1, 32, 32) * 255
    with torch.no_grad():  # the file's classifier, its BatchNorm folded for inference
        assert torch.allclose(loaded(crops), classifier.eval()(crops), atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    wide = _tiny_cfg(
        "MODEL.SECOND_LOOK.WEIGHTS", str(tmp_path / "crops.pth"), "MODEL.SECOND_LOOK.WIDTH", "16"
    )
    with pytest.raises(ValueError, match="crops.pth.*do not fit"):
        build_model(wide)


def test_training_leaves_the_classifier_frozen():
    model = build_model(_tiny_cfg()).train()
    look = model.roi_heads.second_look
    assert not look.classifier.training
    assert not any(p.requires_grad for p in look.parameters())
    assert math.isclose(look.score_thresh, 0.0)


def test_no_candidate_leaves_the_detector_alone():
    look = _look(_constant_classifier(torch.full((K,), 1.0 / K)))
    probs = torch.zeros(2, K + 1)
    probs[:, 0], probs[:, K] = 0.01, 0.99  # foreground 0.01 < 0.05 everywhere
    images = ImageList(torch.zeros(1, 3, 40, 40), [(40, 40)])
    (out,) = look(images, [torch.zeros(2, 4 * K)], [probs])
    assert torch.equal(out, probs)


def _survivor_look(nms_thresh, classifier=None, min_foreground=0.0):
    classifier = classifier or CropClassifier(width=8, not_chromosome=True).eval()
    return _look(
        classifier, foreground_weight=1.0, nms_thresh=nms_thresh, min_foreground=min_foreground
    )


def test_only_the_nms_survivors_by_the_combined_foreground_are_named_by_hand():
    # A, B, E lie on one chromosome (IoU A-B 0.9, A-E 0.8, B-E 0.89), D elsewhere; the crop
    # says A is not one chromosome: fg 0.9 x (1 - 0.9) = 0.09, B 0.8, D 0.7 x 0.5 = 0.35
    boxes = torch.tensor(
        [[0.0, 0, 10, 20], [1, 0, 10, 20], [40, 0, 50, 20], [2, 0, 10, 20]]
    )  # A, B, D, E
    detector_fg = torch.tensor([0.9, 0.8, 0.7, 0.6])
    q_not = {0: 0.9, 1: 0.0, 40: 0.5, 2: 0.0}
    probs = torch.zeros(4, K + 1)
    probs[:, 3], probs[:, K] = detector_fg, 1 - detector_fg
    look = _survivor_look(0.7)
    cropped = []

    def crop_names(gray, sizes, crop_boxes, which, fg):
        cropped.append(crop_boxes[:, 0].long().tolist())
        q = torch.zeros(len(crop_boxes), K + 1)
        q[:, 3] = 1.0
        for i, x0 in enumerate(crop_boxes[:, 0].long().tolist()):
            q[i, 3], q[i, K] = 1 - q_not[x0], q_not[x0]
        return q

    look._crop_names = crop_names
    images = ImageList(torch.zeros(1, 3, 60, 60), [(60, 60)])
    (out,) = look(images, [boxes], [probs])
    # under the detector's bounds A and D survive; named, A falls below B, which is named
    # next; E (0.6 < B's 0.8) is never cropped
    assert cropped == [[0, 40], [1]]
    assert torch.allclose(1 - out[:, K], torch.tensor([0.0, 0.8, 0.35, 0.0]))
    assert torch.allclose(out[1, 3], torch.tensor(0.8)) and out[0, K] == 1 and out[3, K] == 1


@pytest.mark.parametrize("min_foreground", [0.0, 0.3])
def test_naming_the_survivors_lazily_keeps_what_naming_every_candidate_keeps(min_foreground):
    torch.manual_seed(0)
    images = ImageList(torch.rand(2, 3, 80, 80) * 100, [(80, 80), (70, 80)])
    boxes, probs = [], []
    for _ in range(2):  # clusters of jittered boxes, as many proposals on few chromosomes
        centres = torch.rand(6, 1, 2) * 60
        corners = torch.cat([centres - 8, centres + 8], dim=2) + torch.randn(6, 8, 4) * 2
        boxes.append(corners.reshape(-1, 4))
        p = torch.rand(48, K + 1) ** 4
        probs.append(p / p.sum(dim=1, keepdim=True))
    classifier = CropClassifier(width=8, not_chromosome=True).eval()
    torch.nn.init.normal_(classifier.net.linear.weight, std=0.5)  # decisive "not one" calls
    passes = []
    classifier.register_forward_hook(lambda m, i, o: passes.append(len(i[0])))
    every = _survivor_look(0.0, classifier, min_foreground)(images, boxes, probs)
    candidates = passes.pop()
    lazy = _survivor_look(0.7, classifier, min_foreground)(images, boxes, probs)
    assert len(passes) >= 2 and sum(passes) < candidates
    for boxes_i, every_i, lazy_i in zip(boxes, every, lazy):
        fg = 1 - every_i[:, K]
        live = torch.nonzero(fg >= max(0.05, min_foreground)).squeeze(1)
        kept = live[torch.ops.torchvision.nms(boxes_i[live], fg[live], 0.7)]
        named = torch.nonzero((lazy_i[:, K] < 1) & (fg >= 0.05)).squeeze(1)
        assert sorted(named.tolist()) == sorted(kept.tolist()) and len(kept) > 0
        assert torch.allclose(lazy_i[kept], every_i[kept], atol=1e-6)


class OneImage(torch.nn.Module):
    """A second look on one 60 x 60 image, with tensors in and out: what tracing needs."""

    def __init__(self, look):
        super().__init__()
        self.look = look

    def forward(self, image, boxes, probs):
        return self.look(ImageList(image, [(60, 60)]), [boxes], [probs])[0]


@pytest.mark.parametrize("turns", [1, 4])
def test_a_traced_second_look_keeps_the_survivors_of_another_count_of_candidates(turns):
    def cell(n, seed):
        torch.manual_seed(seed)
        xy = torch.rand(n, 2) * 40
        boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2) * 10], dim=1)
        probs = torch.rand(n, K + 1) ** 4
        probs[: n // 2, K] = 50.0  # background: the first half are no candidates
        return boxes, probs / probs.sum(dim=1, keepdim=True)

    classifier = CropClassifier(width=8, not_chromosome=True).eval()
    torch.nn.init.normal_(classifier.net.linear.weight, std=0.5)
    look = _survivor_look(0.7, classifier)
    look.turns, look.turns_margin = turns, 0.5  # with 4: the doubtful survivors turned
    model = OneImage(look).eval()
    image = torch.rand(1, 3, 60, 60) * 100
    with torch.no_grad():
        traced = torch.jit.trace(model, (image, *cell(20, 0)), check_trace=False)
        boxes, probs = cell(31, 1)
        eager = model(image, boxes, probs)
        assert torch.allclose(traced(image, boxes, probs), eager, atol=1e-6)
        look.turns = 1
        assert torch.equal(model(image, boxes, probs), eager) == (turns == 1)


def test_name_margin_by_hand():
    probs = torch.zeros(2, K + 1)
    probs[0, [0, 1, 2, K]] = torch.tensor([0.5, 0.3, 0.1, 0.1])  # names 5/9, 3/9, 1/9
    probs[1, [4, K]] = torch.tensor([0.2, 0.8])  # one name: sure, however weak the foreground
    assert torch.allclose(name_margin(probs), torch.tensor([2 / 9, 1.0]))


def _turned_cell():
    torch.manual_seed(0)
    images = ImageList(torch.rand(1, 3, 60, 60) * 200, [(60, 60)])
    xy = torch.rand(12, 2) * 30
    boxes = torch.cat([xy, xy + 8 + torch.rand(12, 2) * 20], dim=1)
    probs = torch.zeros(12, K + 1)
    probs[:, 0], probs[:, K] = 0.9, 0.1
    classifier = CropClassifier(width=8).eval()
    torch.nn.init.normal_(classifier.net.linear.weight, std=0.3)  # names that differ by turn
    return images, boxes, probs, classifier


@torch.no_grad()
def _turned_views(images, boxes, classifier):
    """The crop classifier's probabilities for each box's 16-px crop of the 60 x 60 image (pixel
    mean 100, std 1, as :func:`_look`), turned by 0, 90, 180 and 270 degrees: four (R, C)."""
    gray = images.tensor.mean(dim=1, keepdim=True) + 100.0
    crops = crop_boxes(
        gray, torch.tensor([[60, 60]]), boxes, torch.zeros(len(boxes), dtype=torch.long), 16, 0.08
    )
    return [torch.softmax(classifier(torch.rot90(crops, k, (2, 3))), 1) for k in range(4)]


@pytest.mark.parametrize("turns", [2, 4])
def test_doubtful_names_are_the_mean_over_turned_crops_by_hand(turns):
    images, boxes, probs, classifier = _turned_cell()
    views = _turned_views(images, boxes, classifier)
    with torch.no_grad():
        (one,) = _look(classifier)(images, [boxes], [probs])
        passes = []
        classifier.register_forward_hook(lambda m, i, o: passes.append(len(i[0])))
        (every,) = _look(classifier, turns=turns, turns_margin=1.0)(images, [boxes], [probs])
        assert passes == [12] * turns
        threshold = name_margin(one).median().item()
        passes.clear()
        (some,) = _look(classifier, turns=turns, turns_margin=threshold)(images, [boxes], [probs])
    # crop names alone (w = 0): each row is 0.9 x the crop classifier's probabilities
    assert torch.allclose(one[:, :K], 0.9 * views[0], atol=1e-5)
    mean = sum(views[:turns]) / turns
    assert torch.allclose(every[:, :K], 0.9 * mean, atol=1e-5)
    doubtful = name_margin(one) < threshold
    assert 0 < doubtful.sum() < 12 and passes == [12] + [int(doubtful.sum())] * (turns - 1)
    assert torch.allclose(some[doubtful], every[doubtful], atol=1e-5)
    assert torch.equal(some[~doubtful], one[~doubtful])


def test_turned_crops_rename_the_doubtful_survivors_and_keep_their_foreground():
    """With a 'not one chromosome' classifier and survivors: the surviving boxes whose names
    are in doubt are named by the mean over four turns of their crop, every foreground (and so
    every survivor) stays that of one view, and only the doubtful survivors are turned."""
    torch.manual_seed(1)
    images = ImageList(torch.rand(1, 3, 60, 60) * 200, [(60, 60)])
    centres = torch.rand(5, 1, 2) * 40
    boxes = (torch.cat([centres, centres + 12], dim=2) + torch.randn(5, 4, 4)).reshape(-1, 4)
    probs = torch.zeros(20, K + 1)
    probs[:, 0] = torch.rand(20) * 0.8 + 0.1
    probs[:, K] = 1 - probs[:, 0]
    classifier = CropClassifier(width=8, not_chromosome=True).eval()
    torch.nn.init.normal_(classifier.net.linear.weight, std=0.3)
    views = _turned_views(images, boxes, classifier)
    with torch.no_grad():
        (one,) = _survivor_look(0.7, classifier)(images, [boxes], [probs])
        survivor = one[:, K] < 1
        threshold = name_margin(one[survivor]).median().item()
        passes = []
        classifier.register_forward_hook(lambda m, i, o: passes.append(len(i[0])))
        look = _survivor_look(0.7, classifier)
        look.turns, look.turns_margin = 4, threshold
        (turned,) = look(images, [boxes], [probs])
    doubtful = survivor & (name_margin(one) < threshold)
    assert 0 < doubtful.sum() < survivor.sum() < 20
    assert passes[-3:] == [int(doubtful.sum())] * 3
    assert torch.allclose(turned[:, K], one[:, K], atol=1e-6)  # the same foreground
    assert torch.equal(turned[~doubtful], one[~doubtful])
    # crop names alone (w = 0): names ∝ the mean over turns of the 24 chromosome classes
    mean = sum(views)[doubtful, :K]
    fg = (1 - one[doubtful, K])[:, None]
    assert torch.allclose(turned[doubtful, :K], fg * mean / mean.sum(1, keepdim=True), atol=1e-5)


def test_a_traced_second_look_turns_the_doubtful_crops_of_another_cell():
    images, boxes, probs, classifier = _turned_cell()

    other, other_probs = boxes[:7] + 3.0, probs[:7]
    with torch.no_grad():
        (one,) = _look(classifier)(images, [other], [other_probs])
        threshold = name_margin(one).median().item()  # some crops doubtful, some sure
        model = OneImage(_look(classifier, turns=4, turns_margin=threshold)).eval()
        traced = torch.jit.trace(model, (images.tensor, boxes, probs), check_trace=False)
        eager = model(images.tensor, other, other_probs)
        assert torch.allclose(traced(images.tensor, other, other_probs), eager, atol=1e-6)
    changed = (eager - one).abs().amax(dim=1) > 1e-6
    assert torch.equal(changed, name_margin(one) < threshold) and 0 < changed.sum() < 7
