"""
Dataset loaders and registration for karyotype detection datasets.

Two layouts are understood, both mapped onto the canonical classes of
:mod:`deepacc_d2.classes` (``category_id`` = canonical 0-based index):

* COCO json (``register_karyotype_coco``): categories are matched by *name* ("1".."22",
  "X", "Y", or CIL style "A1".."G22"), never by id, so any id numbering works.
* Pascal VOC as in the CIL "24 chromosomes" dataset (``register_cil24_voc``):
  ``JPEGImages/<id>.jpg`` + ``Annotations/<id>.xml``, object names ``A1``..``G22``, ``X``, ``Y``.

A file that cannot be read is reported (file name and the problem) and skipped: one bad
file never loses the rest of the dataset. Datasets live under ``$DETECTRON2_DATASETS``
(default ``datasets/``).
"""

import json
import logging
import os
import xml.etree.ElementTree as ET
import zlib
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..classes import CLASS_NAMES, class_index

logger = logging.getLogger(__name__)

__all__ = [
    "datasets_root",
    "load_cil24_voc",
    "load_karyotype_coco_json",
    "register_cil24_voc",
    "register_coco_folders",
    "register_karyotype_coco",
    "split_of",
    "DatasetFileError",
]


class DatasetFileError(ValueError):
    """A dataset file that cannot be used; the message names the file and the problem."""


def datasets_root() -> str:
    """Where datasets live: ``$DETECTRON2_DATASETS``, else ``datasets/`` (as detectron2)."""
    return os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def _report(bad: List[str], dataset_name: Optional[str]):
    if bad:
        logger.warning(
            f"{dataset_name or 'dataset'}: skipped {len(bad)} unusable file(s):\n  "
            + "\n  ".join(bad)
        )


#: A box may overshoot its image by this share of the image's side (labelling tools round
#: to the border); it is then clipped. Farther out, the file is not trusted and is skipped.
BOX_OVERSHOOT = 0.02


def checked_box(box: List[float], width: int, height: int, where: str) -> List[float]:
    """
    An XYXY box clipped to its image, or an error naming the file when it is empty or lies
    farther outside the image than ``BOX_OVERSHOOT`` (a wrong label, never kept silently).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise DatasetFileError(f"{where}: empty box {[x0, y0, x1, y1]}")
    slack_x, slack_y = BOX_OVERSHOOT * width, BOX_OVERSHOOT * height
    if x0 < -slack_x or y0 < -slack_y or x1 > width + slack_x or y1 > height + slack_y:
        raise DatasetFileError(
            f"{where}: box {[x0, y0, x1, y1]} lies outside the {width}x{height} image"
        )
    return [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))]


# ---------------------------------------------------------------- Pascal VOC (CIL)
def parse_voc_xml(xml_path: str, image_path: str) -> Dict:
    """
    Read one Pascal VOC annotation into a detectron2 dataset dict.

    VOC pixel indices are 1-based and inclusive; like detectron2's own VOC loader we
    subtract 1 from xmin/ymin so that a box covers [xmin-1, xmax) in 0-based pixels.

    Raises:
        DatasetFileError: naming ``xml_path`` and what is wrong with it.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        raise DatasetFileError(f"{xml_path}: not a readable XML file ({e})") from e
    try:
        width = int(float(root.findtext("size/width")))
        height = int(float(root.findtext("size/height")))
    except (TypeError, ValueError):
        raise DatasetFileError(f"{xml_path}: missing or invalid <size><width>/<height>") from None
    if width <= 0 or height <= 0:
        raise DatasetFileError(f"{xml_path}: image size {width}x{height} is not positive")
    annos = []
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        try:
            category = class_index(name)
        except ValueError:
            raise DatasetFileError(
                f"{xml_path}: object {k} has unknown class name {name!r}"
            ) from None
        try:
            x0, y0, x1, y1 = (
                float(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")
            )
        except (TypeError, ValueError):
            raise DatasetFileError(
                f"{xml_path}: object {k} ({name}) has no valid <bndbox>"
            ) from None
        box = checked_box(
            [x0 - 1.0, y0 - 1.0, x1, y1], width, height, f"{xml_path}: object {k} ({name})"
        )
        annos.append({"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": category})
    image_id = os.path.splitext(os.path.basename(xml_path))[0]
    return {
        "file_name": image_path,
        "image_id": image_id,
        "height": height,
        "width": width,
        "annotations": annos,
    }


def split_of(image_id: str, val_fraction: float = 0.2) -> str:
    """'train' or 'val' for an image id: a stable hash, so the split needs no list file
    and stays the same whatever other images the folder holds."""
    h = zlib.crc32(str(image_id).encode()) / 2**32
    return "val" if h < val_fraction else "train"


def load_cil24_voc(
    root: str, split: str = "all", dataset_name: Optional[str] = None, val_fraction: float = 0.2
) -> List[Dict]:
    """
    Load a CIL-style Pascal VOC folder.

    Args:
        root (str): folder with ``JPEGImages/`` and ``Annotations/``.
        split (str): "all", "train" or "val" (see :func:`split_of`); or the path of a text
            file with one image id per line.
        dataset_name (str): only for messages.

    Returns:
        list[dict]: detectron2 dataset dicts, sorted by image id.
    """
    ann_dir, img_dir = os.path.join(root, "Annotations"), os.path.join(root, "JPEGImages")
    if not os.path.isdir(ann_dir):
        raise FileNotFoundError(f"{ann_dir}: no Annotations folder (is {root} a VOC dataset?)")
    if split not in ("all", "train", "val"):
        with open(split) as f:
            ids = [line.strip() for line in f if line.strip()]
    else:
        ids = sorted(os.path.splitext(f)[0] for f in os.listdir(ann_dir) if f.endswith(".xml"))
        if split != "all":
            ids = [i for i in ids if split_of(i, val_fraction) == split]
    dicts, bad = [], []
    for image_id in ids:
        xml_path = os.path.join(ann_dir, image_id + ".xml")
        image_path = os.path.join(img_dir, image_id + ".jpg")
        try:
            if not os.path.isfile(image_path):
                raise DatasetFileError(f"{xml_path}: its image {image_path} does not exist")
            dicts.append(parse_voc_xml(xml_path, image_path))
        except DatasetFileError as e:
            bad.append(str(e))
    _report(bad, dataset_name)
    return dicts


def register_cil24_voc(name: str, root: str, split: str = "all"):
    DatasetCatalog.register(name, lambda: load_cil24_voc(root, split, dataset_name=name))
    MetadataCatalog.get(name).set(
        thing_classes=list(CLASS_NAMES), dirname=root, split=split, evaluator_type="karyotype"
    )


# ---------------------------------------------------------------- COCO json
def load_karyotype_coco_json(
    json_file: str, image_root: str, dataset_name: Optional[str] = None
) -> List[Dict]:
    """
    Load a COCO-format detection json whose category *names* are chromosome classes.

    Extra keys of an image entry (e.g. ``karyotype``, ``batch_id``) are kept in its dict.
    Segmentation polygons, when present, are kept as ``segmentation``.

    Returns:
        list[dict]: detectron2 dataset dicts with XYXY_ABS boxes and canonical category ids.
    """
    try:
        with open(json_file) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetFileError(f"{json_file}: cannot read COCO json ({e})") from e
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetFileError(f"{json_file}: no '{key}' list (not a COCO detection json)")
    id_map = {}
    for c in data["categories"]:
        try:
            id_map[c["id"]] = class_index(c["name"])
        except (KeyError, ValueError) as e:
            raise DatasetFileError(f"{json_file}: category {c}: {e}") from e
    per_image: Dict = {}
    bad, broken = [], set()  # an image with one unusable annotation is skipped whole
    for img in data["images"]:
        if img.get("id") in per_image:
            bad.append(f"{json_file}: image id {img.get('id')} appears twice")
            broken.add(img.get("id"))
        per_image[img.get("id")] = []
    images = {img.get("id"): img for img in data["images"]}
    for a in data["annotations"]:
        if a.get("image_id") not in per_image:
            bad.append(
                f"{json_file}: annotation {a.get('id')} refers to unknown image {a.get('image_id')}"
            )
            continue
        img = images[a["image_id"]]
        where = f"{json_file}: image {img.get('file_name')}, annotation {a.get('id')}"
        try:
            if a.get("category_id") not in id_map:
                raise DatasetFileError(f"{where}: unknown category {a.get('category_id')}")
            x, y, w, h = a["bbox"]
            box = checked_box(
                [x, y, x + w, y + h], img.get("width", 1e9), img.get("height", 1e9), where
            )
        except (DatasetFileError, KeyError, TypeError, ValueError) as e:
            bad.append(str(e) if isinstance(e, DatasetFileError) else f"{where}: {e!r}")
            broken.add(a["image_id"])
            continue
        obj = {
            "bbox": box,
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": id_map[a["category_id"]],
            "iscrowd": a.get("iscrowd", 0),
        }
        if a.get("segmentation"):
            obj["segmentation"] = a["segmentation"]
        per_image[a["image_id"]].append(obj)
    dicts = []
    for img in data["images"]:
        if img.get("id") in broken:
            continue
        d = {k: v for k, v in img.items() if k not in ("id", "file_name")}
        d.update(
            file_name=os.path.join(image_root, img["file_name"]),
            image_id=img["id"],
            annotations=per_image[img["id"]],
        )
        dicts.append(d)
    _report(bad, dataset_name)
    return dicts


def register_karyotype_coco(name: str, json_file: str, image_root: str, **metadata):
    """Like detectron2's ``register_coco_instances``, with categories mapped by name."""
    DatasetCatalog.register(
        name, lambda: load_karyotype_coco_json(json_file, image_root, dataset_name=name)
    )
    MetadataCatalog.get(name).set(
        thing_classes=list(CLASS_NAMES),
        json_file=json_file,
        image_root=image_root,
        evaluator_type="karyotype",
        **metadata,
    )


def register_coco_folders(root: str) -> List[str]:
    """
    Register every ``root/<folder>/annotations/<split>.json`` as ``<folder>_<split>``
    (:func:`register_karyotype_coco`, images under ``root/<folder>/images/<split>/`` unless
    the json names them by absolute path): what ``deepacc synth`` writes, and where an export
    of reviewed cells (``deepacc review CASE --export coco``) can go to be trained on by name.

    Args:
        root (str): the datasets root ($DETECTRON2_DATASETS).

    Returns:
        list[str]: the names registered (already registered names are skipped).
    """
    names = []
    if not os.path.isdir(root):
        return names
    for folder in sorted(os.listdir(root)):
        ann_dir = os.path.join(root, folder, "annotations")
        if not os.path.isdir(ann_dir):
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
