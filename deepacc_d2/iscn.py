"""
Numerical karyotypes in ISCN: from class counts to a string and back, and the case-level
karyotype of several cells of one patient.

Only whole-chromosome gains and losses are written (what counting detections can tell);
``iscn_authenticator`` parses each string, and the counts are checked here because that
package accepts a total that disagrees with the listed chromosomes ("46,XY,+21").
"""

from collections import Counter
from typing import Dict, List, Optional, Sequence

from iscn_authenticator import validate_karyotype

from .classes import CLASS_NAMES

AUTOSOMES = CLASS_NAMES[:22]


def karyotype_counts(iscn: str) -> Dict[str, int]:
    """
    Count each class in a numerical karyotype, checking the stated total.

    Args:
        iscn (str): one cell line, e.g. "47,XY,+21".

    Returns:
        dict[str, int]: class name -> copies, for all 24 classes (0 where absent).
    """

    result = validate_karyotype(iscn)
    if not result.valid:
        raise ValueError(f"invalid ISCN {iscn!r}: {result.errors}")
    ast = result.parsed
    counts = Counter({name: 2 for name in AUTOSOMES})
    counts.update(ast.sex_chromosomes)
    for ab in ast.abnormalities:
        if ab.type not in ("+", "-") or ab.chromosome not in CLASS_NAMES:
            raise ValueError(f"{iscn!r}: only whole-chromosome gains/losses are supported")
        counts[ab.chromosome] += 1 if ab.type == "+" else -1
    total = sum(counts.values())
    if total != ast.chromosome_count:
        raise ValueError(f"{iscn!r} states {ast.chromosome_count} chromosomes but lists {total}")
    return {name: counts[name] for name in CLASS_NAMES}


def numerical_karyotype(counts: Dict[str, int]) -> str:
    """
    The ISCN string of a cell's class counts: total, sex chromosomes, then autosomal gains
    (+) and losses (-) in chromosome order, one sign per copy ("48,XY,+21,+21", "45,XX,-13").

    Args:
        counts (dict[str, int]): class name -> copies (missing names count 0).

    Returns:
        str: checked both by ``iscn_authenticator`` and by :func:`karyotype_counts` giving the
        same counts back.

    Raises:
        ValueError: for a cell without any sex chromosome, which ISCN cannot write this way.
    """
    sex = "X" * counts.get("X", 0) + "Y" * counts.get("Y", 0)
    if not sex:
        raise ValueError("no X or Y chromosome found: no numerical karyotype can be written")
    changes = []
    for name in AUTOSOMES:
        delta = counts.get(name, 0) - 2
        changes += [("+" if delta > 0 else "-") + name] * abs(delta)
    iscn = ",".join([str(sum(counts.get(n, 0) for n in CLASS_NAMES)), sex] + changes)
    back = karyotype_counts(iscn)
    assert all(back[n] == counts.get(n, 0) for n in CLASS_NAMES), (iscn, counts)
    return iscn


def gains_and_losses(iscn: str) -> Counter:
    """The whole-chromosome changes of a cell line against the normal karyotype of its sex
    complement: "+21", "-13"; sex chromosome changes are compared with XX (one X or more,
    no Y) or XY (a Y): "+X", "-X", "+Y"."""
    counts = karyotype_counts(iscn)
    normal = {n: 2 for n in AUTOSOMES}
    normal.update({"X": 1, "Y": 1} if counts["Y"] else {"X": 2, "Y": 0})
    changes = Counter()
    for name in CLASS_NAMES:
        delta = counts[name] - normal[name]
        if delta:
            changes[("+" if delta > 0 else "-") + name] = abs(delta)
    return changes


#: What made a case call (:func:`case_karyotype`'s "rule").
CASE_RULES = ("clones", "composite", "normal", "no clone")


def _change_order(change: str):
    """ISCN order of whole-chromosome changes: sex chromosomes first (X, Y), then autosomes
    1..22, gains and losses alike; a loss before a gain of the same chromosome."""
    name = change[1:]
    return (name not in ("X", "Y"), CLASS_NAMES.index(name), change[0] == "+")


def _written(changes: Counter) -> List[str]:
    """The changes one sign per copy, in ISCN order: ["-7", "+21", "+21"]."""
    return [c for c in sorted(changes, key=_change_order) for _ in range(changes[c])]


def _clone_size(changes) -> int:
    """The cells a set of changes must share to make a clone: 2 when it holds a gain, else 3."""
    return 2 if any(c.startswith("+") for c in changes) else 3


def _line_counts(sex: str, part: Counter) -> Dict[str, int]:
    """Class counts of a normal 46,XX or 46,XY cell with the changes ``part``."""
    counts = {name: 2 for name in AUTOSOMES}
    counts.update({"X": 1, "Y": 1} if sex == "XY" else {"X": 2, "Y": 0})
    for change, copies in part.items():
        counts[change[1:]] += copies if change.startswith("+") else -copies
    return counts


def _stemline_and_sidelines(lines: Dict, cells_of: Counter) -> Optional[List[Dict]]:
    """
    A family of related lines as a stemline and its sidelines, or None when that pattern
    does not describe it. One line, the stemline, must be contained in every other (same
    sex chromosomes, a subset of its changes), and each sideline must be a clone of its own:
    beyond every line it contains, the cells that have all its changes (its own and those of
    the lines containing it) are at least 2, or 3 when what it adds are losses alone.

    Args:
        lines (dict): (sex, changes) key -> the line's clonal changes (Counter).
        cells_of (Counter): key -> cells in that line.

    Returns:
        list[dict] or None: the lines as :func:`case_karyotype` gives them, stemline first,
        sidelines by increasing complexity, then size.
    """

    def within(a, b):  # line a is contained in line b
        return a[0] == b[0] and not lines[a] - lines[b]

    stem = min(lines, key=lambda key: (sum(lines[key].values()), key))
    if not all(within(stem, key) for key in lines):
        return None
    for key in lines:
        share = sum(cells_of[other] for other in lines if within(key, other))
        for sub in lines:
            if sub != key and within(sub, key) and share < _clone_size(lines[key] - lines[sub]):
                return None
    result = []
    for key in sorted(lines, key=lambda k: (k != stem, sum(lines[k].values()), -cells_of[k], k)):
        karyotype = numerical_karyotype(_line_counts(key[0], lines[key]))
        if key != stem:  # "idem": the stemline's sex chromosomes and changes
            extra = _written(lines[key] - lines[stem])
            karyotype = ",".join([karyotype.split(",")[0], "idem"] + extra)
        result.append(
            {
                "karyotype": karyotype,
                "cells": cells_of[key],
                "kind": "stemline" if key == stem else "sideline",
                "changes": _written(lines[key]),
            }
        )
    return result


def _composite(lines: Dict, cells_of: Counter) -> Dict:
    """
    A family of related lines as one composite karyotype: the range of its cells' chromosome
    numbers (from their clonal changes), the sex chromosomes (less those lost, as in
    "45,X,-X"), every clonal change any of its cells has, and its cell count.
    """
    sex = Counter({key[0]: 0 for key in lines})
    for key in lines:
        sex[key[0]] += cells_of[key]
    sex = sex.most_common(1)[0][0]
    totals = [sum(_line_counts(key[0], lines[key]).values()) for key in lines]
    every = Counter()
    for part in lines.values():
        every |= part
    changes = _written(every)
    kept = sex
    for change in changes:
        if change in ("-X", "-Y"):
            kept = kept.replace(change[1], "", 1)
    low, high = min(totals), max(totals)
    number = str(low) if low == high else f"{low}~{high}"
    return {
        "karyotype": ",".join([number, kept] + changes),
        "cells": sum(cells_of[key] for key in lines),
        "kind": "composite",
        "changes": changes,
    }


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _rule(lines: Sequence[Dict], clonal: Counter, left_out: int) -> Dict[str, str]:
    """Which rule made the call, and the call in one sentence."""
    abnormal = [line for line in lines if line["kind"] != "normal"]
    normal = sum(line["cells"] for line in lines) - sum(line["cells"] for line in abnormal)
    rest = [f"{_cells(normal)} normal"] if normal else []
    if left_out:
        rest.append(f"{_cells(left_out)} with only non-clonal changes left out")
    if not clonal:
        rule = "normal" if normal else "no clone"
        why = "no change is clonal (a gain needs ≥ 2 cells, a loss ≥ 3)"
        return {"rule": rule, "explanation": f"{why}: " + "; ".join(rest)}
    changes = ", ".join(_written(clonal))
    cells = _cells(sum(line["cells"] for line in abnormal))
    if any(line["kind"] == "composite" for line in abnormal):
        rule = "composite"
        why = (
            f"clonal changes {changes} come in combinations that no stemline and sidelines "
            f"describe: {cells} in a composite karyotype"
        )
    else:
        rule = "clones"
        in_lines = "1 abnormal line" if len(abnormal) == 1 else f"{len(abnormal)} abnormal lines"
        why = (
            f"clonal changes {changes} (a gain in ≥ 2 cells, a loss in ≥ 3): {cells} in {in_lines}"
        )
    return {"rule": rule, "explanation": "; ".join([why] + rest)}


def _no_cell_case() -> Dict:
    """What :func:`case_karyotype` gives for no cell."""
    return {
        "iscn": "",
        "rule": "no clone",
        "explanation": "no cell has a karyotype call",
        "lines": [],
        "clones": [],
        "non_clonal": [],
        "non_clonal_changes": {},
        "modal_count": None,
        "clonal_changes": [],
    }


def _clonal_changes(cells: Counter, changes: Dict[str, Counter]) -> Counter:
    """The clonal copies of each change among ``cells`` (cell karyotype -> cells), given each
    karyotype's ``changes``."""
    # the k-th copy of a change is clonal when enough cells have at least k copies of it
    clonal = Counter()
    for change in {c for found in changes.values() for c in found}:
        with_k = Counter()
        for iscn, n in cells.items():
            for k in range(1, changes[iscn][change] + 1):
                with_k[k] += n
        clonal[change] = max([k for k, n in with_k.items() if n >= _clone_size([change])] or [0])
    return +clonal


def _sort_cells(cells: Counter, changes: Dict[str, Counter], clonal: Counter):
    """
    Put each cell karyotype in the line of its clonal changes, among the normal cells, or
    among those left out (only non-clonal changes).

    Returns:
        lines (dict): (sex, changes) key -> the line's clonal changes (Counter);
        cells_of (Counter): key -> cells in that line;
        normal (Counter): "XX" or "XY" -> normal cells;
        non_clonal (list): (iscn, cells) of the cells left out.
    """
    lines, cells_of, normal, non_clonal = {}, Counter(), Counter(), []
    for iscn, n in cells.items():
        sex = "XY" if karyotype_counts(iscn)["Y"] else "XX"
        part = changes[iscn] & clonal
        if part:
            key = (sex, tuple(_written(part)))
            lines[key] = part
            cells_of[key] += n
        elif changes[iscn]:
            non_clonal.append((iscn, n))
        else:
            normal[sex] += n
    return lines, cells_of, normal, non_clonal


def _families(lines: Dict) -> List[List]:
    """The keys of ``lines`` grouped into families: lines linked by shared changes."""
    families = []
    for key in lines:
        linked = [f for f in families if any(lines[key] & lines[other] for other in f)]
        families = [f for f in families if f not in linked] + [[key] + sum(linked, [])]
    return families


def _case_lines(lines: Dict, cells_of: Counter, normal: Counter) -> List[Dict]:
    """The lines of the case karyotype: each family as a stemline and sidelines or else one
    composite line, largest family first, then the normal lines."""
    written = []
    for family in sorted(_families(lines), key=lambda f: (-sum(cells_of[k] for k in f), min(f))):
        family_lines = {key: lines[key] for key in family}
        written += _stemline_and_sidelines(family_lines, cells_of) or [
            _composite(family_lines, cells_of)
        ]
    for sex, n in sorted(normal.items(), key=lambda kv: (-kv[1], kv[0])):
        written.append({"karyotype": f"46,{sex}", "cells": n, "kind": "normal", "changes": []})
    return written


def _modal_count(cell_iscns: Sequence[str]) -> int:
    """The most frequent chromosome number; a tie goes to the number closest to 46."""
    counts = Counter(int(iscn.split(",")[0]) for iscn in cell_iscns)
    return max(counts.items(), key=lambda kv: (kv[1], -abs(kv[0] - 46)))[0]


def _bracket(line: Dict) -> str:
    """A line's cell count as written after it: "[12]", or "[cp12]" for a composite line."""
    return f"[{'cp' if line['kind'] == 'composite' else ''}{line['cells']}]"


def case_karyotype(cell_iscns: Sequence[str]) -> Dict:
    """
    The karyotype of a case (several cells of one patient) by ISCN's rules for clones:
    clonal changes (a gain in >= 2 cells, a loss in >= 3), each cell counted in the line of its
    clonal changes, stemline and sidelines ("47,XX,+8[10]/48,idem,+21[5]") or else one
    composite line ("45~47,XY,-15,+21[cp10]") per family of related lines, the normal line
    last. docs/karyotype.md ("The case") states the rules.

    Args:
        cell_iscns (list[str]): one numerical karyotype per cell.

    Returns:
        dict:
            "iscn" (str): the case karyotype, "" when no cell line qualifies;
            "rule" (str): what made the call, one of :data:`CASE_RULES`: "clones" (stemlines
            and sidelines), "composite" (a ``cp`` line among them), "normal" (no clonal change,
            normal cells), "no clone" (neither);
            "explanation" (str): the call in one sentence;
            "lines" (list[dict]): each line of "iscn": "karyotype", "cells", "kind"
            ("stemline", "sideline", "composite", "normal"), "changes" (its clonal changes);
            "clones" [(karyotype, cells)]: the same lines as pairs;
            "non_clonal" [(iscn, cells)]: the cells left out, every change of theirs non-clonal;
            "non_clonal_changes" {iscn: [change]}: each cell karyotype with a non-clonal change
            (left out or counted in a line) and those changes;
            "modal_count" (int): the most frequent chromosome number;
            "clonal_changes" [str]: one sign per clonal copy, in ISCN order.
    """
    if not cell_iscns:
        return _no_cell_case()
    cells = Counter(cell_iscns)
    changes = {iscn: gains_and_losses(iscn) for iscn in cells}
    clonal = _clonal_changes(cells, changes)
    lines, cells_of, normal, non_clonal = _sort_cells(cells, changes, clonal)
    written = _case_lines(lines, cells_of, normal)
    return {
        "iscn": "/".join(line["karyotype"] + _bracket(line) for line in written),
        **_rule(written, clonal, sum(n for _, n in non_clonal)),
        "lines": written,
        "clones": [(line["karyotype"], line["cells"]) for line in written],
        "non_clonal": sorted(non_clonal, key=lambda c: (-c[1], c[0])),
        "non_clonal_changes": {
            iscn: _written(changes[iscn] - clonal)
            for iscn in sorted(cells)
            if changes[iscn] - clonal
        },
        "modal_count": _modal_count(cell_iscns),
        "clonal_changes": _written(clonal),
    }
