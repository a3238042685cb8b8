"""
The case karyotype by ISCN's rules for clones (docs/karyotype.md, "The case"): hand-worked
cases of mosaics, stemlines and sidelines, composite karyotypes, non-clonal cells, and the
case summary that writes them.
"""

from deepacc_d2.app.karyotype import case_karyotype
from deepacc_d2.app.karyotype.case_files import case_summary, summary_text


def test_mosaic_abnormal_line_first_normal_line_last():
    # +21 is in 12 cells (a gain needs 2): one clone of 12; the 8 normal cells are the normal
    # line, written last.
    case = case_karyotype(["47,XX,+21"] * 12 + ["46,XX"] * 8)
    assert case["iscn"] == "47,XX,+21[12]/46,XX[8]"
    assert case["rule"] == "clones" and case["clonal_changes"] == ["+21"]
    assert case["lines"][0] == {
        "karyotype": "47,XX,+21",
        "cells": 12,
        "kind": "stemline",
        "changes": ["+21"],
    }
    assert case["non_clonal"] == [] and case["non_clonal_changes"] == {}


def test_gain_in_two_cells_is_clonal_loss_in_two_is_not():
    # +8 in 2 cells: a clone. -8 in 2 cells: a loss needs 3, so both cells are left out and
    # the case is the 8 normal cells.
    assert case_karyotype(["47,XY,+8"] * 2 + ["46,XY"] * 8)["iscn"] == "47,XY,+8[2]/46,XY[8]"
    case = case_karyotype(["45,XY,-8"] * 2 + ["46,XY"] * 8)
    assert case["iscn"] == "46,XY[8]" and case["rule"] == "normal"
    assert case["non_clonal"] == [("45,XY,-8", 2)]
    # a third cell with -8 makes the loss clonal
    assert case_karyotype(["45,XY,-8"] * 3 + ["46,XY"] * 8)["iscn"] == "45,XY,-8[3]/46,XY[8]"


def test_single_non_clonal_cell_is_listed_not_written():
    # -7 in one cell of ten: not clonal; the case is the 9 normal cells, the cell listed apart.
    case = case_karyotype(["45,XX,-7"] + ["46,XX"] * 9)
    assert case["iscn"] == "46,XX[9]" and case["rule"] == "normal"
    assert case["non_clonal"] == [("45,XX,-7", 1)]
    assert case["non_clonal_changes"] == {"45,XX,-7": ["-7"]}
    assert "1 cell with only non-clonal changes left out" in case["explanation"]


def test_all_normal_cells():
    case = case_karyotype(["46,XY"] * 6)
    assert case["iscn"] == "46,XY[6]" and case["rule"] == "normal"
    assert case["lines"] == [{"karyotype": "46,XY", "cells": 6, "kind": "normal", "changes": []}]


def test_no_clone_and_no_normal_cell():
    # three cells, each with its own single change: nothing is clonal and nothing is normal
    case = case_karyotype(["45,XY,-7", "47,XY,+8", "45,XY,-13"])
    assert case["iscn"] == "" and case["rule"] == "no clone"
    assert [n for _, n in case["non_clonal"]] == [1, 1, 1]
    assert case_karyotype([])["rule"] == "no clone"


def test_cell_with_an_extra_non_clonal_change_counts_in_its_clone():
    # The 13th +21 cell also lacks a 7 (in no other cell: non-clonal). It counts in the +21
    # clone, written without -7: [13], not [12]; the cell is listed with its -7.
    case = case_karyotype(["47,XX,+21"] * 12 + ["46,XX,-7,+21"] + ["46,XX"] * 8)
    assert case["iscn"] == "47,XX,+21[13]/46,XX[8]"
    assert case["non_clonal"] == []  # counted, not left out
    assert case["non_clonal_changes"] == {"46,XX,-7,+21": ["-7"]}


def test_stemline_then_sidelines_with_idem():
    # +8 in all 15 abnormal cells: the stemline 47,XX,+8 (10 cells). 5 of them also have +21,
    # a gain in 5 >= 2 cells: a sideline, written against the stemline as 48,idem,+21.
    case = case_karyotype(["47,XX,+8"] * 10 + ["48,XX,+8,+21"] * 5 + ["46,XX"] * 5)
    assert case["iscn"] == "47,XX,+8[10]/48,idem,+21[5]/46,XX[5]"
    assert [line["kind"] for line in case["lines"]] == ["stemline", "sideline", "normal"]
    # a second copy of 21 in 2 cells is a clonal change of its own: tetrasomy as a sideline
    case = case_karyotype(["47,XY,+21"] * 3 + ["48,XY,+21,+21"] * 2)
    assert case["iscn"] == "47,XY,+21[3]/48,idem,+21[2]"
    assert case["clonal_changes"] == ["+21", "+21"]


def test_unrelated_clones_largest_first():
    # -7 (5 cells) and +8 (3 cells) are in no cell together: two unrelated clones, the
    # larger first, then the normal line.
    case = case_karyotype(["47,XX,+8"] * 3 + ["45,XX,-7"] * 5 + ["46,XX"] * 2)
    assert case["iscn"] == "45,XX,-7[5]/47,XX,+8[3]/46,XX[2]"
    assert [line["kind"] for line in case["lines"]] == ["stemline", "stemline", "normal"]


def test_composite_when_no_stemline_describes_the_combinations():
    # -15 (6 cells) and +21 (7 cells) are clonal, in three combinations: -15 alone, +21
    # alone, both. Neither single line is in the other, so no stemline contains all three:
    # one composite karyotype of the 10 cells, numbers 45 (-15) to 47 (+21), then normal.
    cells = ["47,XY,+21"] * 4 + ["45,XY,-15"] * 3 + ["46,XY,-15,+21"] * 3 + ["46,XY"] * 2
    case = case_karyotype(cells)
    assert case["iscn"] == "45~47,XY,-15,+21[cp10]/46,XY[2]"
    assert case["rule"] == "composite"
    assert case["lines"][0]["kind"] == "composite" and case["lines"][0]["cells"] == 10
    # +8 is a stemline (13 cells) and +13, +21 are clonal (2 cells each), but the one cell
    # with both is no clone of its own (1 < 2 cells): no stemline/sideline pattern fits, so
    # the composite lists every clonal change, numbers 47 to 49.
    cells = ["47,XX,+8"] * 10 + ["48,XX,+8,+13", "48,XX,+8,+21", "49,XX,+8,+13,+21"]
    assert case_karyotype(cells)["iscn"] == "47~49,XX,+8,+13,+21[cp13]"


def test_losses_from_missed_detections_make_one_composite_line():
    # 24 cells of a female case, many with chromosomes missed in different combinations:
    # -11 in 1+1+1+2 = 5 cells, -15 in 1+1+2+2+1 = 7, -19 in 1+1+2+2 = 6, -22 in 1+1+2 = 4:
    # each loss is clonal (>= 3 cells), -7 and -3 (1 cell each) are not. The cells' clonal
    # changes come in 8 combinations linked by shared losses, none contained in all the
    # others: one composite line of the 14 cells with clonal losses (the -7,-15 cell counts
    # for its -15), numbers 42 to 45; the 45,XX,-3 cell is left out; 9 normal cells last.
    cells = (
        ["42,XX,-11,-15,-19,-22", "43,XX,-11,-15,-19"]
        + ["44,XX,-15,-19"] * 2
        + ["44,XX,-11,-22"]
        + ["45,XX,-11"] * 2
        + ["45,XX,-15"] * 2
        + ["45,XX,-19"] * 2
        + ["45,XX,-22"] * 2
        + ["44,XX,-7,-15", "45,XX,-3"]
        + ["46,XX"] * 9
    )
    assert len(cells) == 24
    case = case_karyotype(cells)
    assert case["iscn"] == "42~45,XX,-11,-15,-19,-22[cp14]/46,XX[9]"
    assert case["rule"] == "composite"
    assert case["non_clonal"] == [("45,XX,-3", 1)]
    assert case["non_clonal_changes"] == {"44,XX,-7,-15": ["-7"], "45,XX,-3": ["-3"]}


def record(karyotype):
    """A cell's record as the case summary reads it."""
    total = int(karyotype.split(",")[0])
    return {"karyotype": karyotype, "total": total, "needs_review": False, "flags": []}


def test_case_summary_names_the_rule_and_the_non_clonal_cells():
    cells = {f"c{i}.png": record("47,XX,+21") for i in range(3)}
    cells["odd.png"] = record("45,XX,-7")
    cells["normal.png"] = record("46,XX")
    summary = case_summary(cells, {})
    assert summary["karyotype"] == "47,XX,+21[3]/46,XX[1]" and summary["rule"] == "clones"
    assert summary["non_clonal_cells"] == {"odd.png": ["-7"]}
    text = summary_text(summary)
    assert "Case karyotype: 47,XX,+21[3]/46,XX[1]\nRule: clones: clonal changes +21" in text
    assert "Non-clonal cells (left out): 45,XX,-7 x1" in text
    assert "  odd.png: -7" in text
