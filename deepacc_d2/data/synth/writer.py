"""
Writing a synthetic dataset to disk: PNG images and one COCO json per split.

Layout of ``write_dataset(out_dir, ...)``::

    out_dir/images/<split>/<index:06d>.png
    out_dir/annotations/<split>.json

Image ``i`` (0 <= i < num_images) belongs to batch ``i % num_batches`` and is drawn from
``np.random.default_rng([seed, i])`` alone, so any subset, in any order, on any number of
processes, gives the same bytes. Images of ``held_out_batches`` go to split "test" only;
the others go to "train", except a fixed ``val_fraction`` of them (all batches) to "val".
"""

import json
import os
from multiprocessing import get_context
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ...classes import class_index, coco_categories
from .render import SynthConfig, SynthImage, render_metaphase
from .style import batch_style

#: PNG settings fixed so files are byte-identical across runs.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_SPLIT_STREAM = 0x5B1


def generate_image(seed: int, index: int, batch_id: int, config: SynthConfig) -> SynthImage:
    """Draw image ``index`` of the dataset made with ``seed``, in the style of ``batch_id``."""
    rng = np.random.default_rng([seed, index])
    return render_metaphase(rng, batch_style(seed, batch_id), config)


def assign_splits(
    num_images: int,
    num_batches: int,
    seed: int,
    held_out_batches: Sequence[int] = (),
    val_fraction: float = 0.1,
) -> Dict[str, List[int]]:
    """
    Returns:
        dict[str, list[int]]: split name -> sorted image indices ("train", "val", and "test"
        when held_out_batches is not empty; empty splits are left out).
    """
    held_out = set(int(b) for b in held_out_batches)
    bad = [b for b in held_out if not 0 <= b < num_batches]
    if bad:
        raise ValueError(f"held-out batches {bad} are not in 0..{num_batches - 1}")
    test = [i for i in range(num_images) if i % num_batches in held_out]
    rest = [i for i in range(num_images) if i % num_batches not in held_out]
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(len(rest))
    val = set(rest[k] for k in order[: int(round(val_fraction * len(rest)))])
    splits = {
        "train": [i for i in rest if i not in val],
        "val": sorted(val),
        "test": test,
    }
    return {name: ids for name, ids in splits.items() if ids}


def polygons_of_mask(mask: np.ndarray, x0: int, y0: int) -> List[List[float]]:
    """COCO polygons (pixel-centre coordinates) of the outer contours of a cropped mask."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polygons = []
    for c in contours:
        c = c.reshape(-1, 2).astype(np.float64) + (x0 + 0.5, y0 + 0.5)
        if len(c) >= 3:
            polygons.append([round(float(v), 2) for v in c.reshape(-1)])
        else:  # a 1-2 pixel sliver: a unit square around it keeps it in the polygon
            (cx0, cy0), (cx1, cy1) = c.min(0) - 0.5, c.max(0) + 0.5
            polygons.append([cx0, cy0, cx1, cy0, cx1, cy1, cx0, cy1])
    return polygons


def box_edges(pixel_box) -> List[int]:
    """The inclusive pixel box (x0, y0, x1, y1) of a drawn chromosome as box *edges*
    [x0, y0, x1 + 1, y1 + 1] (XYXY, the convention of detectron2 and COCO)."""
    x0, y0, x1, y1 = pixel_box
    return [x0, y0, x1 + 1, y1 + 1]


def coco_records(image: SynthImage, image_id: int, file_name: str, batch_id: int, seed: int):
    """
    Returns:
        (dict, list[dict]): the COCO image entry and its annotation entries (ids filled by
        the caller). Boxes are XYWH with w = x1 - x0 + 1 (pixel edges).
    """
    H, W = image.image.shape[:2]
    entry = {
        "id": image_id,
        "file_name": file_name,
        "height": H,
        "width": W,
        "karyotype": image.karyotype,
        "batch_id": batch_id,
        "batch_style": batch_style(seed, batch_id).to_dict(),
        "seed": seed,
        "index": image_id,
    }
    annotations = []
    for inst in image.instances:
        x0, y0, x1, y1 = box_edges(inst["bbox"])
        annotations.append(
            {
                "image_id": image_id,
                "category_id": class_index(inst["category"]) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": int(inst["mask"].sum()),
                "segmentation": polygons_of_mask(inst["mask"], x0, y0),
                "iscrowd": 0,
            }
        )
    return entry, annotations


def _render_and_save(job):
    seed, index, batch_id, config, path = job
    image = generate_image(seed, index, batch_id, config)
    ok, png = cv2.imencode(".png", image.image, PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"{path}: OpenCV could not encode image {index} as PNG")
    with open(path, "wb") as f:
        f.write(png.tobytes())
    return coco_records(image, index, os.path.basename(path), batch_id, seed)


def write_dataset(
    out_dir: str,
    num_images: int,
    seed: int = 0,
    config: Optional[SynthConfig] = None,
    held_out_batches: Sequence[int] = (),
    val_fraction: float = 0.1,
    num_workers: int = 1,
    progress: bool = False,
) -> Dict[str, str]:
    """
    Args:
        out_dir (str): output folder (see the module docstring for its layout).
        num_images (int): images over all splits.
        seed (int): dataset seed.
        config (SynthConfig): default SynthConfig().
        held_out_batches (list[int]): batch ids whose images go only to split "test".
        val_fraction (float): share of the other images that go to "val".
        num_workers (int): processes; 0 = all cores.
        progress (bool): show a tqdm bar.

    Returns:
        dict[str, str]: split -> path of its COCO json.
    """
    config = config or SynthConfig()
    splits = assign_splits(num_images, config.num_batches, seed, held_out_batches, val_fraction)
    jobs = []
    for split, ids in splits.items():
        os.makedirs(os.path.join(out_dir, "images", split), exist_ok=True)
        for i in ids:
            path = os.path.join(out_dir, "images", split, f"{i:06d}.png")
            jobs.append((seed, i, i % config.num_batches, config, path))
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)

    num_workers = num_workers or os.cpu_count() or 1
    if num_workers > 1:
        pool = get_context("spawn").Pool(num_workers)
        results = pool.imap(_render_and_save, jobs, chunksize=2)
    else:
        pool, results = None, map(_render_and_save, jobs)
    if progress:
        results = tqdm(results, total=len(jobs), desc="synth", unit="img")
    records = dict(zip([job[1] for job in jobs], results))
    if pool is not None:
        pool.close()
        pool.join()

    info = {
        "description": "DeepACC-D2 synthetic G-banded metaphases",
        "seed": seed,
        "num_images": num_images,
        "held_out_batches": sorted(int(b) for b in held_out_batches),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()},
    }
    categories = coco_categories()
    json_files = {}
    for split, ids in splits.items():
        images, annotations = [], []
        for i in ids:
            entry, anns = records[i]
            images.append(entry)
            for ann in anns:
                annotations.append(dict(ann, id=len(annotations) + 1))
        coco = {
            "info": dict(info, split=split),
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        json_files[split] = os.path.join(out_dir, "annotations", f"{split}.json")
        with open(json_files[split], "w") as f:
            json.dump(coco, f, separators=(",", ":"))
    return json_files
