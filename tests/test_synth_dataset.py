"""
Synthetic datasets in detectron2's catalogs: on-disk registration and on-the-fly drawing.
"""

import json

import cv2
import numpy as np

import deepacc_d2  # noqa: F401  (applies the compat patches before detectron2 loads)
from deepacc_d2.data.datasets import register_coco_folders
from deepacc_d2.data.mapper import MetaphaseDatasetMapper
from deepacc_d2.data.synth.render import SynthConfig
from deepacc_d2.data.synth.writer import write_dataset
from deepacc_d2.data.synthetic import register_synth_onthefly

from detectron2.data import DatasetCatalog, MetadataCatalog

CONFIG = SynthConfig(image_size=(200, 260), num_batches=3)


def test_register_folder_and_load(tmp_path):
    write_dataset(str(tmp_path / "synth_tiny"), 3, seed=2, config=CONFIG, held_out_batches=[2])
    (tmp_path / "no_annotations").mkdir()
    names = register_coco_folders(str(tmp_path))
    assert names == ["synth_tiny_test", "synth_tiny_train"]
    dicts = DatasetCatalog.get("synth_tiny_test")
    assert [d["image_id"] for d in dicts] == [2]  # image 2 is the only one of batch 2
    assert dicts[0]["batch_id"] == 2 and dicts[0]["karyotype"].count(",") >= 1
    assert MetadataCatalog.get("synth_tiny_train").thing_classes[-1] == "Y"
    assert register_coco_folders(str(tmp_path)) == []  # already registered: skipped


def test_onthefly_draws_what_the_writer_writes(tmp_path):
    register_synth_onthefly(
        "synth_test_onthefly", 4, seed=2, image_size=(200, 260), held_out_batches=[2], config=CONFIG
    )
    dicts = DatasetCatalog.get("synth_test_onthefly")
    assert len(dicts) == 4 and [d["synth"][2] for d in dicts] == [0, 1, 0, 1]
    mapper = MetaphaseDatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    out = mapper(dicts[1])
    assert tuple(out["image"].shape) == (3, 200, 260)
    # Same seed, index and batch as image 1 on disk: same pixels, same boxes.
    write_dataset(str(tmp_path / "disk"), 2, seed=2, config=CONFIG)
    disk = cv2.imread(str(tmp_path / "disk/images/train/000001.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(out["image"][0].numpy(), disk)
    coco = json.load(open(tmp_path / "disk/annotations/train.json"))
    boxes = sorted(
        [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
        for a in coco["annotations"]
        if a["image_id"] == 1
    )
    drawn = sorted(out["instances"].gt_boxes.tensor.round().int().tolist())
    assert drawn == boxes
