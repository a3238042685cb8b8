"""
The reports to sign: their text worked out by hand for a case a person changed on the review
page (the call, the case call, each change from the log, reviewed or not), then each drawn as
a one-page A4 PDF and PNG, served as downloads and written by ``deepacc review --report``.
"""

import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from deepacc_d2.app.cli import main
from deepacc_d2.app.review.log import LOG_NAME
from deepacc_d2.app.review.report_drawing import render_case_report, render_cell_report
from deepacc_d2.app.review.report_text import (
    NOT_REVIEWED,
    REVIEWED,
    SIGNATURE,
    case_report_lines,
    cell_report_lines,
    describe_change,
)
from deepacc_d2.app.review.server import create_app
from deepacc_d2.app.review.store import CaseReview

DATE = "2025-01-02 10:00"
# A4 at 200 dpi: 210 mm / 25.4 * 200 = 1653.5 px, 297 mm -> 2338.6 px (matplotlib rounds down)
PAGE_PX = (1653, 2338)
NO_CLONE_RULE = (
    "Rule: normal: no change is clonal (a gain needs ≥ 2 cells, a loss ≥ 3): 1 cell normal; "
    "1 cell with only non-clonal changes left out"
)
MODEL = [
    "Model: unknown (case.json does not record it)",
    "Counting: top-1 score >= 0.5, NMS 0.7",  # the config's defaults (config.py)
    "Naming: each chromosome by its top class",
]


@pytest.fixture
def changed_case(review_case):
    """The two-cell case after three changes on the review page: cellA's chromosome 0 named 2
    (46,XY,-1,+2); cellB's missing 21 drawn in (46,XY), then cellB marked reviewed. The log's
    times are set to 09:15, 09:16, 09:17 (the clock's would differ from run to run)."""
    client = create_app(str(review_case)).test_client()
    changes = [
        ("cellA", {"version": 0, "action": "class", "index": 0, "class": "2"}),
        (
            "cellB",
            {"version": 0, "action": "add", "bbox_xyxy": [400, 210, 415, 250], "class": "21"},
        ),
        ("cellB", {"version": 1, "action": "reviewed", "reviewed": True}),
    ]
    for cell, change in changes:
        assert client.post(f"/api/cells/{cell}/edit", json=change).status_code == 200
    log = review_case / LOG_NAME
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    for k, entry in enumerate(entries):
        entry["time"] = f"2025-01-02T09:{15 + k}:30+0100"
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return review_case


def pdf_pages(data: bytes) -> int:
    """The PDF's number of pages, each checked to be A4: 210 x 297 mm = 595.28 x 841.89 pt."""
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b", data))  # a page object, not the /Pages tree
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert len(boxes) == pages and all(
        round(float(w), 2) == 595.28 and round(float(h), 2) == 841.89 for w, h in boxes
    )
    return pages


def png_size(data: bytes):
    assert data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data)).size


def test_cell_report_lines(changed_case):
    review = CaseReview(str(changed_case))
    case_lines = [
        "Case karyotype: 46,XY[1]",  # cellB; cellA's -1,+2 are in no other cell
        NO_CLONE_RULE,
        "Cells: 2 read, 2 with a call, 1 reviewed; modal count 46",
    ]
    assert cell_report_lines(review, "cellA", DATE) == {
        "title": "Karyotype report: cell cellA",
        "subtitle": f"Case case; report made {DATE}",
        "status": NOT_REVIEWED,
        "call": "46,XY,-1,+2",
        "sections": {
            "Cell": [
                "Reviewed: NO: not marked reviewed on the review page",
                "Version: 1 (1 change(s) on the review page)",
                "Chromosomes counted: 46; sex chromosomes: XY",
                "Named by a person: 1 of 46",
                f"Image: {changed_case / 'images' / 'cellA.png'} (520 x 260 px)",
                "Review flags: chromosome 1: 1; chromosome 2: 3",
            ],
            "Case": case_lines
            + ["This cell's non-clonal changes (not in the case karyotype): -1, +2"],
            "Model": MODEL,
            "Changes by the reviewer": ["2025-01-02 09:15  v1  chromosome 0: 1 -> 2"],
        },
        "signature": SIGNATURE,
        "footer": f"DeepACC-D2 review: {changed_case}",
    }
    cell_b = cell_report_lines(review, "cellB", DATE)
    assert cell_b["status"] == REVIEWED and cell_b["call"] == "46,XY"
    assert cell_b["sections"]["Cell"][:2] == [
        "Reviewed: yes, marked 2025-01-02 09:17 (version 2)",
        "Version: 2 (2 change(s) on the review page)",
    ]
    assert cell_b["sections"]["Cell"][3] == "Named by a person: 1 of 46"
    assert cell_b["sections"]["Case"] == case_lines  # a normal cell: no non-clonal changes
    assert cell_b["sections"]["Changes by the reviewer"] == [
        "2025-01-02 09:16  v1  chromosome 45 added: 21 at [400, 210, 415, 250]",
        "2025-01-02 09:17  v2  marked reviewed",
    ]


def test_an_untouched_cell_and_a_recorded_model(review_case):
    case_json = review_case / "case.json"
    case_json.write_text(json.dumps({**json.loads(case_json.read_text()), "model": "cil-r18"}))
    lines = cell_report_lines(CaseReview(str(review_case)), "cellB", DATE)
    assert lines["call"] == "45,XY,-21" and lines["status"] == NOT_REVIEWED
    assert lines["sections"]["Changes by the reviewer"] == [
        "none: the cell is as the model called it"
    ]
    assert lines["sections"]["Model"][0] == "Model: cil-r18"


def test_case_report_lines(changed_case):
    assert case_report_lines(CaseReview(str(changed_case)), DATE) == {
        "title": "Karyotype report: case case",
        "subtitle": f"Case case; report made {DATE}",
        "status": NOT_REVIEWED,  # cellA is not reviewed
        "status_detail": "1 of 2 cells reviewed",
        "call": "46,XY[1]",
        "sections": {
            "Case": [
                NO_CLONE_RULE,
                "Cells: 2 read, 2 with a call, 1 reviewed; modal count 46",
                "Non-clonal cells (left out): 46,XY,-1,+2 x1",
                "Non-clonal changes of cellA: -1, +2",
            ],
            "Model": MODEL,
        },
        "table": {
            "columns": ["Cell", "Call", "Count", "Reviewed", "Flags"],
            "rows": [
                ["cellA", "46,XY,-1,+2", "46", "NO", "chromosome 1: 1; chromosome 2: 3"],
                ["cellB", "46,XY", "46", "yes", "none"],
            ],
        },
        "signature": SIGNATURE,
        "footer": f"DeepACC-D2 review: {changed_case}",
    }


@pytest.mark.parametrize(
    "entry, words",
    [
        (
            {"action": "model", "index": 3, "from": "7", "to": "8"},
            "chromosome 3: 7 -> 8 (the model's answer)",
        ),
        (
            {"action": "swap", "index": 1, "other": 4, "from": "9", "to": "X"},
            "chromosomes 1 and 4: classes swapped (9 <-> X)",
        ),
        ({"action": "delete", "index": 2, "deleted": {"class": "Y"}}, "chromosome 2 (Y) deleted"),
        (
            {"action": "restore", "index": 2, "restored": {"class": "Y"}},
            "chromosome 2 (Y) restored",
        ),
        (
            {"action": "box", "index": 0, "from": [1, 2, 3, 4.5], "to": [1, 2, 5, 6]},
            "chromosome 0: box [1, 2, 3, 4.5] -> [1, 2, 5, 6]",
        ),
        (
            {"action": "split", "index": 5, "other": 46, "class": "1"},
            "chromosome 5 (1) split in two (new: 46)",
        ),
        (
            {"action": "merge", "index": 5, "other": 46, "deleted": {"class": "1"}},
            "chromosome 46 (1) merged into 5",
        ),
        ({"action": "reviewed", "reviewed": False}, "reviewed mark taken off"),
        (
            {"action": "class", "index": 0, "from": "1", "to": "2", "reviewed": False},
            "chromosome 0: 1 -> 2 (reviewed mark taken off)",
        ),
    ],
)
def test_describe_change(entry, words):
    assert describe_change(entry) == words


def test_reports_are_served_as_one_page_downloads(changed_case):
    client = create_app(str(changed_case)).test_client()
    for url, name in [
        ("/api/cells/cellA/report", "cell_cellA_report"),
        ("/api/cells/cellB/report", "cell_cellB_report"),
        ("/api/case/report", "case_report"),
    ]:
        pdf, png = client.get(url + ".pdf"), client.get(url + ".png")
        assert pdf.status_code == png.status_code == 200
        assert pdf.mimetype == "application/pdf" and png.mimetype == "image/png"
        assert pdf.headers["Content-Disposition"] == f"attachment; filename={name}.pdf"
        assert pdf_pages(pdf.data) == 1 and png_size(png.data) == PAGE_PX

    def red_in_header(url):
        """Red pixels in the page's top 30 mm: the NOT REVIEWED box (a reviewed one is green)."""
        page = np.asarray(Image.open(io.BytesIO(client.get(url).data)).convert("RGB"))
        top = page[: int(30 / 297 * PAGE_PX[1])].astype(int)
        return int(((top[..., 0] > 150) & (top[..., 1] < 90) & (top[..., 2] < 90)).sum())

    assert red_in_header("/api/cells/cellA/report.png") > 500
    assert red_in_header("/api/cells/cellB/report.png") == 0


def test_unknown_cell_or_format_is_404_and_writes_nothing(changed_case):
    client = create_app(str(changed_case)).test_client()
    before = sorted(os.listdir(changed_case))
    for url in (
        "/api/cells/cellZ/report.pdf",
        "/api/cells/cellA/report.docx",
        "/api/case/report.txt",
        "/api/cells/..%2Fcase/report.pdf",
    ):
        r = client.get(url)
        assert r.status_code == 404 and r.get_json()["error"], url
    assert sorted(os.listdir(changed_case)) == before


def test_a_full_page_stays_one_page_and_a_long_case_pages_on():
    lines = {
        "title": "Karyotype report: cell c",
        "subtitle": "Case x; report made " + DATE,
        "status": NOT_REVIEWED,
        "call": "48,XY,+13,+21",
        "sections": {
            "Cell": ["Reviewed: NO"] * 30,
            "Case": ["a line"],
            "Model": MODEL,
            "Changes by the reviewer": [
                f"2025-01-02 09:15  v{k}  chromosome 0: 1 -> 2" for k in range(40)
            ],
        },
        "signature": SIGNATURE,
        "footer": "DeepACC-D2 review: x",
    }
    pictures = {
        "metaphase": np.zeros((40, 30, 3), np.uint8),
        "karyogram": np.zeros((20, 60, 3), np.uint8),
    }
    assert pdf_pages(render_cell_report(lines, pictures, "pdf")) == 1  # the rest is cut, counted
    assert pdf_pages(render_cell_report(lines, {}, "pdf")) == 1  # no picture
    case = {
        **lines,
        "status_detail": "0 of 60 cells reviewed",
        "sections": {"Case": ["a line"], "Model": MODEL},
        "table": {
            "columns": ["Cell", "Call", "Count", "Reviewed", "Flags"],
            "rows": [[f"cell{k}", "46,XY", "46", "NO", "none"] for k in range(60)],
        },
    }
    # a row is 5.2 mm (8.5 pt, 1.4 lines, 1 mm apart): ~40 to a page, not 60
    assert pdf_pages(render_case_report(case, "pdf")) == 2
    assert png_size(render_case_report(case, "png")) == (PAGE_PX[0], 2 * PAGE_PX[1])


def test_cli_writes_the_reports(changed_case, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["review", str(changed_case), "--report", str(out)]) == 0
    assert sorted(os.listdir(out)) == [
        "case_report.pdf",
        "case_report.png",
        "cell_cellA_report.pdf",
        "cell_cellA_report.png",
        "cell_cellB_report.pdf",
        "cell_cellB_report.png",
    ]  # each written in one step: no temporary file left
    for name in os.listdir(out):
        data = (out / name).read_bytes()
        if name.endswith(".pdf"):
            assert pdf_pages(data) == 1
        else:
            assert png_size(data) == PAGE_PX
    assert "6 report files (the case and 2 cells)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="the one format is coco"):
        main(
            ["review", str(changed_case), "--report", str(tmp_path / "r2"), "--export", "voc", "x"]
        )
    assert not (tmp_path / "r2").exists()  # refused before writing anything
