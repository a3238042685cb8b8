"""
A training's own logs, as the CIL recipe and the learning-curve study read them: detectron2's
``metrics.json`` and the "Total training time" line of ``log.txt``, and the learning curve
drawn from them.
"""

import json
import os
import re

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .table1 import METRICS_WITH_AP50

__all__ = ["logged_training_seconds", "plot_learning_curve", "read_metrics_log"]


def read_metrics_log(model_dir):
    """detectron2's metrics.json (one json per line) -> list of dicts."""
    rows = []
    path = os.path.join(model_dir, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def logged_training_seconds(model_dir):
    """detectron2's "Total training time: H:MM:SS" from the training log (None if absent)."""
    path = os.path.join(model_dir, "log.txt")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        found = re.findall(r"Total training time: (?:(\d+) days?, )?(\d+):(\d+):(\d+)", f.read())
    if not found:
        return None
    d, h, m, s = found[-1]
    return ((int(d or 0) * 24 + int(h)) * 60 + int(m)) * 60 + int(s)


def plot_learning_curve(rows, final, final_iter, path):
    """Training fg accuracy and the periodic val metrics against the iteration."""
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    train = [
        (r["iteration"], r["fast_rcnn/fg_cls_accuracy"])
        for r in rows
        if "fast_rcnn/fg_cls_accuracy" in r
    ]
    if train:
        its, acc = zip(*train)
        ax1.plot(its, [100 * a for a in acc], lw=0.8)
    ax1.set(title="training: fg classification accuracy (%)", xlabel="iteration", ylim=(0, 100))
    rates = [(r["iteration"], r["lr"]) for r in rows if "lr" in r]
    if rates:  # the schedule, warm restarts included
        ax_lr = ax1.twinx()
        ax_lr.plot(*zip(*rates), color="gray", lw=0.8, ls=":")
        ax_lr.set_ylabel("learning rate (dotted)")
        ax_lr.set_ylim(bottom=0)
    evals = [(r["iteration"], r) for r in rows if "karyotype/mAP" in r]
    points = [(i, {k: r.get(f"karyotype/{k}") for k in METRICS_WITH_AP50}) for i, r in evals]
    if final and (not points or points[-1][0] < final_iter - 1):
        points.append((final_iter, final))
    for k, style in zip(METRICS_WITH_AP50, ["o-", "s-", "^-", "D-", "v--"]):
        xs = [i for i, m in points if m.get(k) is not None]
        ax2.plot(xs, [m[k] for i, m in points if m.get(k) is not None], style, label=k)
    ax2.set(title="cil24_val", xlabel="iteration", ylim=(0, 100))
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
