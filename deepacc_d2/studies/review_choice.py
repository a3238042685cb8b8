"""
Choosing the review flags' thresholds (``TEST.KARYOTYPE.REVIEW_*``) on labelled cells. A cell
goes to a person when any flag fires (:func:`..app.karyotype.cell.review_flags`); the flags
that need no threshold (the count, a class's count, the sex chromosomes, no call) always
count. A set of thresholds is as good as the share of cells it lets pass unreviewed while the
wrong calls it lets pass stay within a tolerance. Each cell is counted and named once; each
tunable flag is then computed at every value of its thresholds (:data:`GRID`), and a set of
thresholds sends a cell when one of its flags fires.
"""

import dataclasses
import itertools
from typing import Dict, List, Sequence

import numpy as np

from ..app.karyotype.cell import KaryotypeRules, cell_record, review_flags
from .karyotype_benchmark import counted_and_matched, truth_call

__all__ = [
    "GRID",
    "choose_thresholds",
    "flag_firing",
    "plot_tradeoff",
    "review_cells",
    "threshold_rows",
]

# per tunable flag, the threshold settings tried; the first of each turns the flag off
GRID = {
    "unsure_names": [{"name_margin": v} for v in (0.0, 0.5, 1.0, 2.0, 4.0)],
    "unsure_sex": [{"sex_margin": v} for v in (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)],
    "low_confidence": [{"low_score": 0.8, "low_score_share": 1.0}]
    + [
        {"low_score": a, "low_score_share": b}
        for a, b in itertools.product((0.5, 0.6, 0.7, 0.8), (0.05, 0.1, 0.2, 0.3))
    ],
    "overlap": [{"overlap_iou": v} for v in (1.01, 0.3, 0.5, 0.7)],
    "within_group_ambiguity": [{"ambiguity_margin": v} for v in (0.0, 0.05, 0.1, 0.2)],
}
OFF = {k: v for settings in GRID.values() for k, v in settings[0].items()}


def flag_firing(detections: Dict, rules: KaryotypeRules) -> Dict:
    """
    One counted cell's flags at every setting of :data:`GRID`.

    Args:
        detections (dict): :func:`..app.karyotype.cell.counted_detections` of the cell.

    Returns:
        dict: "call" (ISCN or None), "fixed" (bool: a flag without threshold fires, or no
        call), and per tunable flag a list of bools, one per setting of :data:`GRID`.
    """
    off = dataclasses.replace(rules, **OFF)
    cell = cell_record(detections, off)
    out = {"call": cell["karyotype"], "fixed": cell["needs_review"]}
    for flag, settings in GRID.items():
        out[flag] = [
            any(
                f["flag"] == flag
                for f in review_flags(detections, cell["counts"], dataclasses.replace(off, **s))
            )
            for s in settings
        ]
    return out


def threshold_rows(firings: Sequence[Dict], exact: Sequence[bool]) -> List[Dict]:
    """
    Every combination of :data:`GRID`'s settings on the cells.

    Args:
        firings: :func:`flag_firing` of each cell.
        exact: whether each cell's call is exactly right.

    Returns:
        list[dict]: "settings" (the rules' fields), "sent" (% of cells sent to review),
        "wrong_not_sent" (% of cells), "right_sent" (% of the exactly called cells sent).
    """
    if not firings:
        return []
    exact = np.asarray(exact, dtype=bool)
    n = len(exact)
    fixed = np.array([f["fixed"] for f in firings], dtype=bool)
    fires = {flag: np.array([f[flag] for f in firings], dtype=bool) for flag in GRID}
    rows = []
    for choice in itertools.product(*(range(len(s)) for s in GRID.values())):
        sent = fixed.copy()
        settings = {}
        for flag, i in zip(GRID, choice):
            sent |= fires[flag][:, i]
            settings.update(GRID[flag][i])
        rows.append(
            {
                "settings": settings,
                "sent": 100.0 * sent.sum() / n,
                "wrong_not_sent": 100.0 * (~exact & ~sent).sum() / n,
                "right_sent": 100.0 * (exact & sent).sum() / max(1, int(exact.sum())),
            }
        )
    return rows


def choose_thresholds(rows: Sequence[Dict], tolerance: float) -> List[Dict]:
    """:func:`threshold_rows` best first: the fewest cells sent to review among those whose
    unsent wrong calls are at most ``tolerance`` % of the cells, then the fewest unsent wrong
    calls."""
    return sorted(
        rows,
        key=lambda r: (r["wrong_not_sent"] > tolerance, r["sent"], r["wrong_not_sent"]),
    )


def review_cells(cells: Sequence[Dict], rules: KaryotypeRules) -> List[Dict]:
    """:func:`flag_firing` of labelled cells (:func:`.karyotype_benchmark.detection_cells`)
    counted and named by ``rules``; each result also holds "exact": the call is the truth's."""
    out = []
    for cell in cells:
        detections, _ = counted_and_matched(cell, rules)
        firing = flag_firing(detections, rules)
        firing["exact"] = firing["call"] == truth_call(cell["gt_classes"])
        out.append(firing)
    return out


KEYS = {
    "name_margin": "REVIEW_NAME_MARGIN",
    "sex_margin": "REVIEW_SEX_MARGIN",
    "low_score": "REVIEW_LOW_SCORE",
    "low_score_share": "REVIEW_LOW_SCORE_SHARE",
    "overlap_iou": "REVIEW_OVERLAP_IOU",
    "ambiguity_margin": "REVIEW_AMBIGUITY_MARGIN",
}


def review_table(ranked: List[Dict], rules: KaryotypeRules, tolerance: float) -> str:
    """Markdown: the chosen thresholds (first of ``ranked``), ``rules``' own and the flags
    without threshold alone, with their config keys."""
    current = {k: getattr(rules, k) for k in KEYS}

    def same(row, settings):
        return all(np.isclose(row["settings"][k], settings[k]) for k in KEYS)

    named = [("chosen", ranked[0])]
    named += [("the config's", r) for r in ranked if same(r, current)][:1]
    named += [("no tunable flag", r) for r in ranked if same(r, OFF)][:1]
    lines = [
        f"Review thresholds: the fewest cells sent with at most {tolerance:g} % of the cells "
        "wrong and not sent.",
        "",
        "| thresholds | "
        + " | ".join(f"`{v}`" for v in KEYS.values())
        + " | sent to review % | wrong, not sent % | exact calls sent % |",
        "|---|" + "---|" * (len(KEYS) + 3),
    ]
    for name, row in named:
        values = " | ".join(f"{row['settings'][k]:g}" for k in KEYS)
        lines.append(
            f"| {name} | {values} | {row['sent']:.1f} | {row['wrong_not_sent']:.1f} | "
            f"{row['right_sent']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_tradeoff(rows: Sequence[Dict], path: str):
    """PNG: for tolerances of 0-10 % the fewest cells sent to review (:func:`choose_thresholds`
    of :func:`threshold_rows`) against the wrong calls let pass; the flags without threshold
    alone as a point."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    best = [choose_thresholds(rows, t)[0] for t in (0, 0.5, 1, 2, 3, 5, 7, 10)]
    off = next(r for r in rows if r["settings"] == OFF)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([r["wrong_not_sent"] for r in best], [r["sent"] for r in best], "o-", label="best")
    ax.plot([off["wrong_not_sent"]], [off["sent"]], "s", label="flags without threshold")
    ax.set_xlabel("cells called wrong and not sent to review %")
    ax.set_ylabel("cells sent to review %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
