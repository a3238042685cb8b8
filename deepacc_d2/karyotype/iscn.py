"""
Numerical karyotypes in ISCN: from class counts to a string and back, and the case-level
karyotype of several cells of one patient.

Only whole-chromosome gains and losses are written (what counting detections can tell);
``iscn_authenticator`` parses each string, and the counts are checked here because that
package accepts a total that disagrees with the listed chromosomes ("46,XY,+21").
"""

from collections import Counter
from typing import Dict, Sequence

from iscn_authenticator import validate_karyotype

from ..classes import CLASS_NAMES

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


def case_karyotype(cell_iscns: Sequence[str]) -> Dict:
    """
    The karyotype of a case (several cells of one patient), by the ISCN clonality rule: a
    gain is clonal when at least 2 cells have it, a loss when at least 3 cells have it.

    Cells whose every change is clonal form the clones (grouped by their string); cells with a
    non-clonal change are left out of the case karyotype and counted apart. Clones are listed
    with their cell counts in brackets, the largest abnormal clone first and the normal cell
    line last: "47,XY,+21[18]/46,XY[2]".

    Args:
        cell_iscns (list[str]): one numerical karyotype per cell.

    Returns:
        dict: "iscn" (str, "" when no cell line qualifies), "clones" [(iscn, cells)],
        "non_clonal" [(iscn, cells)], "modal_count" (int), "clonal_changes" [str].
    """
    if not cell_iscns:
        return {
            "iscn": "",
            "clones": [],
            "non_clonal": [],
            "modal_count": None,
            "clonal_changes": [],
        }
    changes = {iscn: gains_and_losses(iscn) for iscn in set(cell_iscns)}
    cells_with = Counter()
    for iscn in cell_iscns:
        cells_with.update(set(changes[iscn]))
    clonal = {c for c, n in cells_with.items() if n >= (2 if c.startswith("+") else 3)}
    by_line = Counter(cell_iscns)
    clones = [(iscn, n) for iscn, n in by_line.items() if set(changes[iscn]) <= clonal]
    non_clonal = [(iscn, n) for iscn, n in by_line.items() if not set(changes[iscn]) <= clonal]
    # abnormal clones by size (then string, for a stable order), normal lines last
    clones.sort(key=lambda c: (not changes[c[0]], -c[1], c[0]))
    counts = Counter(int(iscn.split(",")[0]) for iscn in cell_iscns)
    modal = max(counts.items(), key=lambda kv: (kv[1], -abs(kv[0] - 46)))[0]
    return {
        "iscn": "/".join(f"{iscn}[{n}]" for iscn, n in clones),
        "clones": clones,
        "non_clonal": sorted(non_clonal, key=lambda c: (-c[1], c[0])),
        "modal_count": modal,
        "clonal_changes": sorted(clonal),
    }
