"""
Register the datasets found under ``$DETECTRON2_DATASETS`` (default ``datasets/``).

* ``cil24_all``, ``cil24_train``, ``cil24_val``: the CIL Pascal-VOC folder ``<root>/cil24``
  (train/val by a stable hash of the image id, see :func:`split_of`).
* ``<folder>_<split>``: every COCO folder ``<root>/<folder>/annotations/<split>.json``
  (:func:`.datasets.register_coco_folders`): ``synth_<name>`` folders written by ``deepacc
  synth``, exports of reviewed cells.
* ``synth_onthefly_train``: 100,000 synthetic 1600x1200 metaphases drawn in the data loader
  (seed 0), nothing on disk; for long training (train_net.py's loader draws them). Batches
  18 and 19 are held out, as in the README's ``deepacc synth ... --held-out-batches 18 19``,
  so ``synth_default_test`` stays made of preparations it never saw.

Registration only records where the files are; nothing is read until a dataset is used.
"""

import os

from detectron2.data import DatasetCatalog

from .datasets import datasets_root, register_cil24_voc, register_coco_folders
from .synthetic import register_synth_onthefly


def register_all_cil24(root: str):
    for split in ("all", "train", "val"):
        name = f"cil24_{split}"
        if name not in DatasetCatalog.list():
            register_cil24_voc(name, os.path.join(root, "cil24"), split)


def register_all(root: str = None):
    root = root or datasets_root()
    register_all_cil24(root)
    register_coco_folders(root)
    if "synth_onthefly_train" not in DatasetCatalog.list():
        register_synth_onthefly(
            "synth_onthefly_train", num_images=100_000, seed=0, held_out_batches=(18, 19)
        )
