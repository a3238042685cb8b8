"""Dataset loaders: the real CIL VOC files, COCO json by category name, bad files."""

import json
import logging
import os

import pytest
from PIL import Image

import deepacc_d2  # noqa: F401
from deepacc_d2.classes import CLASS_NAMES, DENVER_GROUPS, class_index, denver_group_of
from deepacc_d2.data.datasets import (
    load_cil24_voc,
    load_karyotype_coco_json,
    parse_voc_xml,
    split_of,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_canonical_classes_and_groups():
    assert CLASS_NAMES[:3] == ["1", "2", "3"] and CLASS_NAMES[-2:] == ["X", "Y"]
    assert len(CLASS_NAMES) == 24
    assert sorted(sum(DENVER_GROUPS.values(), [])) == sorted(CLASS_NAMES)
    assert [class_index(n) for n in ("A1", "C10", "G22", "X", "Y", "21")] == [0, 9, 21, 22, 23, 20]
    assert denver_group_of(22) == "C" and denver_group_of(23) == "G" and denver_group_of(4) == "B"
    for bad in ("B1", "Z", "23", ""):
        with pytest.raises(ValueError):
            class_index(bad)


@pytest.mark.slow
def test_cil24_real_images(cil24):
    # Values read by hand from Annotations/103064.xml: 524x581, first object A1 with
    # xmin 237 ymin 274 xmax 303 ymax 393 (1-based VOC -> 236, 273 0-based).
    d = parse_voc_xml(
        os.path.join(cil24, "Annotations", "103064.xml"),
        os.path.join(cil24, "JPEGImages", "103064.jpg"),
    )
    assert (d["width"], d["height"]) == (524, 581)
    first = d["annotations"][0]
    assert first["bbox"] == [236.0, 273.0, 303.0, 393.0] and first["category_id"] == 0
    assert d["annotations"][1]["bbox"] == [90.0, 204.0, 200.0, 302.0]
    assert 43 <= len(d["annotations"]) <= 50

    dicts = load_cil24_voc(cil24, "all")
    assert len(dicts) == len(os.listdir(os.path.join(cil24, "Annotations")))
    by_id = {x["image_id"]: x for x in dicts}
    assert by_id["103064"]["annotations"] == d["annotations"]
    for x in dicts[:5]:  # the XML size is the JPEG's size; every class is canonical
        with Image.open(x["file_name"]) as im:
            assert im.size == (x["width"], x["height"])
        assert all(0 <= a["category_id"] < 24 for a in x["annotations"])
    # the split is a partition, ~20% val, stable under reordering
    train, val = load_cil24_voc(cil24, "train"), load_cil24_voc(cil24, "val")
    assert len(train) + len(val) == len(dicts)
    assert 0.15 < len(val) / len(dicts) < 0.25
    assert all(split_of(x["image_id"]) == "val" for x in val)


VOC_TEMPLATE = """<annotation><size><width>100</width><height>80</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = (
    "<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
    "<ymax>{y1}</ymax></bndbox></object>"
)


def _voc_folder(tmp_path, files):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    for image_id, xml in files.items():
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(xml)
        Image.new("RGB", (100, 80)).save(tmp_path / "JPEGImages" / f"{image_id}.jpg")
    return str(tmp_path)


def test_bad_voc_files_are_named_and_skipped(tmp_path, caplog):
    good = VOC_TEMPLATE.format(objects=OBJ.format(name="X", x0=11, y0=21, x1=30, y1=40))
    root = _voc_folder(
        tmp_path,
        {
            "a_good": good,
            "b_broken": "<annotation><size>",
            "c_unknown": VOC_TEMPLATE.format(objects=OBJ.format(name="H7", x0=1, y0=1, x1=5, y1=5)),
            "d_empty_box": VOC_TEMPLATE.format(
                objects=OBJ.format(name="A1", x0=9, y0=1, x1=5, y1=5)
            ),
            # far outside the 100 x 80 image: a wrong label, never loaded as is
            "e_outside": VOC_TEMPLATE.format(
                objects=OBJ.format(name="A1", x0=9, y0=1, x1=99999, y1=5)
            ),
            # 1 px past the border (labelling tools round): clipped
            "f_border": VOC_TEMPLATE.format(
                objects=OBJ.format(name="B4", x0=90, y0=70, x1=101, y1=81)
            ),
        },
    )
    with caplog.at_level(logging.WARNING):
        dicts = load_cil24_voc(root, "all", dataset_name="toy")
    assert [d["image_id"] for d in dicts] == ["a_good", "f_border"]
    assert dicts[1]["annotations"][0]["bbox"] == [89.0, 69.0, 100.0, 80.0]
    assert dicts[0]["annotations"][0]["bbox"] == [10.0, 20.0, 30.0, 40.0]
    assert dicts[0]["annotations"][0]["category_id"] == 22
    assert "skipped 4" in caplog.text
    assert "b_broken.xml: not a readable XML" in caplog.text
    assert "c_unknown.xml: object 0 has unknown class name 'H7'" in caplog.text
    assert "d_empty_box.xml: object 0 (A1): empty box" in caplog.text
    assert (
        "e_outside.xml: object 0 (A1): box [8.0, 0.0, 99999.0, 5.0] lies outside the "
        "100x80 image" in caplog.text
    )


def test_coco_json_maps_categories_by_name(tmp_path):
    data = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 50, "height": 40, "karyotype": "47,XY,+21"}
        ],
        # ids in an order unlike ours: mapping must go by name
        "categories": [{"id": 1, "name": "Y"}, {"id": 5, "name": "21"}, {"id": 9, "name": "C7"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [3, 4, 5, 6]},
            {"id": 3, "image_id": 7, "category_id": 9, "bbox": [0, 0, 2, 2]},
            {"id": 4, "image_id": 99, "category_id": 9, "bbox": [0, 0, 2, 2]},  # bad image
        ],
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    (d,) = load_karyotype_coco_json(str(path), "/imgs")
    assert d["file_name"] == "/imgs/a.png" and d["karyotype"] == "47,XY,+21"
    assert [(a["bbox"], a["category_id"]) for a in d["annotations"]] == [
        ([1, 2, 11, 22], 20),
        ([3, 4, 8, 10], 23),
        ([0, 0, 2, 2], 6),
    ]


def test_coco_bad_annotation_skips_its_image(tmp_path, caplog):
    # An unusable annotation would leave its chromosome labelled background: the image goes.
    data = {
        "images": [
            {"id": 1, "file_name": "good.png", "width": 50, "height": 40},
            {"id": 2, "file_name": "far.png", "width": 50, "height": 40},
            {"id": 3, "file_name": "dup.png", "width": 50, "height": 40},
            {"id": 3, "file_name": "dup2.png", "width": 50, "height": 40},
        ],
        "categories": [{"id": 1, "name": "1"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2, 10, 20]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [1, 2, 99999, 20]},
            {"id": 4, "image_id": 3, "category_id": 1, "bbox": [1, 2, 10, 20]},
        ],
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        dicts = load_karyotype_coco_json(str(path), "/imgs", dataset_name="toy")
    assert [d["file_name"] for d in dicts] == ["/imgs/good.png"]
    assert "image far.png, annotation 3: box" in caplog.text and "outside" in caplog.text
    assert "image id 3 appears twice" in caplog.text


def _voc_with_a_truncated_image(tmp_path, num_good):
    """good0..good<n-1> and trunc, whose JPEG is cut in half; one chromosome X each."""
    obj = OBJ.format(name="X", x0=11, y0=21, x1=30, y1=40)
    root = _voc_folder(
        tmp_path, {f"good{i}": VOC_TEMPLATE.format(objects=obj) for i in range(num_good)}
    )
    good = (tmp_path / "JPEGImages" / "good0.jpg").read_bytes()
    (tmp_path / "JPEGImages" / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "Annotations" / "trunc.xml").write_text(VOC_TEMPLATE.format(objects=obj))
    return root


def test_training_loader_skips_a_truncated_image_by_name(tmp_path, caplog):
    # An overnight run must not die in a loader worker on one bad file: the mapper names it
    # and detectron2's MapDataset draws another image instead.
    from deepacc_d2 import add_deepacc_config
    from deepacc_d2.data.mapper import MetaphaseDatasetMapper

    from detectron2.config import get_cfg
    from detectron2.data.common import MapDataset

    dicts = load_cil24_voc(_voc_with_a_truncated_image(tmp_path, 3), "all")
    assert [d["image_id"] for d in dicts] == ["good0", "good1", "good2", "trunc"]
    cfg = get_cfg()
    add_deepacc_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (80,), 100
    mapper = MetaphaseDatasetMapper(cfg, is_train=True)
    with caplog.at_level(logging.ERROR):
        assert mapper(dicts[3]) is None
    assert "trunc.jpg: cannot read image" in caplog.text
    mapped = MapDataset(dicts, mapper)[3]  # another image stands in
    assert mapped["image_id"].startswith("good") and len(mapped["instances"]) == 1
    # at test time the same file is an error that names it
    with pytest.raises(ValueError, match="trunc.jpg"):
        MetaphaseDatasetMapper(cfg, is_train=False)(dicts[3])


def test_evaluation_leaves_out_an_unreadable_image_by_name(tmp_path, caplog):
    from deepacc_d2 import add_deepacc_config
    from deepacc_d2.data.mapper import build_eval_loader

    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = _voc_with_a_truncated_image(tmp_path, 2)
    name = "toy_eval_with_a_bad_image"
    DatasetCatalog.register(name, lambda: load_cil24_voc(root, "all"))
    MetadataCatalog.get(name).set(thing_classes=list(CLASS_NAMES))
    cfg = get_cfg()
    add_deepacc_config(cfg)
    with caplog.at_level(logging.WARNING):
        ids = [x["image_id"] for batch in build_eval_loader(cfg, name) for x in batch]
    assert ids == ["good0", "good1"]
    assert "1 image(s) cannot be read" in caplog.text and "trunc.jpg" in caplog.text


def _augmentation_cfg(**input_keys):
    from deepacc_d2.config import add_deepacc_config

    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_deepacc_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (60,), 1000
    cfg.INPUT.RANDOM_FLIP = "none"
    for k, v in input_keys.items():
        setattr(cfg.INPUT, k, v)
    return cfg


def test_rotations_move_boxes_with_the_pixels():
    import numpy as np

    from deepacc_d2.data.augment import metaphase_augmentations

    from detectron2.data import transforms as T

    augs = metaphase_augmentations(_augmentation_cfg(ROTATE_90=True), is_train=True)
    test_augs = metaphase_augmentations(_augmentation_cfg(ROTATE_90=True), is_train=False)
    assert not any(isinstance(a, T.RandomRotation) for a in test_augs)  # training only
    image = np.zeros((60, 100, 3), np.uint8)  # resize keeps 60 x 100
    x0, y0, x1, y1 = 10, 5, 40, 25
    image[y0:y1, x0:x1] = 255
    shapes = set()
    np.random.seed(0)
    for _ in range(40):
        aug_input = T.AugInput(image.copy(), boxes=np.array([[x0, y0, x1, y1]], np.float64))
        transforms = T.AugmentationList(augs)(aug_input)
        out = aug_input.image[:, :, 0] > 127
        ys, xs = np.nonzero(out)
        drawn = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # pixel-edge box of the pixels
        assert np.allclose(aug_input.boxes[0], drawn, atol=1.0), (transforms, drawn)
        shapes.add(out.shape)
    assert shapes == {(60, 100), (100, 60)}  # both orientations were drawn


def test_intensity_jitter_is_bounded():
    from deepacc_d2.data.augment import metaphase_augmentations

    with pytest.raises(ValueError, match="INTENSITY_JITTER"):
        metaphase_augmentations(_augmentation_cfg(INTENSITY_JITTER=1.5), is_train=True)
    augs = metaphase_augmentations(_augmentation_cfg(INTENSITY_JITTER=0.2), is_train=True)
    names = [type(a).__name__ for a in augs]
    assert names[-2:] == ["RandomBrightness", "RandomContrast"]
    assert (augs[-1].intensity_min, augs[-1].intensity_max) == (0.8, 1.2)


def test_the_evaluation_loader_and_prediction_see_the_same_pixels(tmp_path):
    import numpy as np
    import torch

    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.data.images import read_metaphase
    from deepacc_d2.data.mapper import MetaphaseDatasetMapper
    from deepacc_d2.engine.predictor import model_input

    # 383 x 1360: the long side caps the resize (MAX_SIZE_TEST), off the round numbers
    rng = np.random.default_rng(0)
    path = str(tmp_path / "cell.png")
    Image.fromarray(rng.integers(0, 255, (383, 1360), dtype=np.uint8)).save(path)
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"))
    mapped = MetaphaseDatasetMapper(cfg, is_train=False)(
        {"file_name": path, "height": 383, "width": 1360, "image_id": 0}
    )
    predicted = model_input(read_metaphase(path), cfg.INPUT)
    assert mapped["image"].shape == predicted["image"].shape == (3, 180, 640)
    assert torch.equal(mapped["image"].float(), predicted["image"])
