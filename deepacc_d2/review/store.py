"""
A case folder of ``deepacc karyotype`` under review. A person corrects a cell (changes a
chromosome's class or puts it back to the model's answer, deletes a false detection, adds a
missed chromosome, marks the cell reviewed); after every change the cell's record and picture
and the case summary are made again by the code that made them
(:func:`..karyotype.run.cell_outputs`, :func:`..karyotype.run.write_case`) and written at
once, each file replaced in one step, and the change is appended to ``review_log.jsonl``.
Each cell carries a version number that a change must name: a change made on an older version
(another page changed the cell since) is refused, never applied over the other.

A chromosome the model named keeps the model's answer (class, score, top 3) when a person
renames it: naming it back, or the "model" change, gives the model's call again, its score
and flags included. Any change to a cell marked reviewed takes the mark off: the person
reviews the cell as it now is.

Reviewed cells export as COCO json with the 24 classes, which
:func:`..data.datasets.register_karyotype_coco` loads for training.
"""

import contextlib
import fcntl
import json
import logging
import math
import os
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from ..classes import CLASS_NAMES, denver_group_of
from ..data.images import read_metaphase
from ..files import write_atomic
from ..inference import save_png
from ..karyotype.cell import ReviewRules, detections_from_record
from ..karyotype.karyogram import draw_karyogram
from ..karyotype.run import case_summary, cell_outputs, write_case

RECORD_SUFFIX = "_karyotype.json"
LOG_NAME = "review_log.jsonl"
LOCK_NAME = ".review.lock"
ACTIONS = ("class", "model", "delete", "add", "reviewed")
# what a detection carries of the model's answer (:func:`..karyotype.cell.cell_record`)
MODEL_FIELDS = ("class", "score", "top3", "margin")

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _locked(path: str):
    """An exclusive lock on ``path`` (created when missing), between processes."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class ReviewError(Exception):
    """A request the case cannot take; ``status`` is its HTTP status (4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def person_detection(box: List[float], name: str) -> Dict:
    """A chromosome as a person named it: certain of its class."""
    return {
        "bbox_xyxy": box,
        "class": name,
        "score": 1.0,
        "top3": [[name, 1.0]],
        "source": "person",
    }


def model_answer(detection: Dict) -> Optional[Dict]:
    """What the model said of a detection (its ``MODEL_FIELDS``), or None for a chromosome a
    person added."""
    if detection["source"] == "model":
        return {k: detection[k] for k in MODEL_FIELDS if k in detection}
    return detection.get("model")


def renamed(detection: Dict, name: str) -> Dict:
    """The detection as class ``name``: the model's own detection again when ``name`` is the
    model's class, else named by a person, the model's answer kept beside."""
    model = model_answer(detection)
    if model is not None and model["class"] == name:
        return {"bbox_xyxy": detection["bbox_xyxy"], **model, "source": "model"}
    named = person_detection(detection["bbox_xyxy"], name)
    if model is not None:
        named["model"] = model
    return named


class CaseReview:
    """
    The cells of one case folder and the changes a person makes to them. One change at a time,
    between threads and between processes (a lock file in the folder); each change starts from
    the files on disk, so two servers on one case see each other's changes.

    Args:
        case_dir (str): an output folder of ``deepacc karyotype`` (``case.json`` and the
            cells' ``<name>_karyotype.json``).
    """

    def __init__(self, case_dir: str):
        self.root = os.path.realpath(case_dir)
        case_path = os.path.join(self.root, "case.json")
        try:
            with open(case_path) as f:
                case = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{case_dir}: not an output folder of deepacc karyotype ({case_path}: {e})"
            ) from e
        if "rules" not in case:
            raise ValueError(
                f"{case_path}: written by a deepacc karyotype that did not record its rules: "
                "run deepacc karyotype on the case again"
            )
        self.rules = ReviewRules(**case["rules"])
        self.pictures = case.get("pictures", "all")
        self.failed = dict(case.get("failed", {}))
        self._failed_at_start = dict(self.failed)
        self.cells: Dict[str, Dict] = {}
        self._lock = threading.Lock()
        self._lock_file = os.path.join(self.root, LOCK_NAME)
        self.refresh()

    def refresh(self):
        """Read the cells again from disk (another server may have changed them)."""
        with self._lock, _locked(self._lock_file):
            self._load_cells()

    def _load_cells(self):
        """(Re)read every ``<name>_karyotype.json`` of the folder; one that cannot be read is
        named in ``failed`` and left out. The cells are swapped in whole: a reader without the
        lock sees the old cells or the new, never a half-read folder."""
        failed, cells = dict(self._failed_at_start), {}
        for name in sorted(os.listdir(self.root)):
            if not name.endswith(RECORD_SUFFIX):
                continue
            path = os.path.join(self.root, name)
            try:
                with open(path) as f:
                    record = json.load(f)
                record["image"]["path"], record["detections"]  # noqa: B018 (fields it needs)
            except (OSError, ValueError, KeyError, TypeError) as e:
                failed[path] = f"{path}: not a cell record ({type(e).__name__}: {e})"
                continue
            record.setdefault("version", 0)
            record.setdefault("reviewed", False)
            for d in record["detections"]:
                d.setdefault("source", "model")
            cells[name[: -len(RECORD_SUFFIX)]] = record
        self.cells, self.failed = cells, failed

    # ------------------------------------------------------------------ reading
    def by_file(self, cells: Optional[Dict[str, Dict]] = None) -> Dict[str, Dict]:
        """The cells' records (default: the case's) by image file, as the case summary takes
        them."""
        return {r["file"]: r for r in (self.cells if cells is None else cells).values()}

    def summary(self) -> Dict:
        return case_summary(self.by_file(), self.failed)

    def case_view(self) -> Dict:
        """The case summary and one line per cell, for the page's case list."""
        cells, failed = self.cells, self.failed  # one reading of the case throughout
        lines = [
            {
                "id": cid,
                "file": r["file"],
                "karyotype": r["karyotype"],
                "total": r["total"],
                "needs_review": r["needs_review"],
                "reviewed": r["reviewed"],
                "version": r["version"],
                "flags": [f["message"] for f in r["flags"]],
            }
            for cid, r in cells.items()
        ]
        return {"summary": case_summary(self.by_file(cells), failed), "cells": lines}

    def cell(self, cid: str) -> Dict:
        record = self.cells.get(cid)
        if record is None:
            raise ReviewError(404, f"no cell {cid!r} in this case")
        return record

    def image(self, cid: str) -> np.ndarray:
        """The cell's metaphase, RGB, as the model read it."""
        path = self.cell(cid)["image"]["path"]
        try:
            return np.ascontiguousarray(read_metaphase(path)[:, :, ::-1])
        except ValueError as e:
            raise ReviewError(404, f"cell {cid!r}: {e}") from e

    def karyogram(self, cid: str) -> np.ndarray:
        """The karyogram of the cell's current chromosomes, RGB."""
        detections = detections_from_record(self.cell(cid)["detections"])
        picture, _ = draw_karyogram(
            self.image(cid),
            detections["boxes"],
            detections["classes"],
            detections["scores"],
            self.rules.low_score,
        )
        return picture

    # ------------------------------------------------------------------ changing
    def edit(self, cid: str, change) -> Dict:
        """
        Apply one change to a cell and write everything it changes.

        Args:
            change (dict): "version" (the cell's version the change was made on), "action":
                "class" ("index", "class"), "model" ("index": back to the model's answer),
                "delete" ("index"), "add" ("bbox_xyxy" in image pixels, "class"), "reviewed"
                ("reviewed": bool). Any change but "reviewed" takes off the cell's reviewed mark.

        Returns:
            dict: the cell's new record.

        Raises:
            ReviewError: 400 for a malformed change, 404 for an unknown cell, 409 when the
            cell has changed since ``version``; nothing is written then.
        """
        if not isinstance(change, dict):
            raise ReviewError(400, "a change is a JSON object")
        action = change.get("action")
        if action not in ACTIONS:
            raise ReviewError(400, f"action {action!r}: one of {', '.join(ACTIONS)}")
        # one change at a time, also between two servers on one case: each change starts from
        # the files as they are on disk
        with self._lock, _locked(self._lock_file):
            self._load_cells()
            record = self.cell(cid)
            version = change.get("version")
            if not _is_int(version):
                raise ReviewError(400, "version: the cell's version number the change was made on")
            if version != record["version"]:
                raise ReviewError(
                    409,
                    f"cell {cid!r} is at version {record['version']}, the change was made on "
                    f"version {version}: it was changed elsewhere; reload it",
                )
            detections = [dict(d) for d in record["detections"]]
            if action == "class":
                i, name = _index(change, detections), _class_name(change)
                detail = {"index": i, "from": detections[i]["class"], "to": name}
                detections[i] = renamed(detections[i], name)
            elif action == "model":
                i = _index(change, detections)
                model = model_answer(detections[i])
                if model is None:
                    raise ReviewError(400, f"chromosome {i}: added by a person, no model's answer")
                detail = {"index": i, "from": detections[i]["class"], "to": model["class"]}
                detections[i] = renamed(detections[i], model["class"])
            elif action == "delete":
                i = _index(change, detections)
                detail = {"index": i, "deleted": detections.pop(i)}
            elif action == "add":
                box, name = _box(change, record["image"]), _class_name(change)
                detections.append(person_detection(box, name))
                detail = {"index": len(detections) - 1, "bbox_xyxy": box, "class": name}
            else:
                if not isinstance(change.get("reviewed"), bool):
                    raise ReviewError(400, "reviewed: true or false")
                detail = {}
            # a changed cell is no longer the cell the person reviewed
            reviewed = change["reviewed"] if action == "reviewed" else False
            if reviewed != record["reviewed"] or action == "reviewed":
                detail["reviewed"] = reviewed
            new = self._write(cid, record, detections, reviewed)
            self._log({"cell": cid, "version": new["version"], "action": action, **detail})
            return new

    def _write(self, cid: str, record: Dict, detections: List[Dict], reviewed: bool) -> Dict:
        pictures = self.pictures
        try:
            image = self.image(cid) if pictures != "none" else None
        except ReviewError as e:  # the image moved: the record still takes the correction
            logger.warning(f"{e}; the record is corrected, its picture is not redrawn")
            image, pictures = None, "none"
        made, picture = cell_outputs(
            image, detections_from_record(detections), self.rules, pictures
        )
        for d, before in zip(made["detections"], detections):
            d["source"] = before["source"]
            if "model" in before:
                d["model"] = before["model"]
        new = {
            "file": record["file"],
            "image": record["image"],
            **made,
            "version": record["version"] + 1,
            "reviewed": reviewed,
        }
        stem = os.path.join(self.root, cid)
        if picture is not None:
            save_png(picture, stem + "_karyogram.png")
        write_atomic(stem + RECORD_SUFFIX, json.dumps(new, indent=1))
        self.cells = {**self.cells, cid: new}  # swapped in whole, as in _load_cells
        write_case(self.root, self.by_file(), self.failed, self.rules, self.pictures)
        return new

    def _log(self, entry: Dict):
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}
        with open(os.path.join(self.root, LOG_NAME), "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # ------------------------------------------------------------------ export
    def coco(self) -> Dict:
        """
        The reviewed cells as a COCO detection json: images by absolute path, one annotation
        per chromosome, the 24 classes as categories (ids 1..24, names "1".."22", "X", "Y").

        Raises:
            ReviewError: 400 when no cell is marked reviewed.
        """
        reviewed = [r for r in self.cells.values() if r["reviewed"]]
        if not reviewed:
            raise ReviewError(400, "no cell is marked reviewed: nothing to export")
        images, annotations = [], []
        for image_id, r in enumerate(reviewed, start=1):
            image = r["image"]
            images.append(
                {
                    "id": image_id,
                    "file_name": image["path"],
                    "height": image["height"],
                    "width": image["width"],
                }
            )
            for d in r["detections"]:
                x1, y1, x2, y2 = d["bbox_xyxy"]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": CLASS_NAMES.index(d["class"]) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                    }
                )
        categories = [
            {"id": k + 1, "name": name, "supercategory": denver_group_of(k)}
            for k, name in enumerate(CLASS_NAMES)
        ]
        return {"images": images, "annotations": annotations, "categories": categories}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index(change: Dict, detections: List[Dict]) -> int:
    i = change.get("index")
    if not _is_int(i) or not 0 <= i < len(detections):
        raise ReviewError(400, f"index {i!r}: a chromosome of the cell, 0..{len(detections) - 1}")
    return i


def _class_name(change: Dict) -> str:
    name = change.get("class")
    if name not in CLASS_NAMES:
        raise ReviewError(400, f"class {name!r}: one of {', '.join(CLASS_NAMES)}")
    return name


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _box(change: Dict, image: Dict) -> List[float]:
    box = change.get("bbox_xyxy")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        or not all(_finite(v) for v in box)
    ):
        raise ReviewError(400, f"bbox_xyxy {box!r}: four numbers x1, y1, x2, y2 in pixels")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 - x1 >= 1 and y2 - y1 >= 1):
        raise ReviewError(400, f"bbox_xyxy {box}: x2 > x1 and y2 > y1 by a pixel at least")
    if x1 < 0 or y1 < 0 or x2 > image["width"] or y2 > image["height"]:
        raise ReviewError(
            400, f"bbox_xyxy {box}: outside the {image['width']}x{image['height']} image"
        )
    return [round(v, 2) for v in (x1, y1, x2, y2)]
