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

Every change has an inverse change (the page's undo sends it, :func:`inverse`): a rename
is renamed back, a swap swapped again, a moved box moved back, a split merged, a deleted
chromosome restored where it was (only one the log says was deleted from that cell).

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
ACTIONS = (
    "class",
    "model",
    "swap",
    "delete",
    "restore",
    "add",
    "box",
    "split",
    "merge",
    "reviewed",
)
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
        self._karyograms: Dict[str, tuple] = {}  # cell -> (version, picture, layout)
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
        return {
            "summary": case_summary(self.by_file(cells), failed),
            "cells": lines,
            "low_score": self.rules.low_score,  # the page's "uncertain" chromosomes
        }

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
        return self._karyogram(cid)[0]

    def karyogram_layout(self, cid: str) -> Dict:
        """Where the karyogram of the cell's current chromosomes puts them, in its pixels:
        "version" (the cell's), "width", "height", "slots" (class name -> [x0, y0, x1, y1]),
        "chromosomes" (per detection, in the record's order, [x0, y0, x1, y1])."""
        return self._karyogram(cid)[1]

    def _karyogram(self, cid: str):
        record = self.cell(cid)
        drawn = self._karyograms.get(cid)
        if drawn is None or drawn[0] != record["version"]:
            detections = detections_from_record(record["detections"])
            picture, slots, places = draw_karyogram(
                self.image(cid),
                detections["boxes"],
                detections["classes"],
                detections["scores"],
                self.rules.low_score,
            )
            layout = {
                "version": record["version"],
                "width": picture.shape[1],
                "height": picture.shape[0],
                "slots": {name: list(slot) for name, slot in slots.items()},
                "chromosomes": [list(place) for place in places],
            }
            drawn = (record["version"], picture, layout)
            self._karyograms[cid] = drawn  # the picture and its layout drawn once per version
        return drawn[1:]

    # ------------------------------------------------------------------ changing
    def edit(self, cid: str, change) -> Dict:
        """
        Apply one change to a cell and write everything it changes.

        Args:
            change (dict): "version" (the cell's version the change was made on), "action":
                "class" ("index", "class"), "model" ("index": back to the model's answer),
                "swap" ("index", "other": the two exchange classes), "delete" ("index"),
                "restore" ("index", "detection": a chromosome deleted from this cell, put
                back at "index"), "add" ("bbox_xyxy" in image pixels, "class"), "box"
                ("index", "bbox_xyxy": moved or resized, its class kept), "split" ("index",
                "boxes": two boxes; the chromosome takes the first, a person's chromosome of
                its class the second, at the end), "merge" ("index", "other", optional
                "bbox_xyxy", default the two boxes' union: "index" takes it, "other" goes),
                "reviewed" ("reviewed": bool). Any change but "reviewed" takes off the cell's
                reviewed mark.

        Returns:
            dict: the cell's new record, and under "inverse" the change that undoes this one
            (:func:`inverse`; its "version" left to the sender).

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
            elif action == "swap":
                i, j = _index(change, detections), _index(change, detections, "other")
                if i == j:
                    raise ReviewError(400, f"swap: index and other are both {i}")
                a, b = detections[i]["class"], detections[j]["class"]
                detail = {"index": i, "other": j, "from": a, "to": b}
                detections[i], detections[j] = renamed(detections[i], b), renamed(detections[j], a)
            elif action == "delete":
                i = _index(change, detections)
                detail = {"index": i, "deleted": detections.pop(i)}
            elif action == "restore":
                i = change.get("index")
                if not _is_int(i) or not 0 <= i <= len(detections):
                    raise ReviewError(
                        400, f"index {i!r}: where to put it back, 0..{len(detections)}"
                    )
                restored = change.get("detection")
                if not self._was_deleted(cid, restored):
                    raise ReviewError(400, "detection: not a chromosome deleted from this cell")
                detections.insert(i, restored)
                detail = {"index": i, "restored": restored}
            elif action == "add":
                box, name = _box(change, record["image"]), _class_name(change)
                detections.append(person_detection(box, name))
                detail = {"index": len(detections) - 1, "bbox_xyxy": box, "class": name}
            elif action == "box":
                i, box = _index(change, detections), _box(change, record["image"])
                detail = {"index": i, "from": detections[i]["bbox_xyxy"], "to": box}
                detections[i] = {**detections[i], "bbox_xyxy": box}
            elif action == "split":
                i, boxes = _index(change, detections), change.get("boxes")
                if not isinstance(boxes, list) or len(boxes) != 2:
                    raise ReviewError(400, "boxes: the two parts' boxes")
                first, second = (_box({"bbox_xyxy": b}, record["image"]) for b in boxes)
                name = detections[i]["class"]
                detail = {"index": i, "from": detections[i]["bbox_xyxy"], "to": first}
                detections[i] = {**detections[i], "bbox_xyxy": first}
                detections.append(person_detection(second, name))
                detail.update(other=len(detections) - 1, bbox_xyxy=second, **{"class": name})
            elif action == "merge":
                i, j = _index(change, detections), _index(change, detections, "other")
                if i == j:
                    raise ReviewError(400, f"merge: index and other are both {i}")
                if "bbox_xyxy" in change:
                    box = _box(change, record["image"])
                else:
                    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = (
                        detections[k]["bbox_xyxy"] for k in (i, j)
                    )
                    box = [min(ax1, bx1), min(ay1, by1), max(ax2, bx2), max(ay2, by2)]
                detail = {"index": i, "from": detections[i]["bbox_xyxy"], "to": box}
                detections[i] = {**detections[i], "bbox_xyxy": box}
                detail.update(other=j, deleted=detections.pop(j))
                if j < i:
                    detail["index"] = i - 1
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
            return {**new, "inverse": inverse(action, detail, record["reviewed"])}

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

    def _was_deleted(self, cid: str, detection) -> bool:
        """Whether the log holds ``detection`` as one deleted from cell ``cid``."""
        try:
            with open(os.path.join(self.root, LOG_NAME)) as f:
                lines = f.readlines()
        except FileNotFoundError:
            return False
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("cell") == cid and entry.get("deleted") == detection:
                return True
        return False

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


def inverse(action: str, detail: Dict, was_reviewed: bool) -> Optional[Dict]:
    """
    The change that undoes a change, from what the log says of it (``detail``): the cell's
    chromosomes as they were, in their order. The reviewed mark a change took off stays off
    (the undo is a change too); "reviewed" alone sets the mark back as it was.

    Returns:
        dict or None: the change without its "version"; None for a "merge" (the page undoes
        a split with one, and redoes the split itself).
    """
    i = detail.get("index")
    if action in ("class", "model"):
        return {"action": "class", "index": i, "class": detail["from"]}
    if action == "swap":
        return {"action": "swap", "index": i, "other": detail["other"]}
    if action == "delete":
        return {"action": "restore", "index": i, "detection": detail["deleted"]}
    if action in ("restore", "add"):
        return {"action": "delete", "index": i}
    if action == "box":
        return {"action": "box", "index": i, "bbox_xyxy": detail["from"]}
    if action == "split":
        return {
            "action": "merge",
            "index": i,
            "other": detail["other"],
            "bbox_xyxy": detail["from"],
        }
    if action == "reviewed":
        return {"action": "reviewed", "reviewed": was_reviewed}
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index(change: Dict, detections: List[Dict], key: str = "index") -> int:
    i = change.get(key)
    if not _is_int(i) or not 0 <= i < len(detections):
        raise ReviewError(400, f"{key} {i!r}: a chromosome of the cell, 0..{len(detections) - 1}")
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
