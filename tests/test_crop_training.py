"""Training the second look's crop classifier: patches, augmentation, learning, exact resume."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.classes import NUM_CLASSES
from deepacc_d2.data.crops import (
    FRAGMENT,
    image_patches,
    negative_boxes,
    patch_crops,
    patch_size,
    training_crops,
)
from deepacc_d2.engine.runs import RESUME, START, OtherSettingsError
from deepacc_d2.modeling.crop_classifier import CropClassifier
from deepacc_d2.studies.crop_training import (
    CropTraining,
    crop_accuracy,
    crop_settings,
    initial_weights,
    train_crop_classifier,
)

from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rod_image(path, rods):
    """A white image with dark rods: (x0, y0, x1, y1, striped) each; striped rods have light
    bands every 4 pixels along their length."""
    image = np.full((96, 128), 245, np.uint8)
    for x0, y0, x1, y1, striped in rods:
        image[y0:y1, x0:x1] = 40
        if striped:
            for x in range(x0 + 2, x1, 4):
                image[y0:y1, x : x + 2] = 200
    Image.fromarray(image).save(path)


def _toy_dataset(root, n_images, seed):
    """Each image: two rods of class 0 (solid) and two of class 1 (striped), placed at random."""
    rng = np.random.default_rng(seed)
    dicts = []
    for i in range(n_images):
        rods = []
        for j in range(4):
            x0, y0 = int(rng.integers(2, 90)), 4 + 22 * j
            rods.append((x0, y0, x0 + int(rng.integers(24, 36)), y0 + 8, j % 2))
        path = os.path.join(root, f"{seed}_{i}.png")
        _rod_image(path, rods)
        dicts.append(
            {
                "file_name": path,
                "height": 96,
                "width": 128,
                "annotations": [
                    {"bbox": list(r[:4]), "bbox_mode": BoxMode.XYXY_ABS, "category_id": r[4]}
                    for r in rods
                ],
            }
        )
    return dicts


def test_patches_hold_the_box_at_the_crops_scale(tmp_path):
    d = _toy_dataset(str(tmp_path), 1, 0)[0]
    size = patch_size(64, 0.08)
    patches, boxes, classes = image_patches(d, 96, 128, size)  # test scale 1
    assert patches.shape == (4, size, size) and patches.dtype == torch.uint8
    assert classes.tolist() == [0, 1, 0, 1]
    x0, y0, x1, y1 = d["annotations"][0]["bbox"]
    longest = max(x1 - x0, y1 - y0)
    scale = size / (longest * 1.6)  # the patch spans the longest side grown by 0.3 each side
    want = torch.tensor([size / 2 - (x1 - x0) * scale / 2, size / 2 - (y1 - y0) * scale / 2])
    assert torch.allclose(boxes[0, :2], want, atol=1e-3)
    # the true box cropped from its patch is the rod: dark inside, white at the corners
    crop = patch_crops(patches, boxes, 32, 0.08)[0, 0]
    assert crop[16, 8:24].mean() < 80 and crop[0, 0] > 200


def test_negative_boxes_are_no_chromosomes_one_box():
    # two chromosomes side by side (their union overlaps each at IoU 400 / 880 = 0.45) and one
    # apart
    truth = torch.tensor([[0.0, 0, 10, 40], [12, 0, 22, 40], [100, 100, 110, 130]])
    boxes = negative_boxes(truth, 60, torch.Generator().manual_seed(0))
    assert 0 < len(boxes) <= 60
    assert (box_iou(boxes, truth) < 0.5).all()
    kinds = set()
    for box in boxes:
        inside = (box[:2] >= truth[:, :2] - 1e-4).all(1) & (box[2:] <= truth[:, 2:] + 1e-4).all(1)
        unions = {
            (i, j): torch.cat(
                [torch.minimum(truth[i, :2], truth[j, :2]), truth[i, 2:].max(truth[j, 2:])]
            )
            for i in range(3)
            for j in range(3)
            if i != j
        }
        if inside.any():  # a fragment: full width, a share of the long side
            source = truth[inside.nonzero()[0, 0]]
            share = (box[3] - box[1]) / (source[3] - source[1])
            assert box[2] - box[0] == pytest.approx(source[2] - source[0])
            assert FRAGMENT[0] - 1e-4 <= share <= FRAGMENT[1] + 1e-4
            kinds.add("fragment")
        elif any(torch.allclose(box, u) for u in unions.values()):
            kinds.add("pair")
        else:  # beside a chromosome: a true box's size, moved
            size = box[2:] - box[:2]
            assert any(torch.allclose(size, t[2:] - t[:2]) for t in truth)
            kinds.add("beside")
    assert kinds == {"fragment", "pair", "beside"}
    assert torch.allclose(
        negative_boxes(truth, 60, torch.Generator().manual_seed(0)), boxes
    )  # seeded
    assert len(negative_boxes(truth[:0], 5, torch.Generator())) == 0


def test_negative_patches_are_labelled_not_one_chromosome(tmp_path):
    d = _toy_dataset(str(tmp_path), 1, 0)[0]
    size = patch_size(32, 0.08)
    _, _, classes = image_patches(d, 96, 128, size)
    patches, boxes, with_negatives = image_patches(d, 96, 128, size, negatives=1.0)
    assert with_negatives[:4].tolist() == classes.tolist()
    assert 4 < len(with_negatives) <= 8 and (with_negatives[4:] == NUM_CLASSES).all()
    assert torch.equal(patches, image_patches(d, 96, 128, size, negatives=1.0)[0])


def test_wrong_candidates_become_not_one_chromosome_patches(tmp_path):
    """An image twice the test size, its truth and wrong candidates in its own pixels: the
    candidate on a chromosome is dropped, the other kept at half its size."""
    d = _toy_dataset(str(tmp_path), 1, 0)[0]
    path = os.path.join(str(tmp_path), "big.png")
    Image.open(d["file_name"]).resize((256, 192), Image.NEAREST).save(path)
    annos = [dict(a, bbox=[2 * v for v in a["bbox"]]) for a in d["annotations"]]
    big = dict(d, file_name=path, height=192, width=256, annotations=annos)
    wrong = np.array([annos[0]["bbox"], [220, 10, 250, 30]], np.float32)
    size = patch_size(32, 0.08)
    _, boxes, classes = image_patches(big, 96, 128, size, wrong_boxes=wrong)
    assert classes.tolist() == [0, 1, 0, 1, NUM_CLASSES]
    # at the test scale 15 x 10 px; its patch spans 1.6 x its longest side
    scale = size / (15 * 1.6)
    assert boxes[4, 2] - boxes[4, 0] == pytest.approx(15 * scale, abs=1e-3)
    assert boxes[4, 3] - boxes[4, 1] == pytest.approx(10 * scale, abs=1e-3)


def test_the_not_one_chromosome_class_counts_apart_in_the_accuracy(tmp_path):
    d = _toy_dataset(str(tmp_path), 2, 0)
    parts = [image_patches(x, 96, 128, patch_size(32, 0.08), negatives=1.0) for x in d]
    data = {
        k: torch.cat([p[i] for p in parts]) for i, k in enumerate(("patches", "boxes", "classes"))
    }
    model = CropClassifier(width=8, not_chromosome=True)
    torch.nn.init.zeros_(model.net.linear.weight)
    model.net.linear.bias.data = torch.arange(NUM_CLASSES + 1.0)  # always "not one chromosome"
    metrics = crop_accuracy(model, data, 32, 0.08)
    assert metrics["count"] == 8 and metrics["negatives"] == len(data["classes"]) - 8
    assert metrics["top1"] == 0 and metrics["not_caught"] == 100 and metrics["not_false"] == 100


def test_a_classifier_without_the_class_starts_one_with_it(tmp_path):
    torch.manual_seed(0)
    old = CropClassifier(width=8).eval()
    torch.nn.init.normal_(old.net.linear.bias)
    torch.save({"model": old.state_dict()}, tmp_path / "old.pth")
    new = CropClassifier(width=8, not_chromosome=True)
    initial_weights(new, str(tmp_path / "old.pth"))
    crops = torch.rand(3, 1, 32, 32) * 255
    with torch.no_grad():
        logits, before = new.eval()(crops), old(crops)
    assert torch.allclose(logits[:, :NUM_CLASSES], before, atol=1e-5)
    assert torch.allclose(logits[:, NUM_CLASSES], torch.zeros(3))


def test_training_crops_vary_but_keep_the_rod(tmp_path):
    d = _toy_dataset(str(tmp_path), 1, 0)[0]
    patches, boxes, _ = image_patches(d, 96, 128, patch_size(32, 0.08))
    a = training_crops(patches, boxes, 32, 0.08, torch.Generator().manual_seed(0))
    b = training_crops(patches, boxes, 32, 0.08, torch.Generator().manual_seed(1))
    assert a.shape == (4, 1, 32, 32) and not torch.equal(a, b)
    assert torch.equal(
        a, training_crops(patches, boxes, 32, 0.08, torch.Generator().manual_seed(0))
    )
    # rods of 40 on 245 keep their contrast through the stain jitter: the darkest is at most
    # 255 - 215 x 0.75 + 15 = 108.75 (+ a little interpolation), the slide stays light
    assert (a.amin(dim=(1, 2, 3)) < 115).all() and (a.amax(dim=(1, 2, 3)) > 200).all()


@pytest.fixture
def toy_cfg(tmp_path):
    for split, n, seed in (("train", 24, 0), ("val", 6, 1)):
        name = f"toy_rods_{split}"
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        dicts = _toy_dataset(str(tmp_path), n, seed)
        DatasetCatalog.register(name, lambda dicts=dicts: dicts)
    return setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"),
        [
            "DATASETS.TRAIN",
            "('toy_rods_train',)",
            "DATASETS.TEST",
            "('toy_rods_val',)",
            "INPUT.MIN_SIZE_TEST",
            "96",
            "INPUT.MAX_SIZE_TEST",
            "128",
            "MODEL.SECOND_LOOK.CROP_SIZE",
            "32",
            "MODEL.SECOND_LOOK.WIDTH",
            "8",
        ],
    )


@pytest.mark.slow
def test_it_learns_solid_from_striped_rods(tmp_path, toy_cfg):
    summary = train_crop_classifier(
        toy_cfg,
        str(tmp_path / "run"),
        epochs=12,
        batch_size=16,
        base_lr=0.05,
        precision="fp32",
    )
    assert summary["train_chromosomes"] == 96 and summary["val_chromosomes"] == 24
    assert summary["val"]["val_top1"] >= 90  # chance: 50 % between the two classes given
    weights = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)["model"]
    assert "net.linear.weight" in weights


@pytest.mark.slow
def test_an_interrupted_run_resumes_as_if_it_had_not_stopped(tmp_path, toy_cfg):
    kwargs = dict(epochs=2, batch_size=16, precision="fp32", checkpoint_period=3)
    train_crop_classifier(toy_cfg, str(tmp_path / "whole"), **kwargs)

    from deepacc_d2.studies import crop_training

    class Stop(Exception):
        pass

    calls = {"n": 0}
    real = crop_training.training_crops

    def stop_after_seven(*args):
        calls["n"] += 1
        if calls["n"] > 7:
            raise Stop
        return real(*args)

    crop_training.training_crops = stop_after_seven
    try:
        with pytest.raises(Stop):
            train_crop_classifier(toy_cfg, str(tmp_path / "cut"), **kwargs)
    finally:
        crop_training.training_crops = real
    state = torch.load(tmp_path / "cut" / "last.pth", weights_only=False)["state"]
    assert state["step"] == 6  # the checkpoint of step 6; step 7 is done again
    train_crop_classifier(toy_cfg, str(tmp_path / "cut"), **kwargs)
    whole = torch.load(tmp_path / "whole" / "model_final.pth", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    with open(tmp_path / "whole" / "summary.json") as f:
        assert json.load(f)["steps"] == 12  # 2 epochs of 96 chromosomes in batches of 16


def _hand_made_run(toy_cfg, out, step, **changed):
    """A crop classifier's run in ``out`` as train_crop_classifier(toy_cfg, out, epochs=2,
    batch_size=16, precision="fp32") would make it: 96 chromosomes, 6 steps an epoch."""
    settings = crop_settings(toy_cfg, 12, 16, 0.1, 5e-4, 0.1, 0, "fp32")
    run = CropTraining(toy_cfg.MODEL.SECOND_LOOK, out, dict(settings, **changed), 6)
    run.state = {"step": step, "train_seconds": 1.5}
    os.makedirs(out, exist_ok=True)
    run.save()
    return run


def test_a_finished_run_is_reused_and_other_settings_refused(tmp_path, toy_cfg, monkeypatch):
    out = str(tmp_path / "run")
    _hand_made_run(toy_cfg, out, 12)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"steps": 12, "made": "by hand"}, f)
    monkeypatch.setattr(CropTraining, "train", lambda *a: pytest.fail("trained again"))
    kwargs = dict(epochs=2, batch_size=16, precision="fp32")
    assert train_crop_classifier(toy_cfg, out, **kwargs) == {"steps": 12, "made": "by hand"}
    with pytest.raises(OtherSettingsError, match=r"run was made with other settings \(base_lr: "):
        train_crop_classifier(toy_cfg, out, base_lr=0.05, **kwargs)
    with pytest.raises(OtherSettingsError, match="steps: 12 there, 24 here"):
        train_crop_classifier(toy_cfg, out, **dict(kwargs, epochs=4))


def test_an_unfinished_run_resumes_exactly(tmp_path, toy_cfg):
    from deepacc_d2.studies.crop_training import _read_patches

    train, _ = _read_patches(toy_cfg, str(tmp_path / "patches"), 0.0)
    out = str(tmp_path / "run")
    whole = _hand_made_run(toy_cfg, out, 0)
    assert whole.resume() == START  # a checkpoint of step 0: nothing done, nothing to load
    whole.step(train, bf16=False)
    whole.save()  # stopped here
    whole.step(train, bf16=False)
    settings = crop_settings(toy_cfg, 12, 16, 0.1, 5e-4, 0.1, 0, "fp32")
    cut = CropTraining(toy_cfg.MODEL.SECOND_LOOK, out, settings, 6)
    assert cut.resume() == RESUME and cut.state["step"] == 1
    cut.step(train, bf16=False)
    assert cut.state["step"] == whole.state["step"] == 2
    a, b = whole.model.state_dict(), cut.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a checkpoint written before settings were recorded: its steps are compared, no more
    checkpoint = torch.load(os.path.join(out, "last.pth"), weights_only=False)
    del checkpoint["settings"]
    torch.save(checkpoint, os.path.join(out, "last.pth"))
    assert CropTraining(toy_cfg.MODEL.SECOND_LOOK, out, settings, 6).resume() == RESUME
    longer = dict(settings, steps=24)
    with pytest.raises(OtherSettingsError, match="steps: 12 there, 24 here"):
        CropTraining(toy_cfg.MODEL.SECOND_LOOK, out, longer, 6).resume()


def test_a_run_knows_which_wrong_candidates_it_learned(tmp_path, toy_cfg, monkeypatch):
    """The wrong candidates are part of a run's settings: the same boxes reuse the finished
    run, other boxes are refused."""
    cfg = toy_cfg.clone()
    cfg.defrost()
    cfg.MODEL.SECOND_LOOK.NOT_CHROMOSOME = True
    name = DatasetCatalog.get("toy_rods_train")[0]["file_name"]
    wrong = {name: np.array([[100, 60, 124, 90]], np.float32)}
    out = str(tmp_path / "run")
    kwargs = dict(epochs=1, batch_size=16, precision="fp32", negatives=0.0)
    first = train_crop_classifier(cfg, out, wrong_boxes=wrong, **kwargs)
    # 96 chromosomes and the one wrong candidate (IoU < 0.5 with every rod): 97 patches
    assert first["train_chromosomes"] == 97
    monkeypatch.setattr(CropTraining, "train", lambda *a: pytest.fail("trained again"))
    same = {name: wrong[name].copy()}
    assert train_crop_classifier(cfg, out, wrong_boxes=same, **kwargs) == first
    moved = {name: wrong[name] + 1}
    with pytest.raises(OtherSettingsError, match="wrong_candidates"):
        train_crop_classifier(cfg, out, wrong_boxes=moved, **kwargs)
