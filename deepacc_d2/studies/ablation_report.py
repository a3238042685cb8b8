"""
The report of the Table 1 study (:mod:`.ablation`): mean ± std over seeds, the paired (f) - (a)
and (f) - RetinaNet differences with their t intervals, a picture of every seed, and the
generated part of docs/studies/ablation.md.
"""

import os
from typing import Dict

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from .ablation import BRANCH_STATS, RETINANET, row_name
from .table1 import METRICS

__all__ = ["markdown", "plot_table", "summarize", "write_generated"]


def summarize(results: Dict, rows, seeds) -> Dict:
    """Per row and metric: mean, standard deviation (n - 1) and the values by seed; and the
    paired differences (f) - (a) and (f) - RetinaNet by seed with their 95 % t intervals."""
    table = {
        row: {
            m: {
                "values": [results[row, s][m] for s in seeds],
                "mean": float(np.mean([results[row, s][m] for s in seeds])),
                "std": float(np.std([results[row, s][m] for s in seeds], ddof=1)),
            }
            for m in METRICS
        }
        for row in rows
    }
    return {
        "table": table,
        "paired_f_minus_a": _paired(results, rows, seeds, "f", "a"),
        "paired_f_minus_r": _paired(results, rows, seeds, "f", RETINANET),
    }


def _paired(results: Dict, rows, seeds, x: str, y: str) -> Dict:
    """Row x - row y by seed, per metric: the differences, their mean and 95 % t interval
    ({} unless both rows ran on 2 seeds or more)."""
    if x not in rows or y not in rows or len(seeds) < 2:
        return {}
    paired = {}
    for m in METRICS:
        diff = np.array([results[x, s][m] - results[y, s][m] for s in seeds])
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
        paired[m] = {
            "diff": diff.tolist(),
            "mean": float(diff.mean()),
            "ci95": [float(diff.mean() - half), float(diff.mean() + half)],
        }
    return paired


def plot_table(summary: Dict, path: str):
    """One panel per metric: each seed's value as a point, the mean as a bar."""
    fig = Figure(figsize=(12, 3.4))
    FigureCanvasAgg(fig)
    rows = list(summary["table"])
    for ax, m in zip(fig.subplots(1, len(METRICS)), METRICS):
        means = [summary["table"][r][m]["mean"] for r in rows]
        ax.bar(range(len(rows)), means, color="#9ecae1", edgecolor="#3182bd")
        for i, r in enumerate(rows):
            values = summary["table"][r][m]["values"]
            ax.plot([i] * len(values), values, "k.", ms=5)
        ax.set_xticks(range(len(rows)), ["Retina" if r == RETINANET else f"({r})" for r in rows])
        lo = min(min(summary["table"][r][m]["values"]) for r in rows)
        hi = max(max(summary["table"][r][m]["values"]) for r in rows)
        ax.set_ylim(max(0, lo - 0.15 * (hi - lo + 1)), hi + 0.15 * (hi - lo + 1))
        ax.set_title(m + (" (lower is better)" if m == "AER" else ""), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(summary: Dict, results: Dict, rows, seeds, meta: Dict) -> str:
    """The generated part of docs/studies/ablation.md: the table (mean ± std over seeds), the paired
    (f) - (a) difference, every run, the branch statistics, and how it was made."""
    lines = [
        f"`{meta['command']}` — {meta['minutes']:.0f} min on {meta['machine']}; "
        f"{meta['versions']}."
        + (
            f" {meta['runs']} runs; the command keeps each run's result in --out and, run again "
            "with the same setting, trains only the runs missing there."
            if meta.get("reused")
            else ""
        ),
        "",
        "| row | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for row in rows:
        cells = [
            f"{summary['table'][row][m]['mean']:.1f} ± {summary['table'][row][m]['std']:.1f}"
            for m in METRICS
        ]
        lines.append(f"| {row_name(row)} | " + " | ".join(cells) + " |")
    for key, pair in (("paired_f_minus_a", "(f) − (a)"), ("paired_f_minus_r", "(f) − RetinaNet")):
        if summary[key]:
            lines += [
                "",
                f"Paired by seed, {pair} (mean, 95 % t interval over {len(seeds)} seeds): "
                + "; ".join(
                    f"{m} {p['mean']:+.2f} [{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]"
                    for m, p in summary[key].items()
                )
                + ".",
            ]
    lines += [
        "",
        "Every run (mAP / mAPmax / Acc / AER; training fg accuracy of the final scores, of the "
        "margin branch, local-center fraction and purity over the last fifth of training):",
        "",
        "| row | seed | mAP | mAPmax | Acc | AER | fg acc | margin fg acc | centers | purity "
        "| train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for seed in seeds:
            r = results[row, seed]
            branch = [r.get(k) for k in BRANCH_STATS]
            lines.append(
                f"| {'RetinaNet' if row == RETINANET else f'({row})'} | {seed} | "
                + " | ".join(f"{r[m]:.1f}" for m in METRICS)
                + " | "
                + " | ".join("–" if v is None else f"{v:.2f}" for v in branch)
                + f" | {r['train_s']:.0f} |"
            )
    return "\n".join(lines) + "\n"


GENERATED_BEGIN = "<!-- generated by tools/ablation.py: begin -->"
GENERATED_END = "<!-- generated by tools/ablation.py: end -->"


def write_generated(path: str, text: str):
    """Put ``text`` between the generated markers of ``path`` (created with just them when
    missing); what is written outside the markers stays."""
    doc = f"{GENERATED_BEGIN}\n{GENERATED_END}\n"
    if os.path.isfile(path):
        with open(path) as f:
            doc = f.read()
    if GENERATED_BEGIN not in doc or GENERATED_END not in doc:
        raise ValueError(f"{path}: no {GENERATED_BEGIN} ... {GENERATED_END} section to fill")
    head, rest = doc.split(GENERATED_BEGIN, 1)
    _, tail = rest.split(GENERATED_END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{GENERATED_BEGIN}\n{text}{GENERATED_END}{tail}")
