"""A dataset packed small (deepacc_d2/data/pack.py): boxes scaled with their pixels, registered
by name, gray kept gray and colour kept colour, an unreadable image named and left out."""

import json
import logging
import os

import numpy as np
from PIL import Image

import deepacc_d2  # noqa: F401
from deepacc_d2.data.datasets import register_coco_folders
from deepacc_d2.data.images import read_metaphase
from deepacc_d2.data.pack import pack_dataset

from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode


def _image(path, size, colour=False):
    h, w = size
    rgb = np.full((h, w, 3), 230, np.uint8)
    rgb[40:90, 60:100] = 40  # a dark bar: the chromosome of the first box
    if colour:
        rgb[:, :, 0] = 200
    Image.fromarray(rgb).save(path)
    return {
        "file_name": str(path),
        "height": h,
        "width": w,
        "annotations": [
            {"bbox": [60.0, 40.0, 100.0, 90.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
            # XYWH boxes are converted: this one is [10, 20, 30, 60] in XYXY
            {"bbox": [10.0, 20.0, 20.0, 40.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 23},
        ],
    }


def test_pack_scales_boxes_with_their_pixels_and_registers(tmp_path, caplog):
    gray = _image(tmp_path / "a.png", (200, 300))  # short side 200 -> 100: scale 1/2
    small = _image(tmp_path / "b.png", (96, 128), colour=True)  # below 100: never enlarged
    (tmp_path / "broken.png").write_bytes(b"not an image")
    broken = dict(gray, file_name=str(tmp_path / "broken.png"))
    root = tmp_path / "root"
    with caplog.at_level(logging.WARNING):
        done = pack_dataset([gray, broken, small], str(root / "tiny"), "train", short_side=100)
    assert done["images"] == 2
    assert list(done["skipped"]) == [str(tmp_path / "broken.png")]
    assert "broken.png" in caplog.text

    with open(root / "tiny" / "annotations" / "train.json") as f:
        coco = json.load(f)
    assert [(i["height"], i["width"]) for i in coco["images"]] == [(100, 150), (96, 128)]
    assert [a["bbox"] for a in coco["annotations"][:2]] == [[30, 20, 20, 25], [5, 10, 10, 20]]

    assert "tiny_train" in register_coco_folders(str(root))
    dicts = DatasetCatalog.get("tiny_train")
    assert [os.path.basename(d["file_name"]) for d in dicts] == ["a.webp", "b.webp"]
    assert dicts[0]["annotations"][0]["bbox"] == [30.0, 20.0, 50.0, 45.0]
    assert [a["category_id"] for a in dicts[1]["annotations"]] == [0, 23]
    assert dicts[1]["annotations"][0]["bbox"] == [60.0, 40.0, 100.0, 90.0]

    a, b = (read_metaphase(d["file_name"]) for d in dicts)
    assert a.shape == (100, 150, 3) and b.shape == (96, 128, 3)
    assert np.abs(a.astype(int) - a[:, :, :1]).max() <= 2  # gray stays gray
    # the dark bar lies where its scaled box says, within lossy coding
    assert a[22:43, 32:48].mean() < 70 and a[55:, :].mean() > 200
    assert abs(int(b[60, 10, 2]) - 200) < 12  # red (BGR's last) kept in the colour image
    DatasetCatalog.remove("tiny_train")
