"""
Synthetic datasets in detectron2's catalogs.

* On disk: a ``root/synth_<name>/`` folder written by ``deepacc synth`` is a COCO folder,
  registered as ``synth_<name>_<split>`` like any other (:func:`.datasets.register_coco_folders`).
* On the fly: ``register_synth_onthefly(name, ...)`` registers a dataset whose dicts only
  say how to draw image i (seed, index, batch id, config); ``MetaphaseDatasetMapper`` draws it
  in the data loader's workers, so long training needs nothing on disk. Without held-out batches,
  image i is the same image ``deepacc synth`` would write for that seed and index; with
  them, image i is drawn in the i-th of the remaining batches in turn.
"""

import logging
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..classes import CLASS_NAMES, class_index
from .synth.render import SynthConfig
from .synth.writer import box_edges, polygons_of_mask

logger = logging.getLogger(__name__)


def synth_onthefly_dicts(
    num_images: int, seed: int, config: SynthConfig, batch_ids: Sequence[int]
) -> List[Dict]:
    """
    Returns:
        list[dict]: per image: "image_id", "height", "width" and "synth" = (seed, index,
        batch_id, config), what :class:`.mapper.MetaphaseDatasetMapper` needs to draw it. No
        "annotations": they come with the drawing. Image i belongs to batch
        ``batch_ids[i % len(batch_ids)]``.
    """
    H, W = config.image_size
    return [
        {
            "image_id": i,
            "height": H,
            "width": W,
            "synth": (seed, i, int(batch_ids[i % len(batch_ids)]), config),
        }
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
    Register an on-the-fly synthetic dataset; train it with ``MetaphaseDatasetMapper``.

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
        thing_classes=list(CLASS_NAMES),
        evaluator_type="karyotype",
        synth_seed=seed,
        held_out_batches=sorted(held_out),
    )


def synth_annotations(image, use_instance_mask: bool = True) -> List[Dict]:
    """detectron2 annotation dicts (XYXY_ABS, pixel-edge boxes) of a SynthImage."""
    annotations = []
    for inst in image.instances:
        edges = box_edges(inst["bbox"])
        obj = {
            "bbox": edges,
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": class_index(inst["category"]),
            "iscrowd": 0,
        }
        if use_instance_mask:
            obj["segmentation"] = polygons_of_mask(inst["mask"], edges[0], edges[1])
        annotations.append(obj)
    return annotations
