"""
The crop classifier's runs (:mod:`.crop_training`) side by side: their evaluations read back,
val top-1 accuracy against training CPU-minutes, a markdown table of finished runs;
``tools/crop_classifier_report.py`` prints and draws them.
"""

import json
import os
from typing import Dict, List

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["crop_runs_table", "plot_crop_curves", "read_crop_metrics"]


def read_crop_metrics(run_dir: str) -> List[Dict]:
    """The evaluations of a run (``metrics.jsonl``), in order; a resumed run's repeated
    evaluations of one step keep the last."""
    by_step = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def plot_crop_curves(runs: Dict[str, str], path: str):
    """
    Val top-1 accuracy against training CPU-minutes, one line per run: the picture of
    accuracy per CPU-minute.

    Args:
        runs (dict): label -> run directory.
    """

    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, run_dir in runs.items():
        records = read_crop_metrics(run_dir)
        ax.plot(
            [r["train_seconds"] / 60 for r in records],
            [r["val_top1"] for r in records],
            marker="o",
            markersize=3,
            label=label,
        )
    ax.set_xlabel("training time (CPU-minutes on this machine)")
    ax.set_ylabel("val top-1 accuracy of true-box crops (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def crop_runs_table(run_dirs: List[str]) -> str:
    """A markdown table of finished runs (``summary.json``): shape, epochs, precision,
    training minutes, val accuracy."""
    lines = [
        "| run | crop px | width | epochs | precision | training min | val top-1 | top-2 "
        "| Denver group |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        v = s["val"]
        lines.append(
            f"| {os.path.basename(run_dir.rstrip('/'))} | {s['crop_size']} | {s['width']} | "
            f"{s['epochs']:g} | {s['precision']} | {s['train_seconds'] / 60:.1f} | "
            f"{v['val_top1']:.1f} | {v['val_top2']:.1f} | {v['val_group']:.1f} |"
        )
    return "\n".join(lines) + "\n"
