"""
From detections to a karyotype: ISCN calls and review flags on hand-built detection sets, the
case (clonality) rule, the karyogram's slots, and a folder with bad files.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

import deepacc_d2  # noqa: F401  (compatibility fixes, registration)
from deepacc_d2.app.case import output_stems
from deepacc_d2.app.config import add_application_config
from deepacc_d2.app.karyotype import case_karyotype, karyotype_counts, numerical_karyotype
from deepacc_d2.app.karyotype.cell import KaryotypeRules, cell_record
from deepacc_d2.app.karyotype.karyogram import draw_karyogram
from deepacc_d2.classes import CLASS_NAMES, NUM_CLASSES
from deepacc_d2.data.images import read_metaphase

from detectron2.config import get_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rules():
    cfg = get_cfg()
    add_application_config(cfg)
    return KaryotypeRules.from_config(cfg)


def cell(names, score=0.99, second=None):
    """Counted detections of a cell: one 10x30 box per chromosome on a grid, confident calls
    (``second``: {index: (class name, score)} gives a detection a runner-up class)."""
    n = len(names)
    boxes = np.array(
        [
            [40.0 * (i % 12), 50.0 * (i // 12), 40.0 * (i % 12) + 10, 50.0 * (i // 12) + 30]
            for i in range(n)
        ]
    ).reshape(-1, 4)
    classes = np.array([CLASS_NAMES.index(c) for c in names], dtype=np.int64)
    scores = np.full(n, score)
    class_scores = np.zeros((n, NUM_CLASSES))
    class_scores[np.arange(n), classes] = scores
    for i, (name, s) in (second or {}).items():
        class_scores[i, CLASS_NAMES.index(name)] = s
    return {
        "boxes": boxes,
        "classes": classes,
        "scores": scores,
        "class_scores": class_scores,
        "margins": np.full(n, np.inf),  # named one by one
    }


def normal(sex):
    return [c for c in CLASS_NAMES[:22] for _ in range(2)] + list(sex)


def flags_of(record):
    return sorted(f["flag"] for f in record["flags"])


@pytest.mark.parametrize(
    "names, iscn",
    [
        (normal("XX"), "46,XX"),
        (normal("XY"), "46,XY"),
        (normal("XY") + ["21"], "47,XY,+21"),
        (normal("X"), "45,X"),
        (normal("XXY"), "47,XXY"),
        (normal("XY") + ["13", "21"], "48,XY,+13,+21"),
    ],
)
def test_calls(names, iscn):
    record = cell_record(cell(names), rules())
    assert record["karyotype"] == iscn
    assert record["total"] == len(names) and record["counts"]["1"] == 2
    # the call's counts are the detected counts (checked beyond iscn_authenticator)
    assert karyotype_counts(iscn) == record["counts"]
    normal_cell = iscn in ("46,XX", "46,XY")
    assert record["needs_review"] == (not normal_cell)


def test_missing_chromosome_is_flagged():
    names = normal("XY")
    names.remove("13")
    record = cell_record(cell(names), rules())
    assert record["karyotype"] == "45,XY,-13"
    assert flags_of(record) == ["class_count", "count"]
    assert any("chromosome 13: 1" == f["message"] for f in record["flags"])


def test_false_positive_47_is_flagged():
    # 46,XY found, plus a false 21 lying on the first chromosome 1: the call says 47,XY,+21,
    # and the flags say why a person must look: count, class 21 with 3, overlapping boxes.
    detections = cell(normal("XY") + ["21"])
    detections["boxes"][-1] = detections["boxes"][0] + [1, 2, 1, 2]
    record = cell_record(detections, rules())
    assert record["karyotype"] == "47,XY,+21"
    assert flags_of(record) == ["class_count", "count", "overlap"]
    overlap = next(f for f in record["flags"] if f["flag"] == "overlap")
    assert overlap["detections"] == [0, 46]


def test_low_confidence_and_within_group_ambiguity():
    # 6 of 46 calls at 0.6 (> 10 %); one 21 whose runner-up 22 (same group G) is 0.05 behind.
    detections = cell(normal("XX"), second={40: ("22", 0.94)})
    detections["scores"][:6] = 0.6
    record = cell_record(detections, rules())
    assert record["karyotype"] == "46,XX"
    assert flags_of(record) == ["low_confidence", "within_group_ambiguity"]
    assert record["detections"][40]["top3"][:2] == [["21", 0.99], ["22", 0.94]]


def test_no_sex_chromosome_gives_no_call():
    record = cell_record(cell(normal("")), rules())
    assert record["karyotype"] is None and record["needs_review"]


def test_numerical_karyotype_round_trip_and_bad_totals():
    counts = {n: 2 for n in CLASS_NAMES[:22]}
    counts.update({"X": 1, "Y": 1, "21": 4, "13": 1})
    assert numerical_karyotype(counts) == "47,XY,-13,+21,+21"  # 44 - 1 + 2 + XY
    with pytest.raises(ValueError, match="states 46"):
        karyotype_counts("46,XY,+21")  # iscn_authenticator alone accepts it


def test_case_clonality_rule():
    # A mosaic: 18 trisomy-21 cells and 2 normal ones.
    case = case_karyotype(["47,XY,+21"] * 18 + ["46,XY"] * 2)
    assert case["iscn"] == "47,XY,+21[18]/46,XY[2]" and case["modal_count"] == 47
    # A gain is clonal in 2 cells, not in 1; a loss needs 3 cells.
    case = case_karyotype(["47,XX,+8"] * 2 + ["47,XX,+21"] + ["45,XX,-7"] * 2 + ["46,XX"] * 5)
    assert case["iscn"] == "47,XX,+8[2]/46,XX[5]"
    assert case["non_clonal"] == [("45,XX,-7", 2), ("47,XX,+21", 1)]
    case = case_karyotype(["45,XX,-7"] * 3 + ["46,XX"])
    assert case["iscn"] == "45,XX,-7[3]/46,XX[1]"
    # sex chromosome changes: 45,X in 3 cells is a clone beside 46,XX
    assert case_karyotype(["45,X"] * 3 + ["46,XX"] * 7)["iscn"] == "45,X[3]/46,XX[7]"


def rods_image(names, gray_of):
    """A light image with one dark vertical rod (8 x 40 px, a waist in the middle third) per
    chromosome, its gray level given by class; returns the image and the rods' boxes."""
    image = np.full((400, 600), 230, np.uint8)
    boxes = []
    for i, name in enumerate(names):
        x, y = 20 + 50 * (i % 11), 20 + 90 * (i // 11)
        image[y : y + 40, x : x + 8] = gray_of[name]
        image[y + 12 : y + 14, x : x + 2] = 230  # the constriction: centromere, p arm on top
        image[y + 12 : y + 14, x + 6 : x + 8] = 230
        boxes.append([x - 3, y - 3, x + 11, y + 43])
    return image, np.array(boxes, float)


def test_karyogram_puts_each_chromosome_in_its_slot():
    names = ["1", "1", "2", "21", "21", "21", "X"]  # 2 absent (but one), 21 overfull, Y absent
    gray_of = {"1": 20, "2": 60, "21": 100, "X": 140}
    image, boxes = rods_image(names, gray_of)
    classes = np.array([CLASS_NAMES.index(n) for n in names])
    scores = np.array([0.99, 0.99, 0.99, 0.99, 0.99, 0.6, 0.99])
    picture, slots, places = draw_karyogram(image, boxes, classes, scores, low_score=0.8)
    gray = picture.astype(int).mean(axis=2)
    for name, level in gray_of.items():
        x0, y0, x1, y1 = slots[name]
        region = gray[y0:y1, x0:x1]
        # the slot holds rods of its class's gray (resized: the level within a few units)
        assert np.abs(region - level).min() <= 3, name
        others = [v for n, v in gray_of.items() if n != name]
        assert not any((np.abs(region - v) <= 1).sum() > 20 for v in others), name
    # the empty slots hold no chromosome pixel (nothing darker than the labels' colours)
    for name in ("3", "22", "Y"):
        x0, y0, x1, y1 = slots[name]
        assert gray[y0 + 3 : y1 - 20, x0 + 3 : x1 - 3].min() > 200, name
    # empty and overfull slots are outlined red (no Y is no error); the low-confidence 21 gets
    # an orange frame
    red = (picture[..., 0] > 200) & (picture[..., 1] < 60) & (picture[..., 2] < 60)
    orange = (
        (picture[..., 0] > 230)
        & (np.abs(picture[..., 1].astype(int) - 130) < 20)
        & (picture[..., 2] < 40)
    )
    for name, marked in (("3", True), ("21", True), ("1", False), ("X", False), ("Y", False)):
        x0, y0, x1, y1 = slots[name]
        assert red[y0 : y1 + 1, x0 : x1 + 1].any() == marked, name
    x0, y0, x1, y1 = slots["21"]
    assert orange[y0:y1, x0:x1].any()
    # three 21s sit side by side: their slot is wider than a pair's
    assert slots["21"][2] - slots["21"][0] > slots["1"][2] - slots["1"][0]
    # each chromosome's place lies in its class's slot and holds its rod, the places apart
    for (x0, y0, x1, y1), name in zip(places, names):
        sx0, sy0, sx1, sy1 = slots[name]
        assert sx0 <= x0 < x1 <= sx1 and sy0 <= y0 < y1 <= sy1, name
        assert np.abs(gray[y0:y1, x0:x1] - gray_of[name]).min() <= 3, name
    for a, (ax0, ay0, ax1, ay1) in enumerate(places):
        for bx0, by0, bx1, by1 in places[a + 1 :]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


def test_read_metaphase_odd_files(tmp_path):
    ramp = (np.arange(200 * 300).reshape(200, 300) % 2000 + 1000).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "cam16.tif")  # 16-bit gray, values 1000..2999
    image = read_metaphase(str(tmp_path / "cam16.tif"))
    assert image.shape == (200, 300, 3) and image.min() == 0 and image.max() == 255
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_metaphase(str(tmp_path / "rgba.png"))[0, 0].tolist() == [0, 0, 200]  # BGR
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ValueError, match="tiny.png.*smaller than"):
        read_metaphase(str(tmp_path / "tiny.png"))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg: cannot read"):
        read_metaphase(str(tmp_path / "broken.jpg"))


def test_output_names_are_unique():
    names = output_stems(["a/cell.jpg", "a/cell.png", "b/cell.png", "a/other.tif"])
    assert len(set(names.values())) == 4 and names["a/other.tif"] == "other"


@pytest.mark.slow
def test_karyotype_folder_with_bad_files(tmp_path):
    from deepacc_d2.app.karyotype.case_files import karyotype_files

    folder = tmp_path / "case"
    folder.mkdir()
    image, _ = rods_image(["1", "2"], {"1": 30, "2": 60})
    Image.fromarray(image).save(folder / "cell.png")
    Image.fromarray(image).save(folder / "cell.jpg")
    Image.fromarray((image.astype(np.uint16) * 200)).save(folder / "cell16.tif")
    Image.fromarray(np.dstack([image] * 3 + [np.full_like(image, 255)])).save(folder / "rgba.png")
    Image.fromarray(image[:20, :20]).save(folder / "tiny.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    cfg = get_cfg()
    add_application_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"))
    cfg.MODEL.WEIGHTS = ""  # an untrained model: the plumbing is under test, not the model
    cfg.TEST.KARYOTYPE.SCORE_THRESH = 0.0
    out = tmp_path / "out"
    summary = karyotype_files(cfg, [str(folder)], str(out))
    assert summary["cells_read"] == 4
    assert sorted(os.path.basename(f) for f in summary["failed"]) == ["broken.jpg", "tiny.png"]
    written = sorted(os.listdir(out))
    for stem in ("cell_png", "cell_jpg", "cell16", "rgba"):
        assert f"{stem}_karyogram.png" in written and f"{stem}_karyotype.json" in written
    with open(out / "case.json") as f:
        assert json.load(f)["failed"] == summary["failed"]
    text = (out / "case.txt").read_text()
    assert "broken.jpg: cannot read" in text and "tiny.png" in text
