"""
The text of a report to sign (:mod:`.report`), as plain dicts of lines: per cell
(:func:`cell_report_lines`) its ISCN call and flags, the case call, the rules the case was
made with, every change a person made to the cell on the review page (the case's log, in the
words of :func:`describe_change`), whether it is marked reviewed, a signature line; for the
case (:func:`case_report_lines`) the case call and one row per cell (call, count, reviewed,
flags). :mod:`.report_drawing` lays them out on A4.
"""

import os
import time
from typing import Dict, List, Optional

from .log import read_log
from .store import CaseReview

REVIEWED, NOT_REVIEWED = "REVIEWED", "NOT REVIEWED"
SIGNATURE = "Reviewed by: ________________________________      Date: ____________________"
TABLE_COLUMNS = (("Cell", 36.0), ("Call", 42.0), ("Count", 14.0), ("Reviewed", 18.0))  # mm
CALL_COLUMN, REVIEWED_COLUMN = 1, 3
TABLE_FLAGS = "Flags"  # the last column: what is left of the width
CHANGES = "Changes by the reviewer"
# a log entry in words (:func:`describe_change`), by its action; the fields are the entry's
_CHANGE_WORDS = {
    "class": "chromosome {index}: {from} -> {to}",
    "model": "chromosome {index}: {from} -> {to} (the model's answer)",
    "swap": "chromosomes {index} and {other}: classes swapped ({from} <-> {to})",
    "delete": "chromosome {index} ({deleted}) deleted",
    "restore": "chromosome {index} ({restored}) restored",
    "add": "chromosome {index} added: {class} at {bbox_xyxy}",
    "box": "chromosome {index}: box {from} -> {to}",
    "split": "chromosome {index} ({class}) split in two (new: {other})",
    "merge": "chromosome {other} ({deleted}) merged into {index}",
}


def cell_report_lines(review: CaseReview, cid: str, date: Optional[str] = None) -> Dict:
    """
    The text of a cell's report.

    Args:
        review (CaseReview): the case, as read last (:meth:`.store.CaseReview.refresh`).
        cid (str): the cell's id (its files' stem).
        date (str or None): the report's date; default: now, "YYYY-MM-DD HH:MM".

    Returns:
        dict: "title", "subtitle", "status" (``REVIEWED`` or ``NOT_REVIEWED``), "call",
        "sections" (heading -> lines: "Cell", "Case", "Model", "Changes by the reviewer"),
        "signature", "footer".

    Raises:
        ReviewError: 404 for an unknown cell.
    """
    record = review.cell(cid)
    summary = review.summary()
    entries = [e for e in read_log(review.root) if e.get("cell") == cid]
    image = record["image"]
    people = sum(d.get("source") == "person" for d in record["detections"])
    flags = [f["message"] for f in record["flags"]]
    if record["reviewed"]:
        marks = [e for e in entries if e.get("action") == "reviewed" and e.get("reviewed")]
        reviewed = "Reviewed: yes" + (
            f", marked {_time(marks[-1])} (version {marks[-1].get('version')})" if marks else ""
        )
    else:
        reviewed = "Reviewed: NO: not marked reviewed on the review page"
    cell = [  # what a page too full would cut last
        reviewed,
        f"Version: {record['version']} ({len(entries)} change(s) on the review page)",
        f"Chromosomes counted: {record['total']}; sex chromosomes: "
        f"{record['sex_chromosomes'] or 'none'}",
        f"Named by a person: {people} of {record['total']}",
        f"Image: {image['path']} ({image['width']} x {image['height']} px)",
        "Review flags: " + ("; ".join(flags) if flags else "none"),
    ]
    case = [f"Case karyotype: {summary['karyotype'] or '(no cell line qualifies)'}"]
    case += _case_lines(summary)
    non_clonal = summary["non_clonal_cells"].get(record["file"])
    if non_clonal:
        case.append(
            "This cell's non-clonal changes (not in the case karyotype): " + ", ".join(non_clonal)
        )
    changes = [f"{_time(e)}  v{e.get('version')}  {describe_change(e)}" for e in entries]
    return {
        "title": f"Karyotype report: cell {cid}",
        "subtitle": _subtitle(review, date),
        "status": REVIEWED if record["reviewed"] else NOT_REVIEWED,
        "call": record["karyotype"] or "no call",
        "sections": {
            "Cell": cell,
            "Case": case,
            "Model": model_lines(review),
            CHANGES: changes or ["none: the cell is as the model called it"],
        },
        "signature": SIGNATURE,
        "footer": f"DeepACC-D2 review: {review.root}",
    }


def case_report_lines(review: CaseReview, date: Optional[str] = None) -> Dict:
    """
    The text of the case's report.

    Returns:
        dict: "title", "subtitle", "status" (``REVIEWED`` when every cell is marked reviewed),
        "status_detail", "call", "sections" ("Case", "Model"), "table" ("columns", "rows":
        per cell its id, call, count, reviewed "yes" or "NO", flags), "signature", "footer".
    """
    cells = review.cells
    summary = review.summary()
    n_reviewed = sum(r["reviewed"] for r in cells.values())
    rows = [
        [
            cid,
            r["karyotype"] or "no call",
            str(r["total"]),
            "yes" if r["reviewed"] else "NO",
            "; ".join(f["message"] for f in r["flags"]) or "none",
        ]
        for cid, r in cells.items()
    ]
    return {
        "title": f"Karyotype report: case {os.path.basename(review.root)}",
        "subtitle": _subtitle(review, date),
        "status": REVIEWED if cells and n_reviewed == len(cells) else NOT_REVIEWED,
        "status_detail": f"{n_reviewed} of {len(cells)} cells reviewed",
        "call": summary["karyotype"] or "(no cell line qualifies)",
        "sections": {"Case": _case_lines(summary, cells), "Model": model_lines(review)},
        "table": {"columns": [c for c, _ in TABLE_COLUMNS] + [TABLE_FLAGS], "rows": rows},
        "signature": SIGNATURE,
        "footer": f"DeepACC-D2 review: {review.root}",
    }


def _subtitle(review: CaseReview, date: Optional[str]) -> str:
    date = date or time.strftime("%Y-%m-%d %H:%M")
    return f"Case {os.path.basename(review.root)}; report made {date}"


def _case_lines(summary: Dict, cells: Optional[Dict[str, Dict]] = None) -> List[str]:
    """The case call's lines; with ``cells`` (the case report) also the cells it leaves out."""
    lines = [
        f"Rule: {summary['rule']}: {summary['explanation']}",
        f"Cells: {summary['cells_read']} read, {summary['cells_called']} with a call, "
        f"{len(summary['reviewed'])} reviewed; modal count {summary['modal_count']}",
    ]
    if cells is None:
        return lines
    cell_of = {r["file"]: cid for cid, r in cells.items()}
    if summary["non_clonal"]:
        lines.append(
            "Non-clonal cells (left out): "
            + ", ".join(f"{iscn} x{n}" for iscn, n in summary["non_clonal"])
        )
    for f, changes in summary["non_clonal_cells"].items():
        lines.append(f"Non-clonal changes of {cell_of.get(f, f)}: {', '.join(changes)}")
    for msg in summary["failed"].values():
        lines.append(f"File that failed: {msg}")
    return lines


def model_lines(review: CaseReview) -> List[str]:
    """The model and the rules the case was made with, as ``case.json`` records them."""
    rules = review.rules
    if rules.count_by == "foreground":
        counting = f"foreground >= {rules.fg_thresh:g}, NMS {rules.fg_nms_thresh:g}"
    else:
        counting = f"top-1 score >= {rules.score_thresh:g}, NMS {rules.nms_thresh:g}"
    if rules.judge:
        counting += f", candidate judge {os.path.basename(rules.judge)}"
    naming = (
        f"the cell's chromosomes together (assignment; extra copy {rules.extra_cost:g}, "
        f"missing copy {rules.missing_cost:g})"
        if rules.assign
        else "each chromosome by its top class"
    )
    return _model_words(review.model) + [f"Counting: {counting}", f"Naming: {naming}"]


def _model_words(model) -> List[str]:
    """``case.json``'s "model" (:func:`...model_zoo.model_record`) in words."""
    if not model:
        return ["Model: unknown (case.json does not record it)"]
    if not isinstance(model, dict):
        return [f"Model: {model}"]
    lines = [f"Model: {model.get('weights')} (config {model.get('config_file')})"]
    if model.get("sha256"):
        digests = "; ".join(f"{name} {digest}" for name, digest in model["sha256"].items())
        lines.append(f"Weights sha256: {digests}")
    return lines


def describe_change(entry: Dict) -> str:
    """One log entry (:meth:`.store.CaseReview.edit`'s actions) in words; indices are the
    chromosome's place in the cell's record when the change was made, a field the entry lacks
    is "?"."""
    action = entry.get("action")
    if action == "reviewed":
        return "marked reviewed" if entry.get("reviewed") else "reviewed mark taken off"
    fields = _Fields({k: _words(v) for k, v in entry.items()})
    text = _CHANGE_WORDS[action].format_map(fields) if action in _CHANGE_WORDS else str(action)
    if entry.get("reviewed") is False:
        text += " (reviewed mark taken off)"
    return text


class _Fields(dict):
    """A log entry's fields in words; "?" for one it lacks."""

    def __missing__(self, key):
        return "?"


def _words(value) -> str:
    """A log entry's field in words: a chromosome by its class, a box by its numbers."""
    if isinstance(value, dict):
        return str(value.get("class", "?"))
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return str(value)


def _time(entry: Dict) -> str:
    """A log time, "2024-05-01T10:20:30+0200", as "2024-05-01 10:20" (the log keeps the
    seconds)."""
    return str(entry.get("time", "?"))[:16].replace("T", " ")
