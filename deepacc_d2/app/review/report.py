"""
A report to sign, on A4: per cell, one page with its metaphase overlay and karyogram, its ISCN
call and flags, the case call, the rules the case was made with, every change a person made to
the cell on the review page (``review_log.jsonl``), whether it is marked reviewed, the date and
a signature line; for the case, the case call and one row per cell (call, count, reviewed,
flags). Each is a PDF and a PNG.

A report is first its text, a plain dict of lines (:mod:`.report_text`), then a drawing of it
(:mod:`.report_drawing`). A cell not marked reviewed carries a red "NOT REVIEWED" box and the
same words across the page; so does the case report while any cell is not reviewed.
"""

import os
from functools import partial
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from ...engine.files import write_atomic
from ...visualize import draw_detections
from ..karyotype.cell import detections_from_record
from .edits import ReviewError
from .report_drawing import FORMATS, check_format, render_case_report, render_cell_report
from .report_text import case_report_lines, cell_report_lines
from .store import CaseReview


# ---------------------------------------------------------------------------- the pictures
def cell_pictures(review: CaseReview, cid: str) -> Dict[str, np.ndarray]:
    """
    The cell's pictures, RGB: "metaphase" (its chromosomes drawn on it) and "karyogram" of
    its current chromosomes; when its image cannot be read, "picture": the case's own
    ``<cell>_karyogram.png`` if there is one; else none.
    """
    record = review.cell(cid)
    try:
        image = review.image(cid)
    except ReviewError:
        path = os.path.join(review.root, f"{cid}_karyogram.png")
        if not os.path.isfile(path):
            return {}
        with Image.open(path) as picture:
            return {"picture": np.asarray(picture.convert("RGB"))}
    d = detections_from_record(record["detections"])
    return {
        "metaphase": draw_detections(image, d["boxes"], d["classes"], d["scores"]),
        "karyogram": review.karyogram(cid),
    }


# ---------------------------------------------------------------------------- entry points
def cell_report(review: CaseReview, cid: str, fmt: str, date: Optional[str] = None) -> bytes:
    """A cell's report as ``fmt`` ("pdf" or "png") bytes; ReviewError 404 for an unknown cell
    or format."""
    check_format(fmt)
    lines = cell_report_lines(review, cid, date)
    return render_cell_report(lines, cell_pictures(review, cid), fmt)


def case_report(review: CaseReview, fmt: str, date: Optional[str] = None) -> bytes:
    """The case's report as ``fmt`` ("pdf" or "png") bytes."""
    check_format(fmt)
    return render_case_report(case_report_lines(review, date), fmt)


def report_name(cid: Optional[str], fmt: str) -> str:
    """The report's file name: ``case_report.<fmt>``, a cell's ``cell_<id>_report.<fmt>`` (no
    cell's name can give the case's)."""
    return f"case_report.{fmt}" if cid is None else f"cell_{cid}_report.{fmt}"


def write_reports(review: CaseReview, out_dir: str, date: Optional[str] = None) -> List[str]:
    """The case's report and every cell's, PDF and PNG, into ``out_dir`` (each file written in
    one step); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []

    def write(cid, render):
        for fmt in FORMATS:
            paths.append(os.path.join(out_dir, report_name(cid, fmt)))
            write_atomic(paths[-1], render(fmt))

    write(None, partial(render_case_report, case_report_lines(review, date)))
    for cid in review.cells:  # each cell's text and pictures made once for both formats
        lines, pictures = cell_report_lines(review, cid, date), cell_pictures(review, cid)
        write(cid, partial(render_cell_report, lines, pictures))
    return paths
