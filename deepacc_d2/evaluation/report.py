"""
What :class:`.KaryotypeEvaluator` shows and writes of its results: the console tables, the
files (csv, json) and the plots.
"""

import csv
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tabulate import tabulate

from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

from ..classes import CLASS_NAMES, DENVER_GROUPS, NUM_CLASSES, denver_group_of

__all__ = ["log_report", "write_report"]

logger = logging.getLogger(__name__)

_GROUP_NAMES = list(DENVER_GROUPS)


def log_report(metrics: Dict, details: Dict, dataset_name: Optional[str]):
    """
    Log the main metrics and the per-class and per-group table.

    Args:
        metrics, details: as :func:`.metrics.compute_karyotype_metrics` returns them.
        dataset_name (str or None): named in the log.
    """
    main = OrderedDict(
        (k, metrics[k])
        for k in (
            "mAP",
            "mAPmax",
            "Acc",
            "AER",
            "COCO_AP",
            "COCO_AP50",
            "COCO_AP75",
            "mAP101",
            "InGroupErr",
            "CountExact",
            "CountMAE",
        )
    )
    logger.info(
        f"Karyotype metrics on {dataset_name or 'the given images'} "
        f"(IoU {details['thresholds']['iou']}, score {details['thresholds']['score']},"
        f" NMS {details['thresholds']['nms']}): \n" + create_small_table(main)
    )
    logger.info(
        "TP {TP:.0f}, FP {FP:.0f}, FN {FN:.0f}, {num_pred:.0f} predictions, "
        "{num_gt:.0f} ground truths".format(**metrics)
    )
    rows = []
    for name in CLASS_NAMES:
        counts = details["per_class"][name]
        rows.append(
            [
                name,
                denver_group_of(CLASS_NAMES.index(name)),
                counts["num_gt"],
                counts["num_pred"],
                metrics[f"AP-{name}"],
                metrics[f"APmax-{name}"],
                metrics[f"Acc-{name}"],
                metrics[f"AER-{name}"],
            ]
        )
    for g in _GROUP_NAMES:
        members = DENVER_GROUPS[g]
        rows.append(
            [
                f"group {g}",
                g,
                sum(details["per_class"][n]["num_gt"] for n in members),
                sum(details["per_class"][n]["num_pred"] for n in members),
                metrics[f"AP-group{g}"],
                metrics[f"APmax-group{g}"],
                metrics[f"Acc-group{g}"],
                metrics[f"AER-group{g}"],
            ]
        )
    table = tabulate(
        rows,
        headers=["class", "group", "#gt", "#pred", "AP", "APmax", "Acc", "AER"],
        tablefmt="pipe",
        floatfmt=".2f",
        numalign="left",
    )
    logger.info("Per-class karyotype metrics: \n" + table)


def write_report(output_dir: str, metrics: Dict, details: Dict):
    """
    Write ``karyotype_details.json`` (metrics and details), ``karyotype_per_image.csv``,
    ``karyotype_confusion.csv`` and the plots ``karyotype_confusion.png`` and
    ``karyotype_per_class_ap.png``.

    Args:
        metrics, details: as :func:`.metrics.compute_karyotype_metrics` returns them.
    """
    PathManager.mkdirs(output_dir)
    with PathManager.open(os.path.join(output_dir, "karyotype_details.json"), "w") as f:
        json.dump({"metrics": metrics, **details}, f, indent=1)
    with PathManager.open(os.path.join(output_dir, "karyotype_per_image.csv"), "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(details["per_image"][0]))
        writer.writeheader()
        writer.writerows(details["per_image"])
    with PathManager.open(os.path.join(output_dir, "karyotype_confusion.csv"), "w") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\pred"] + list(CLASS_NAMES))
        for name, row in zip(CLASS_NAMES, details["confusion"]):
            writer.writerow([name] + list(row))
    try:
        _plot_confusion(
            os.path.join(output_dir, "karyotype_confusion.png"), np.asarray(details["confusion"])
        )
        _plot_per_class_ap(os.path.join(output_dir, "karyotype_per_class_ap.png"), metrics)
    except ImportError as e:  # pragma: no cover
        logger.warning(f"matplotlib unavailable, no karyotype plots: {e}")


def _new_figure(size):
    # A bare Figure with an Agg canvas: no pyplot, no change to the global backend.

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _group_order() -> Tuple[np.ndarray, List[float]]:
    """Class indices sorted by Denver group (X joins C, Y joins G), and the positions of
    the lines between groups in that order."""
    order = np.array(
        sorted(range(NUM_CLASSES), key=lambda k: _GROUP_NAMES.index(denver_group_of(k)))
    )
    groups = [denver_group_of(k) for k in order]
    boundaries = [i + 0.5 for i in range(NUM_CLASSES - 1) if groups[i] != groups[i + 1]]
    return order, boundaries


def _plot_confusion(path: str, confusion: np.ndarray):
    """Rows normalized to the true class (colour), counts written in the cells; classes in
    Denver group order, so the in-group errors lie in the blocks along the diagonal."""
    order, boundaries = _group_order()
    names = [CLASS_NAMES[k] for k in order]
    confusion = confusion[np.ix_(order, order)]
    fig = _new_figure((10, 9))
    ax = fig.add_subplot(1, 1, 1)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = confusion / np.maximum(totals, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i, j in zip(*np.nonzero(confusion)):
        ax.text(
            j,
            i,
            str(confusion[i, j]),
            ha="center",
            va="center",
            fontsize=6,
            color="white" if shares[i, j] > 0.5 else "black",
        )
    for b in boundaries:
        ax.axhline(b, color="gray", linewidth=0.6)
        ax.axvline(b, color="gray", linewidth=0.6)
    ticks = np.arange(NUM_CLASSES)
    ax.set_xticks(ticks)
    ax.set_xticklabels(names, fontsize=7)
    ax.set_yticks(ticks)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Matched boxes (score, NMS and IoU as for Acc/AER)")
    fig.tight_layout()
    with PathManager.open(path, "wb") as f:
        fig.savefig(f, format="png")


def _plot_per_class_ap(path: str, metrics: Dict):
    order, boundaries = _group_order()
    names = [CLASS_NAMES[k] for k in order]
    fig = _new_figure((10, 4))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(NUM_CLASSES)
    ax.bar(x - 0.2, [metrics[f"AP-{n}"] for n in names], width=0.4, label="AP")
    ax.bar(x + 0.2, [metrics[f"APmax-{n}"] for n in names], width=0.4, label="APmax")
    for b in boundaries:
        ax.axvline(b, color="gray", linewidth=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 100)
    ax.set_ylabel("AP50 (%)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    with PathManager.open(path, "wb") as f:
        fig.savefig(f, format="png")
