"""
``deepacc karyotype``: per image a karyotype record (JSON) and the Visualizer overlay beside
the karyogram (PNG); over all images, the case summary (JSON and text). A file that cannot be
read or processed is named in the summary and the others still go through; every cell's
files and the summary are written as soon as that cell is done.
"""

import json
import logging
import os
from typing import Dict, Sequence, Tuple

import numpy as np

from .cell import ReviewRules, cell_record, counted_detections
from .iscn import case_karyotype
from .karyogram import draw_karyogram

logger = logging.getLogger(__name__)


def karyotype_cell(image_rgb: np.ndarray, instances, rules: ReviewRules) -> Tuple[Dict, np.ndarray]:
    """
    Args:
        image_rgb (ndarray): (H, W, 3) uint8.
        instances (Instances): the model's output for it, on the CPU.

    Returns:
        dict: the cell's record (:func:`.cell.cell_record`).
        ndarray: the overlay of the counted detections (detectron2 Visualizer, Denver-group
        colours) beside the karyogram, RGB.
    """
    from ..visualize import draw_detections, side_by_side

    detections = counted_detections(instances, rules)
    record = cell_record(detections, rules)
    karyogram, _ = draw_karyogram(
        image_rgb, detections["boxes"], detections["classes"], detections["scores"], rules.low_score
    )
    scale = karyogram.shape[0] / image_rgb.shape[0]
    overlay = draw_detections(
        image_rgb, detections["boxes"], detections["classes"], detections["scores"], scale
    )
    return record, side_by_side(overlay, karyogram)


def case_summary(cells: Dict[str, Dict], errors: Dict[str, str]) -> Dict:
    """The case over its cells: clonal karyotype (:func:`.iscn.case_karyotype`), cells without
    a call, cells flagged for review, files that failed."""
    calls = [c["karyotype"] for c in cells.values() if c["karyotype"]]
    case = case_karyotype(calls)
    return {
        "cells_read": len(cells),
        "cells_called": len(calls),
        "karyotype": case["iscn"],
        "modal_count": case["modal_count"],
        "clones": case["clones"],
        "non_clonal": case["non_clonal"],
        "clonal_changes": case["clonal_changes"],
        "counts_per_cell": {f: c["total"] for f, c in cells.items()},
        "no_call": [f for f, c in cells.items() if not c["karyotype"]],
        "review": {
            f: [x["message"] for x in c["flags"]] for f, c in cells.items() if c["needs_review"]
        },
        "failed": errors,
    }


def summary_text(summary: Dict) -> str:
    lines = [
        f"Cells read: {summary['cells_read']}; with a karyotype call: "
        f"{summary['cells_called']}; files that failed: {len(summary['failed'])}",
        f"Modal chromosome count: {summary['modal_count']}",
        f"Case karyotype: {summary['karyotype'] or '(no cell line qualifies)'}",
    ]
    if summary["non_clonal"]:
        lines.append(
            "Non-clonal cells (left out): "
            + ", ".join(f"{iscn} x{n}" for iscn, n in summary["non_clonal"])
        )
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


def _write_summary(output_dir, cells, errors) -> Dict:
    summary = case_summary(cells, errors)
    with open(os.path.join(output_dir, "case.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(output_dir, "case.txt"), "w") as f:
        f.write(summary_text(summary))
    return summary


def karyotype_files(cfg, inputs: Sequence[str], output_dir: str) -> Dict:
    """
    Run the model on image files or folders and write, per image ``<name>_karyotype.json`` and
    ``<name>_karyogram.png``, and ``case.json`` / ``case.txt`` for all of them.

    Returns:
        dict: the case summary (:func:`case_summary`).
    """
    from detectron2.data import detection_utils

    from ..inference import predict_each

    rules = ReviewRules.from_config(cfg)
    cells, errors = {}, {}
    os.makedirs(output_dir, exist_ok=True)
    summary = _write_summary(output_dir, cells, errors)  # an empty case has one too
    for path, name, image_bgr, instances in predict_each(cfg, inputs, output_dir, errors):
        if instances is not None:
            try:
                record, picture = karyotype_cell(
                    np.ascontiguousarray(image_bgr[:, :, ::-1]), instances, rules
                )
            except Exception as e:  # one bad cell never loses the rest of the case
                errors[path] = f"{path}: {type(e).__name__}: {e}"
                logger.error(errors[path])
            else:
                record = {"file": path, **record}
                stem = os.path.join(output_dir, name)
                with open(stem + "_karyotype.json", "w") as f:
                    json.dump(record, f, indent=1)
                detection_utils.Image.fromarray(picture).save(stem + "_karyogram.png")
                cells[path] = record
        summary = _write_summary(output_dir, cells, errors)
    return summary
