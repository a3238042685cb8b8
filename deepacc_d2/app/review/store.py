"""
A case folder of ``deepacc karyotype`` under review. A person corrects a cell (the changes of
:mod:`.edits`: renames a chromosome, deletes a false detection, adds a missed chromosome,
moves, splits or merges boxes, marks the cell reviewed); after every change the cell's record
and picture and the case summary are made again by the code that made them
(:func:`..karyotype.run.cell_outputs`, :func:`..karyotype.run.write_case`) and written at
once, each file replaced in one step, and the change is appended to the case's log
(:mod:`.log`). Each cell carries a version number that a change must name: a change made on an
older version (another page changed the cell since) is refused, never applied over the other.
Any change to a cell marked reviewed takes the mark off: the person reviews the cell as it now
is.

Reviewed cells export as COCO json with the 24 classes, which
:func:`..data.datasets.register_karyotype_coco` loads for training.
"""

import contextlib
import fcntl
import json
import logging
import os
import threading
from functools import partial
from typing import Dict, List, Optional

import numpy as np

from ...classes import CLASS_NAMES, coco_categories
from ...data.images import read_metaphase
from ...engine.evaluate import save_png
from ...engine.files import write_atomic
from ..karyotype.case_files import case_summary, cell_outputs, write_case
from ..karyotype.cell import KaryotypeRules, detections_from_record
from ..karyotype.karyogram import draw_karyogram
from .edits import ACTIONS, ReviewError, apply_change, inverse, is_int
from .log import append_log, read_log

RECORD_SUFFIX = "_karyotype.json"
LOCK_NAME = ".review.lock"
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
        self.rules = KaryotypeRules(**case["rules"])
        self.pictures = case.get("pictures", "all")
        self.model = case.get("model")  # what made the case, when it records it
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
            (:func:`.edits.inverse`; its "version" left to the sender).

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
            if not is_int(version):
                raise ReviewError(400, "version: the cell's version number the change was made on")
            if version != record["version"]:
                raise ReviewError(
                    409,
                    f"cell {cid!r} is at version {record['version']}, the change was made on "
                    f"version {version}: it was changed elsewhere; reload it",
                )
            detections = [dict(d) for d in record["detections"]]
            was_deleted = partial(self._was_deleted, cid)
            detail = apply_change(change, detections, record["image"], was_deleted)
            # a changed cell is no longer the cell the person reviewed
            reviewed = change["reviewed"] if action == "reviewed" else False
            if reviewed != record["reviewed"] or action == "reviewed":
                detail["reviewed"] = reviewed
            new = self._write(cid, record, detections, reviewed)
            entry = {"cell": cid, "version": new["version"], "action": action, **detail}
            append_log(self.root, entry)
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
        write_case(self.root, self.by_file(), self.failed, self.rules, self.pictures, self.model)
        return new

    def _was_deleted(self, cid: str, detection) -> bool:
        """Whether the log holds ``detection`` as one deleted from cell ``cid``."""
        return any(
            e.get("cell") == cid and e.get("deleted") == detection for e in read_log(self.root)
        )

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
        categories = coco_categories()
        return {"images": images, "annotations": annotations, "categories": categories}
