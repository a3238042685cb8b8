"""
Synthetic datasets in detectron2's catalogs.

* On disk: ``register_synth_datasets(root)`` registers every ``root/synth_<name>/`` folder
  written by ``deepacc synth`` as ``synth_<name>_<split>`` (one per annotations/<split>.json).
* On the fly: ``register_synth_onthefly(name, ...)`` registers a dataset whose dicts only
  say how to draw image i (seed, index, batch id, config); ``SynthDatasetMapper`` draws it
  in the data loader's workers, so long training needs nothing on disk. Without held-out batches,
  image i is the same image ``deepacc synth`` would write for that seed and index; with
  them, image i is drawn in the i-th of the remaining batches in turn.
"""
import copy
import logging
import os
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from ..classes import CLASS_NAMES, class_index
from ..data.augment import build_augmentation
from ..data.images import read_metaphase
from .render import SynthConfig
from .writer import box_edges, generate_image, polygons_of_mask

logger = logging.getLogger(__name__)


def register_synth_datasets(root: str) -> List[str]:
    """
    Args:
        root (str): the datasets root ($DETECTRON2_DATASETS).

    Returns:
        list[str]: the names registered (already registered names are skipped).
    """
    from ..data.datasets import register_karyotype_coco

    names = []
    if not os.path.isdir(root):
        return names
    for folder in sorted(os.listdir(root)):
        ann_dir = os.path.join(root, folder, "annotations")
        if not folder.startswith("synth_") or not os.path.isdir(ann_dir):
            continue
        for json_name in sorted(os.listdir(ann_dir)):
            if not json_name.endswith(".json"):
                continue
            split = json_name[: -len(".json")]
            name = f"{folder}_{split}"
            if name in DatasetCatalog.list():
                continue
            image_root = os.path.join(root, folder, "images", split)
            register_karyotype_coco(name, os.path.join(ann_dir, json_name), image_root)
            names.append(name)
    return names


def synth_onthefly_dicts(
    num_images: int, seed: int, config: SynthConfig, batch_ids: Sequence[int]
) -> List[Dict]:
    """
    Returns:
        list[dict]: per image: "image_id", "height", "width" and "synth" = (seed, index,
        batch_id, config), what SynthDatasetMapper needs to draw it. No "annotations": they
        come with the drawing. Image i belongs to batch ``batch_ids[i % len(batch_ids)]``.
    """
    H, W = config.image_size
    return [
        {"image_id": i, "height": H, "width": W,
         "synth": (seed, i, int(batch_ids[i % len(batch_ids)]), config)}
        for i in range(num_images)
    ]


def register_synth_onthefly(
    name: str,
    num_images: int,
    seed: int = 0,
    image_size: Tuple[int, int] = (1200, 1600),
    held_out_batches: Sequence[int] = (),
    config: Optional[SynthConfig] = None,
):
    """
    Register an on-the-fly synthetic dataset; train it with ``SynthDatasetMapper``.

    Args:
        name (str): dataset name, e.g. "synth_onthefly_train".
        num_images (int): length of the dataset (detectron2's training sampler repeats it).
        seed (int): dataset seed.
        image_size (tuple[int, int]): (H, W); overrides config.image_size.
        held_out_batches (list[int]): batches never drawn (keep them for a test set).
        config (SynthConfig): default SynthConfig().
    """
    config = replace(config or SynthConfig(), image_size=tuple(image_size))
    held_out = set(int(b) for b in held_out_batches)
    batch_ids = [b for b in range(config.num_batches) if b not in held_out]
    if not batch_ids:
        raise ValueError("every batch is held out")
    DatasetCatalog.register(name, lambda: synth_onthefly_dicts(num_images, seed, config, batch_ids))
    MetadataCatalog.get(name).set(
        thing_classes=list(CLASS_NAMES), evaluator_type="karyotype",
        synth_seed=seed, held_out_batches=sorted(held_out),
    )


def synth_annotations(image, use_instance_mask: bool = True) -> List[Dict]:
    """detectron2 annotation dicts (XYXY_ABS, pixel-edge boxes) of a SynthImage."""
    annotations = []
    for inst in image.instances:
        edges = box_edges(inst["bbox"])
        obj = {"bbox": edges, "bbox_mode": BoxMode.XYXY_ABS,
               "category_id": class_index(inst["category"]), "iscrowd": 0}
        if use_instance_mask:
            obj["segmentation"] = polygons_of_mask(inst["mask"], edges[0], edges[1])
        annotations.append(obj)
    return annotations


class SynthDatasetMapper(DatasetMapper):
    """
    DatasetMapper that draws an on-the-fly synthetic image instead of reading a file, and
    reads files with :func:`deepacc_d2.data.images.read_metaphase` (16-bit, float, RGBA, ...);
    the augmentations and annotation handling are DatasetMapper's. In training, a file that
    cannot be read is named in the log and another image is drawn in its place (detectron2's
    ``MapDataset`` retries on ``None``): one bad file never stops a long run. At test time it
    raises, naming the file.
    """

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        crop = ret["augmentations"][:1] if cfg.INPUT.CROP.ENABLED and is_train else []
        ret["augmentations"] = crop + build_augmentation(cfg, is_train)
        return ret

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        if "synth" in dataset_dict:
            seed, index, batch_id, config = dataset_dict.pop("synth")
            drawn = generate_image(seed, index, batch_id, config)
            dataset_dict.update(karyotype=drawn.karyotype, batch_id=batch_id)
            image = np.repeat(drawn.image[:, :, None], 3, axis=2)  # gray -> 3 equal channels
            dataset_dict["annotations"] = synth_annotations(drawn, self.use_instance_mask)
        else:
            try:
                image = read_metaphase(dataset_dict["file_name"])  # BGR
                if self.image_format == "RGB":
                    image = image[:, :, ::-1]
                utils.check_image_size(dataset_dict, image)
            except ValueError as e:  # unreadable, tiny, or not the size its labels say
                message = str(e)
                if dataset_dict["file_name"] not in message:
                    message = f"{dataset_dict['file_name']}: {message}"
                if not self.is_train:
                    raise ValueError(message) from e
                logger.error(f"{message}; skipped, training goes on with another image")
                return None

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
