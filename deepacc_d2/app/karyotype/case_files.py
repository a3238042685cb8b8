"""
``deepacc karyotype``: per image a karyotype record (JSON) and the Visualizer overlay beside
the karyogram (PNG); over all images, the case summary (JSON and text). A file that cannot be
read or processed is named in the summary and the others still go through; every cell's
files and the summary are written as soon as that cell is done.
"""

import dataclasses
import json
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ...engine.evaluate import save_png
from ...engine.files import write_atomic
from ...iscn import case_karyotype
from ...visualize import draw_detections, side_by_side
from ..case import check_pictures, list_images, run_case, timed
from ..export import load_detector
from .cell import KaryotypeRules, cell_record, counted_detections
from .karyogram import draw_karyogram

PICTURES = ("none", "overlay", "all")  # see cell_outputs


def karyotype_cell(
    image_rgb: np.ndarray, instances, rules: KaryotypeRules, pictures: str = "all", timings=None
) -> Tuple[Dict, Optional[np.ndarray]]:
    """
    Args:
        image_rgb (ndarray): (H, W, 3) uint8.
        instances (Instances): the model's output for it, on the CPU.
        pictures (str): see :func:`cell_outputs`.
        timings (dict or None): adds up the seconds of each stage (:func:`..case.timed`).

    Returns:
        dict, ndarray or None: :func:`cell_outputs` of the counted detections.
    """
    with timed(timings, "selection"):
        detections = counted_detections(instances, rules)
    return cell_outputs(image_rgb, detections, rules, pictures, timings)


def cell_outputs(
    image_rgb: np.ndarray,
    detections: Dict,
    rules: KaryotypeRules,
    pictures: str = "all",
    timings=None,
) -> Tuple[Dict, Optional[np.ndarray]]:
    """
    A cell's record and picture from its chromosomes: what ``deepacc karyotype`` writes, and
    what the review page writes again after a person's correction.

    Args:
        detections (dict): as :func:`.cell.counted_detections` returns.
        pictures (str): "all": the overlay of the detections (detectron2 Visualizer,
            Denver-group colours) beside the karyogram; "overlay": the overlay alone; "none".

    Returns:
        dict: the cell's record (:func:`.cell.cell_record`).
        ndarray or None: the picture, RGB.
    """
    with timed(timings, "selection"):
        record = cell_record(detections, rules)
    if pictures == "none":
        return record, None
    scale = 1.0
    if pictures == "all":
        with timed(timings, "karyogram"):
            karyogram, _, _ = draw_karyogram(
                image_rgb,
                detections["boxes"],
                detections["classes"],
                detections["scores"],
                rules.low_score,
            )
        scale = karyogram.shape[0] / image_rgb.shape[0]
    with timed(timings, "pictures"):
        overlay = draw_detections(
            image_rgb, detections["boxes"], detections["classes"], detections["scores"], scale
        )
    return record, side_by_side(overlay, karyogram) if pictures == "all" else overlay


def case_summary(cells: Dict[str, Dict], errors: Dict[str, str]) -> Dict:
    """The case over its cells: clonal karyotype and the rule that made it
    (:func:`.iscn.case_karyotype`), the cells with non-clonal changes and those changes, cells
    without a call, cells flagged for review and not yet marked reviewed by a person, cells
    reviewed, files that failed."""
    calls = [c["karyotype"] for c in cells.values() if c["karyotype"]]
    case = case_karyotype(calls)
    return {
        "cells_read": len(cells),
        "cells_called": len(calls),
        "karyotype": case["iscn"],
        "rule": case["rule"],
        "explanation": case["explanation"],
        "modal_count": case["modal_count"],
        "lines": case["lines"],
        "clones": case["clones"],
        "non_clonal": case["non_clonal"],
        "non_clonal_cells": {
            f: case["non_clonal_changes"][c["karyotype"]]
            for f, c in cells.items()
            if c["karyotype"] in case["non_clonal_changes"]
        },
        "clonal_changes": case["clonal_changes"],
        "counts_per_cell": {f: c["total"] for f, c in cells.items()},
        "no_call": [f for f, c in cells.items() if not c["karyotype"]],
        "review": {
            f: [x["message"] for x in c["flags"]]
            for f, c in cells.items()
            if c["needs_review"] and not c.get("reviewed")
        },
        "reviewed": [f for f, c in cells.items() if c.get("reviewed")],
        "failed": errors,
    }


def summary_text(summary: Dict) -> str:
    lines = [
        f"Cells read: {summary['cells_read']}; with a karyotype call: "
        f"{summary['cells_called']}; files that failed: {len(summary['failed'])}",
        f"Modal chromosome count: {summary['modal_count']}",
        f"Case karyotype: {summary['karyotype'] or '(no cell line qualifies)'}",
        f"Rule: {summary['rule']}: {summary['explanation']}",
    ]
    if summary["non_clonal"]:
        lines.append(
            "Non-clonal cells (left out): "
            + ", ".join(f"{iscn} x{n}" for iscn, n in summary["non_clonal"])
        )
    if summary["non_clonal_cells"]:
        lines.append("Non-clonal changes (not written in the case karyotype):")
        lines += [
            f"  {f}: {', '.join(changes)}" for f, changes in summary["non_clonal_cells"].items()
        ]
    if summary["reviewed"]:
        lines.append(f"Cells reviewed by a person: {len(summary['reviewed'])}")
    if summary["review"]:
        lines.append(f"Cells to review: {len(summary['review'])}")
        lines += [
            f"  {f}: {'; '.join(reasons) or 'no karyotype call'}"
            for f, reasons in summary["review"].items()
        ]
    if summary["failed"]:
        lines.append("Files that failed:")
        lines += [f"  {msg}" for msg in summary["failed"].values()]
    return "\n".join(lines) + "\n"


def write_case(
    output_dir: str,
    cells,
    errors,
    rules: KaryotypeRules,
    pictures: str,
    model: Optional[Dict] = None,
) -> Dict:
    """``case.json`` (the summary, and the rules and pictures the case was made with, which
    the review page applies again, and the model when given: :func:`..model_zoo.model_record`)
    and ``case.txt``, each replaced in one step."""
    summary = case_summary(cells, errors)
    setup = {"rules": dataclasses.asdict(rules), "pictures": pictures}
    if model is not None:
        setup["model"] = model
    write_atomic(os.path.join(output_dir, "case.json"), json.dumps({**summary, **setup}, indent=1))
    write_atomic(os.path.join(output_dir, "case.txt"), summary_text(summary))
    return summary


def save_cell(output_dir: str, name: str, path: str, image_shape, record: Dict, picture) -> Dict:
    """
    Write a cell's ``<name>_karyotype.json`` (its record with the image file it came from and
    that image's size) and ``<name>_karyogram.png`` (when ``picture`` is not None).

    Returns:
        dict: the record as written.
    """
    height, width = image_shape[:2]
    image = {"path": os.path.abspath(path), "height": int(height), "width": int(width)}
    record = {"file": path, "image": image, **record}
    stem = os.path.join(output_dir, name)
    write_atomic(stem + "_karyotype.json", json.dumps(record, indent=1))
    if picture is not None:
        save_png(picture, stem + "_karyogram.png")
    return record


def karyotype_files(
    cfg,
    inputs: Sequence[str],
    output_dir: str,
    pictures: str = "all",
    workers: Optional[int] = None,
    timings: Optional[Dict[str, float]] = None,
    model: Optional[Dict] = None,
) -> Dict:
    """
    Run the model on image files or folders (:func:`..case.run_case`, ``workers`` processes)
    and write, per image ``<name>_karyotype.json`` and ``<name>_karyogram.png``
    (:func:`karyotype_cell`'s ``pictures``), and ``case.json`` / ``case.txt`` for all of them,
    updated after each cell.

    Args:
        model (dict or None): what ``case.json`` records of the model
            (:func:`..model_zoo.model_record`); None: nothing.

    Returns:
        dict: the case summary (:func:`case_summary`).
    """
    check_pictures(pictures, PICTURES)
    rules = KaryotypeRules.from_config(cfg)
    with timed(timings, "start-up"):
        network = load_detector(cfg)
    cells, errors = {}, {}
    os.makedirs(output_dir, exist_ok=True)
    # an empty case has a summary too
    summary = {"case": write_case(output_dir, cells, errors, rules, pictures, model)}

    def work(path, name, image_bgr, instances, seconds):
        image_rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        record, picture = karyotype_cell(image_rgb, instances, rules, pictures, seconds)
        with timed(seconds, "write"):
            return save_cell(output_dir, name, path, image_bgr.shape, record, picture)

    def keep(path, record, error):
        if error is None:
            cells[path] = record
        else:
            errors[path] = error
        with timed(timings, "write"):
            summary["case"] = write_case(output_dir, cells, errors, rules, pictures, model)

    run_case(cfg, network, list_images(inputs), work, keep, "karyotype", workers, timings)
    return summary["case"]
