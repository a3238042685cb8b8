"""
A report's lines (:mod:`.report_text`) drawn on A4 pages, as a PDF or a PNG (matplotlib: the
Agg and PDF backends, no pyplot state). A report not marked reviewed carries a red "NOT
REVIEWED" box and the same words across the page.
"""

import re
import textwrap
import threading
from io import BytesIO
from typing import Dict, List

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ...engine.files import png_bytes
from .edits import ReviewError
from .log import LOG_NAME
from .report_text import (
    CALL_COLUMN,
    CHANGES,
    NOT_REVIEWED,
    REVIEWED,
    REVIEWED_COLUMN,
    TABLE_COLUMNS,
)

FORMATS = ("pdf", "png")
PAGE_MM = (210.0, 297.0)  # A4, portrait
MARGIN_MM = 15.0
PNG_DPI = 200  # a PNG page: 1653 x 2338 px (A4 at 200 dpi, matplotlib rounds down)
PDF_DPI = 300  # the pictures inside a PDF page

_MM_PER_PT = 25.4 / 72
_RED, _GREEN, _GREY = "#c0392b", "#1e8449", "#555555"
_RENDER_LOCK = threading.Lock()  # matplotlib's font cache and text layout are shared state


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
        lines (dict): :func:`.report_text.cell_report_lines`.
        pictures (dict): :func:`.report.cell_pictures`.
        fmt (str): "pdf" or "png".
    """
    check_format(fmt)
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
        lines (dict): :func:`.report_text.case_report_lines`.
        fmt (str): "pdf" or "png".
    """
    check_format(fmt)
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


def check_format(fmt: str):
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
