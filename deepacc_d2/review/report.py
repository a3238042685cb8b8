"""
A report to sign, on A4: per cell, one page with its metaphase overlay and karyogram, its ISCN
call and flags, the case call, the rules the case was made with, every change a person made to
the cell on the review page (``review_log.jsonl``), whether it is marked reviewed, the date and
a signature line; for the case, the case call and one row per cell (call, count, reviewed,
flags). Each is a PDF and a PNG (matplotlib: the Agg and PDF backends, no pyplot state).

A report is first its text, a plain dict of lines (:func:`cell_report_lines`,
:func:`case_report_lines`), then a drawing of it (:func:`render_cell_report`,
:func:`render_case_report`). A cell not marked reviewed carries a red "NOT REVIEWED" box and
the same words across the page; so does the case report while any cell is not reviewed.
"""

import json
import os
import re
import textwrap
import threading
import time
from functools import partial
from io import BytesIO
from typing import Dict, List, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from PIL import Image

from ..files import png_bytes, write_atomic
from ..karyotype.cell import detections_from_record
from ..visualize import draw_detections
from .store import LOG_NAME, CaseReview, ReviewError

FORMATS = ("pdf", "png")
PAGE_MM = (210.0, 297.0)  # A4, portrait
MARGIN_MM = 15.0
PNG_DPI = 200  # a PNG page: 1653 x 2338 px (A4 at 200 dpi, matplotlib rounds down)
PDF_DPI = 300  # the pictures inside a PDF page
REVIEWED, NOT_REVIEWED = "REVIEWED", "NOT REVIEWED"
SIGNATURE = "Reviewed by: ________________________________      Date: ____________________"
TABLE_COLUMNS = (("Cell", 36.0), ("Call", 42.0), ("Count", 14.0), ("Reviewed", 18.0))  # mm
CALL_COLUMN, REVIEWED_COLUMN = 1, 3
TABLE_FLAGS = "Flags"  # the last column: what is left of the width
CHANGES = "Changes by the reviewer"

_MM_PER_PT = 25.4 / 72
_RED, _GREEN, _GREY = "#c0392b", "#1e8449", "#555555"
_RENDER_LOCK = threading.Lock()  # matplotlib's font cache and text layout are shared state


# ---------------------------------------------------------------------------- the text
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
    try:
        with open(os.path.join(review.root, "case.json")) as f:
            model = json.load(f).get("model")
    except (OSError, ValueError, AttributeError):
        model = None
    if isinstance(model, dict):
        model = ", ".join(f"{k} {v}" for k, v in model.items())
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
    return [
        f"Model: {model}" if model else "Model: unknown (case.json does not record it)",
        f"Counting: {counting}",
        f"Naming: {naming}",
    ]


def read_log(root: str) -> List[Dict]:
    """The case's ``review_log.jsonl`` entries in order; a line that is not JSON (a write a
    crash cut short) is left out."""
    try:
        with open(os.path.join(root, LOG_NAME)) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def describe_change(entry: Dict) -> str:
    """One log entry (:meth:`.store.CaseReview.edit`'s actions) in words; indices are the
    chromosome's place in the cell's record when the change was made."""
    action, i = entry.get("action"), entry.get("index")

    def name(detection) -> str:
        return (detection or {}).get("class", "?")

    if action == "class":
        text = f"chromosome {i}: {entry.get('from')} -> {entry.get('to')}"
    elif action == "model":
        text = f"chromosome {i}: {entry.get('from')} -> {entry.get('to')} (the model's answer)"
    elif action == "swap":
        text = (
            f"chromosomes {i} and {entry.get('other')}: classes swapped "
            f"({entry.get('from')} <-> {entry.get('to')})"
        )
    elif action == "delete":
        text = f"chromosome {i} ({name(entry.get('deleted'))}) deleted"
    elif action == "restore":
        text = f"chromosome {i} ({name(entry.get('restored'))}) restored"
    elif action == "add":
        text = f"chromosome {i} added: {entry.get('class')} at {_box(entry.get('bbox_xyxy'))}"
    elif action == "box":
        text = f"chromosome {i}: box {_box(entry.get('from'))} -> {_box(entry.get('to'))}"
    elif action == "split":
        text = f"chromosome {i} ({entry.get('class')}) split in two (new: {entry.get('other')})"
    elif action == "merge":
        text = f"chromosome {entry.get('other')} ({name(entry.get('deleted'))}) merged into {i}"
    elif action == "reviewed":
        return "marked reviewed" if entry.get("reviewed") else "reviewed mark taken off"
    else:
        text = str(action)
    if entry.get("reviewed") is False:
        text += " (reviewed mark taken off)"
    return text


def _time(entry: Dict) -> str:
    """A log time, "2024-05-01T10:20:30+0200", as "2024-05-01 10:20" (the log keeps the
    seconds)."""
    return str(entry.get("time", "?"))[:16].replace("T", " ")


def _box(box) -> str:
    if not isinstance(box, list):
        return "?"
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


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


# ---------------------------------------------------------------------------- the drawing
class _Page:
    """An A4 figure drawn in millimetres from its top-left corner."""

    def __init__(self):
        width, height = PAGE_MM
        self.figure = Figure(figsize=(width / 25.4, height / 25.4))
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(height, 0)
        self.ax.axis("off")

    def text(self, x, y, s, size=9.0, weight="normal", color="black", ha="left", **kw):
        self.ax.text(
            x,
            y,
            s,
            fontsize=size,
            fontweight=weight,
            color=color,
            ha=ha,
            va="top",
            parse_math=False,
            **kw,
        )

    def rule(self, y, x0=MARGIN_MM, x1=PAGE_MM[0] - MARGIN_MM, color=_GREY, width=0.6):
        self.ax.plot([x0, x1], [y, y], color=color, linewidth=width)

    def picture(self, image: np.ndarray, x, y, width, height) -> float:
        """``image`` fitted into the box, centred across it, at its top; returns its height."""
        scale = min(width / image.shape[1], height / image.shape[0])
        w, h = image.shape[1] * scale, image.shape[0] * scale
        x += (width - w) / 2
        page_w, page_h = PAGE_MM
        ax = self.figure.add_axes((x / page_w, 1 - (y + h) / page_h, w / page_w, h / page_h))
        ax.imshow(image, aspect="auto", interpolation="antialiased")
        ax.axis("off")
        return h

    def column(self, x, y, width, bottom, sections: Dict[str, List[str]], size=8.5) -> float:
        """Headed sections of wrapped lines down from ``y``. Lines that would pass ``bottom``
        are left out, and a last line says how many (the changes: that the log has them).
        Returns the y below the last line."""
        step = _line_mm(size)
        for heading, lines in sections.items():
            if y + 2 * step > bottom:
                break
            self.text(x, y, heading, size + 1, "bold")
            y += step * 1.25
            for k, line in enumerate(lines):
                pieces = _wrap(line, width, size)
                room = bottom - (y + len(pieces) * step)
                if room < 0 or (room < step and k < len(lines) - 1):
                    where = f" in {LOG_NAME}" if heading == CHANGES else ""
                    self.text(x, y, f"... and {len(lines) - k} more{where}", size, "bold")
                    return y + step
                for piece in pieces:
                    self.text(x, y, piece, size)
                    y += step
            y += step * 0.6
        return y

    def call(self, x, y, label: str, call: str, width) -> float:
        """A karyotype in large type under its label, smaller (down to 11 pt) and wrapped
        when long; returns the y below it."""
        self.text(x, y, label, 8.5, color=_GREY)
        size = min(18.0, max(11.0, width / (len(call) * _MM_PER_PT * 0.7)))
        y += 4.5
        for piece in _wrap_call(call, _chars(width, size, 0.7)):
            self.text(x, y, piece, size, "bold")
            y += _line_mm(size)
        return y + 2.5

    def header(self, title: str, subtitle: str, status: str, detail: str = ""):
        left, right = MARGIN_MM, PAGE_MM[0] - MARGIN_MM
        self.text(left, MARGIN_MM, title, 14, "bold")
        self.text(left, MARGIN_MM + 7.5, subtitle, 8.5, color=_GREY)
        color = _GREEN if status == REVIEWED else _RED
        box = dict(boxstyle="square,pad=0.4", facecolor="white", edgecolor=color, linewidth=1.6)
        self.text(right - 1.5, MARGIN_MM + 0.8, status, 12, "bold", color, "right", bbox=box)
        if detail:
            self.text(right, MARGIN_MM + 8.5, detail, 8.5, color=color, ha="right")
        self.rule(MARGIN_MM + 13)

    def watermark(self, status: str):
        """The words NOT REVIEWED across the page, over the pictures too (a figure's text is
        drawn above its axes)."""
        if status != REVIEWED:
            self.figure.text(
                0.5,
                0.5,
                NOT_REVIEWED,
                fontsize=64,
                fontweight="bold",
                color=_RED,
                alpha=0.13,
                rotation=35,
                ha="center",
                va="center",
                parse_math=False,
            )

    def signature(self, text: str, y: float):
        self.rule(y - 3, color="black", width=0.4)
        self.text(MARGIN_MM, y + 3, text, 11)


def _line_mm(size: float) -> float:
    return size * _MM_PER_PT * 1.4


def _wrap(line: str, width_mm: float, size: float) -> List[str]:
    """``line`` in lines that fit ``width_mm`` at ``size`` points, the later ones indented."""
    return textwrap.wrap(
        line, _chars(width_mm, size), subsequent_indent="    ", break_on_hyphens=False
    ) or [""]


def _chars(width_mm: float, size: float, em: float = 0.58) -> int:
    """How many characters of ``em`` ems each fill ``width_mm`` (DejaVu Sans averages ~0.55
    em a character in text; bold ISCN, mostly digits and capitals, ~0.7)."""
    return max(8, int(width_mm / (size * _MM_PER_PT * em)))


def _wrap_call(call: str, chars: int) -> List[str]:
    """An ISCN string in lines of at most ``chars``, cut only after a "," or "/" (a loss's
    "-" stays with its chromosome)."""
    lines = [""]
    for token in re.findall(r"[^,/]+[,/]?|[,/]", call):
        if lines[-1] and len(lines[-1]) + len(token) > chars:
            lines.append("")
        lines[-1] += token
    return lines


def render_cell_report(lines: Dict, pictures: Dict[str, np.ndarray], fmt: str) -> bytes:
    """
    A cell's report on one A4 page: the metaphase (top left) beside the call and the cell's
    lines, the karyogram across the page, the case and model (left) beside the changes
    (right), the signature line.

    Args:
        lines (dict): :func:`cell_report_lines`.
        pictures (dict): :func:`cell_pictures`.
        fmt (str): "pdf" or "png".
    """
    _check(fmt)
    with _RENDER_LOCK:
        page = _Page()
        page.header(lines["title"], lines["subtitle"], lines["status"])
        left, right = MARGIN_MM, PAGE_MM[0] - MARGIN_MM
        half = (right - left - 5) / 2
        top = MARGIN_MM + 16
        if "metaphase" in pictures:
            page.picture(pictures["metaphase"], left, top, half, 80)
        else:
            page.text(left, top, "(the metaphase image could not be read)", 8.5, color=_GREY)
        x = left + half + 5
        y = page.call(x, top, "Cell call (ISCN)", lines["call"], half)
        page.column(x, y, half, top + 80, {"Cell": lines["sections"]["Cell"]})
        band = top + 83
        karyogram = pictures.get("karyogram", pictures.get("picture"))
        if karyogram is not None:
            page.picture(karyogram, left, band, right - left, 72)
        low = band + 75
        page.rule(low)
        bottom = PAGE_MM[1] - MARGIN_MM - 22
        sections = lines["sections"]
        page.column(left, low + 3, half, bottom, {k: sections[k] for k in ("Case", "Model")})
        page.column(left + half + 5, low + 3, half, bottom, {CHANGES: sections[CHANGES]})
        page.signature(lines["signature"], bottom + 6)
        page.watermark(lines["status"])
        return _save([page], lines, fmt)


def render_case_report(lines: Dict, fmt: str) -> bytes:
    """
    The case's report: its call and lines, then one table row per cell, on as many A4 pages
    as the rows need (the header and the table's heading again on each); the signature line
    on the last. A PNG of more than one page is the pages one below the other.

    Args:
        lines (dict): :func:`case_report_lines`.
        fmt (str): "pdf" or "png".
    """
    _check(fmt)
    left, right = MARGIN_MM, PAGE_MM[0] - MARGIN_MM
    bottom = PAGE_MM[1] - MARGIN_MM - 6
    size = 8.5
    step = _line_mm(size)
    widths = [w for _, w in TABLE_COLUMNS]
    widths.append(right - left - sum(widths))
    with _RENDER_LOCK:
        pages = []

        def new_page():
            page = _Page()
            page.header(lines["title"], lines["subtitle"], lines["status"], lines["status_detail"])
            page.watermark(lines["status"])
            pages.append(page)
            return page

        def table_head(page, y):
            x = left
            for name, width in zip(lines["table"]["columns"], widths):
                page.text(x, y, name, size, "bold")
                x += width
            page.rule(y + step + 0.5)
            return y + step + 1.5

        page = new_page()
        y = MARGIN_MM + 16
        y = page.call(left, y, "Case karyotype (ISCN)", lines["call"], right - left)
        y = page.column(left, y, right - left, bottom, lines["sections"]) + step
        y = table_head(page, y)
        for row in lines["table"]["rows"]:
            cells = [_wrap(text, width - 2, size) for text, width in zip(row, widths)]
            cells[CALL_COLUMN] = _wrap_call(row[CALL_COLUMN], _chars(widths[CALL_COLUMN] - 2, size))
            height = max(len(c) for c in cells) * step + 1
            if y + height > bottom:
                page = new_page()
                y = table_head(page, MARGIN_MM + 16)
            x = left
            for column, (pieces, width) in enumerate(zip(cells, widths)):
                not_reviewed = column == REVIEWED_COLUMN and row[column] == "NO"
                for k, piece in enumerate(pieces):
                    page.text(x, y + k * step, piece, size, color=_RED if not_reviewed else "black")
                x += width
            page.rule(y + height - 0.5, color="#cccccc", width=0.3)
            y += height
        if y + 25 > PAGE_MM[1] - MARGIN_MM:
            page = new_page()
            y = MARGIN_MM + 16
        page.signature(lines["signature"], max(y + 12, PAGE_MM[1] - MARGIN_MM - 16))
        return _save(pages, lines, fmt)


def _check(fmt: str):
    if fmt not in FORMATS:
        raise ReviewError(404, f"report.{fmt}: a report is report.pdf or report.png")


def _save(pages: List[_Page], lines: Dict, fmt: str) -> bytes:
    for k, page in enumerate(pages, start=1):
        page.text(MARGIN_MM, PAGE_MM[1] - MARGIN_MM + 4, lines["footer"], 7, color=_GREY)
        page.text(
            PAGE_MM[0] - MARGIN_MM,
            PAGE_MM[1] - MARGIN_MM + 4,
            f"page {k} of {len(pages)}",
            7,
            color=_GREY,
            ha="right",
        )
    buffer = BytesIO()
    if fmt == "pdf":
        metadata = {"Title": lines["title"], "Creator": "DeepACC-D2 review"}
        with PdfPages(buffer, metadata=metadata) as pdf:
            for page in pages:
                pdf.savefig(page.figure, dpi=PDF_DPI)
        return buffer.getvalue()
    rasters = []
    for page in pages:
        page.figure.set_dpi(PNG_DPI)
        page.figure.canvas.draw()
        rasters.append(np.asarray(page.figure.canvas.buffer_rgba())[:, :, :3])
    return png_bytes(np.ascontiguousarray(np.concatenate(rasters, axis=0)))


# ---------------------------------------------------------------------------- entry points
def cell_report(review: CaseReview, cid: str, fmt: str, date: Optional[str] = None) -> bytes:
    """A cell's report as ``fmt`` ("pdf" or "png") bytes; ReviewError 404 for an unknown cell
    or format."""
    _check(fmt)
    lines = cell_report_lines(review, cid, date)
    return render_cell_report(lines, cell_pictures(review, cid), fmt)


def case_report(review: CaseReview, fmt: str, date: Optional[str] = None) -> bytes:
    """The case's report as ``fmt`` ("pdf" or "png") bytes."""
    _check(fmt)
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
