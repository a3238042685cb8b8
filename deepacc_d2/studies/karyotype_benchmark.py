"""
How well the karyotype step counts and names, rule against rule (``tools/karyotype_benchmark.py``):

* on a labelled dataset (``cil24_val``): the model runs once over every image
  (:func:`dataset_cells`), then each rule (:class:`.cell.KaryotypeRules`) counts and names
  each cell (:func:`judge_cell`);
* on simulated cells of known karyotype with abnormal karyotypes made common
  (:func:`simulate_cells`): each chromosome of a karyotype drawn by the synthetic generator's
  sampler gets the class vector of a real detection of its class, drawn from the labelled
  dataset's (and is missed, or joined by false detections, as often as there), so the rules
  meet the model's real mistakes on cells whose true call is abnormal.
"""

from collections import Counter
from typing import Dict, List

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from detectron2.structures import Boxes, Instances

from ..app.karyotype.candidates import (
    cached_proposal_outputs,
    detection_record,
    model_detections,
    one_box_labels,
)
from ..app.karyotype.cell import (
    KaryotypeRules,
    cell_record,
    counted_detections,
    counting_candidates,
    judge_probabilities,
    name_chromosomes,
)
from ..classes import CLASS_NAMES, NUM_CLASSES
from ..data.synth.karyotype import (
    DEFAULT_ABNORMALITY_RATES,
    karyotype_chromosomes,
    sample_karyotype,
)
from ..evaluation.acc_aer import match_karyotype
from ..iscn import numerical_karyotype


def dataset_cells(cfg, dataset_name: str, cache_dir: str) -> List[Dict]:
    """
    The model's detections on every readable image of a registered dataset, with the truth,
    from its proposal outputs (:func:`.candidates.cached_proposal_outputs`, run once).

    Returns:
        list[dict]: per image "file_name", "gt_boxes" (G, 4), "gt_classes" (G,), and the
        top-1 detections' "boxes", "scores", "pred_classes", "class_scores", "top1",
        "all_classes" (:func:`.candidates.detection_record`).
    """
    return detection_cells(cfg, cached_proposal_outputs(cfg, dataset_name, cache_dir))


def detection_cells(cfg, records: List[Dict]) -> List[Dict]:
    """:func:`dataset_cells` of proposal-outputs records already read."""
    return [detection_record(r, model_detections(cfg, r)) for r in records]


def _instances(record: Dict) -> Instances:
    fields = {k: torch.as_tensor(record[k]) for k in ("scores", "pred_classes", "class_scores")}
    instances = Instances(record["image_size"], pred_boxes=Boxes(torch.as_tensor(record["boxes"])))
    for k in ("top1", "all_classes"):
        if k in record:
            fields[k] = torch.as_tensor(record[k])
    for k, v in fields.items():
        instances.set(k, v)
    return instances


def truth_call(classes) -> str:
    counts = Counter(CLASS_NAMES[k] for k in classes)
    try:
        return numerical_karyotype({n: counts.get(n, 0) for n in CLASS_NAMES})
    except ValueError:
        return ""


def counted_and_matched(record: Dict, rules: KaryotypeRules):
    """A labelled cell's counted detections (:func:`.cell.counted_detections`) and their
    match to its chromosomes at IoU >= 0.5 (:func:`match_karyotype`)."""
    detections = counted_detections(_instances(record), rules)
    judged = match_karyotype(
        record["gt_boxes"],
        record["gt_classes"],
        detections["boxes"],
        detections["scores"],
        detections["classes"],
        0.5,
    )
    return detections, judged


def judge_cell(record: Dict, rules: KaryotypeRules) -> Dict:
    """One labelled cell under one rule: its call against the true one, how many of its
    chromosomes are named right (a counted detection of the right class at IoU >= 0.5)."""
    return counted_cell_judgment(record, *counted_and_matched(record, rules), rules)


def counted_cell_judgment(record: Dict, detections: Dict, judged: Dict, rules: KaryotypeRules):
    """:func:`judge_cell` of a cell already counted and matched (:func:`counted_and_matched`)."""
    return _judgment(
        cell_record(detections, rules),
        truth_call(record["gt_classes"]),
        len(record["gt_classes"]),
        int(judged["is_tp"].sum()),
    )


def _judgment(cell: Dict, truth: str, chromosomes: int, named_right: int) -> Dict:
    """A cell's record (:func:`.cell.cell_record`) judged against its true call and count."""
    return {
        "truth": truth,
        "call": cell["karyotype"] or "",
        "exact": cell["karyotype"] == truth,
        "count_right": cell["total"] == chromosomes,
        "named_right": named_right,
        "chromosomes": chromosomes,
        "counted": cell["total"],
        "needs_review": cell["needs_review"],
    }


def _bank_candidates(record: Dict, rules: KaryotypeRules):
    """One labelled cell's candidates for the bank: their class vectors, the judge's
    probabilities (ones without a judge) and the true chromosome each is on (-1: none). With a
    judge the candidates are those the judge sees and on means "the one box of" (it decides
    at naming); without, the counted detections and their match (:func:`match_karyotype`)."""
    if rules.judge:
        boxes, class_scores = counting_candidates(_instances(record), rules)
        _, on = one_box_labels(boxes, record["gt_boxes"])
        return class_scores, judge_probabilities(rules.judge, boxes, class_scores), on
    detections, judged = counted_and_matched(record, rules)
    return detections["class_scores"], np.ones(len(judged["gt_index"])), judged["gt_index"]


def detection_bank(records: List[Dict], rules: KaryotypeRules) -> Dict:
    """
    What the model does with each class on a labelled dataset, under ``rules``' counting:
    the class vectors (and the judge's probabilities) of the candidates on chromosomes of
    each class, how often a chromosome of each class has none, and the class vectors and
    per-cell number of the candidates on nothing (or duplicates).
    """
    hits = {k: [] for k in range(NUM_CLASSES)}
    seen, missed = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    false, false_per_cell = [], []
    for record in records:
        class_scores, keep, on = _bank_candidates(record, rules)
        for d in range(len(on)):
            entry = np.append(class_scores[d], keep[d])  # K class probabilities, then q
            if on[d] >= 0:
                hits[int(record["gt_classes"][on[d]])].append(entry)
            else:
                false.append(entry)
        false_per_cell.append(int((on < 0).sum()))
        found = np.zeros(len(record["gt_classes"]), bool)
        found[on[on >= 0]] = True
        np.add.at(seen, record["gt_classes"], 1)
        np.add.at(missed, record["gt_classes"][~found], 1)
    return {
        "hits": {k: np.array(v).reshape(-1, NUM_CLASSES + 1) for k, v in hits.items()},
        "miss_rate": missed / np.maximum(seen, 1),
        "false": np.array(false).reshape(-1, NUM_CLASSES + 1),
        "false_per_cell": np.array(false_per_cell),
    }


def simulate_cells(bank: Dict, num_cells: int, abnormality_scale: float, seed: int) -> List[Dict]:
    """
    Cells of known karyotype (the synthetic generator's sampler, abnormal rates x
    ``abnormality_scale``) with the model's candidates drawn from ``bank``.

    Returns:
        list[dict]: "truth" (ISCN), "true_classes" (G,), "class_scores" (N, K) and
        "keep_probs" (N,) of its candidates, "on" (N,) the true chromosome each is on (-1:
        none).
    """
    # karyotypes from their own generator: every bank meets the same cells
    karyotypes, rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    rates = {a: r * abnormality_scale for a, r in DEFAULT_ABNORMALITY_RATES.items()}
    cells = []
    for _ in range(num_cells):
        iscn = sample_karyotype(karyotypes, rates)
        true = np.array([CLASS_NAMES.index(n) for n in karyotype_chromosomes(iscn)])
        entries, on = [], []
        for g, k in enumerate(true):
            if len(bank["hits"][k]) and rng.random() >= bank["miss_rate"][k]:
                entries.append(bank["hits"][k][rng.integers(len(bank["hits"][k]))])
                on.append(g)
        for _ in range(int(rng.choice(bank["false_per_cell"]))) if len(bank["false"]) else ():
            entries.append(bank["false"][rng.integers(len(bank["false"]))])
            on.append(-1)
        entries = np.array(entries).reshape(-1, NUM_CLASSES + 1)
        cells.append(
            {
                "truth": iscn,
                "true_classes": true,
                "class_scores": entries[:, :NUM_CLASSES],
                "keep_probs": entries[:, NUM_CLASSES],
                "on": np.array(on, dtype=np.int64),
            }
        )
    return cells


def judge_simulated_cell(cell: Dict, rules: KaryotypeRules) -> Dict:
    """One simulated cell counted (with a judge) and named under ``rules``."""
    keep = cell["keep_probs"] if rules.judge else None
    classes, margins = name_chromosomes(cell["class_scores"], rules, keep)
    counted = classes >= 0
    classes, class_scores = classes[counted], cell["class_scores"][counted]
    n = len(classes)
    detections = {
        "boxes": np.array([[20.0 * i, 0, 20.0 * i + 10, 30] for i in range(n)]).reshape(-1, 4),
        "classes": classes,
        "scores": class_scores[np.arange(n), classes],
        "class_scores": class_scores,
        "margins": margins[counted],
    }
    on = cell["on"][counted]
    right = (on >= 0) & (classes == cell["true_classes"][np.clip(on, 0, None)])
    return _judgment(
        cell_record(detections, rules), cell["truth"], len(cell["true_classes"]), int(right.sum())
    )


NORMAL_CALLS = ("46,XX", "46,XY")


def summarize(judged: List[Dict]) -> Dict:
    """Shares (%) over cells: exact call (all, normal, abnormal truths), count right,
    chromosomes named right, sent to review, and wrong calls that were not sent."""
    n = max(1, len(judged))
    normal = [j for j in judged if j["truth"] in NORMAL_CALLS]
    abnormal = [j for j in judged if j["truth"] not in NORMAL_CALLS]

    def share(rows, key):
        return 100.0 * sum(r[key] for r in rows) / max(1, len(rows))

    return {
        "cells": len(judged),
        "abnormal_cells": len(abnormal),
        "exact": share(judged, "exact"),
        "exact_normal": share(normal, "exact"),
        "exact_abnormal": share(abnormal, "exact"),
        "count_right": share(judged, "count_right"),
        "named_right": 100.0
        * sum(j["named_right"] for j in judged)
        / max(1, sum(j["chromosomes"] for j in judged)),
        "sent_to_review": share(judged, "needs_review"),
        "wrong_not_sent": 100.0
        * sum((not j["exact"]) and not j["needs_review"] for j in judged)
        / n,
    }


def compare_rules(
    records: List[Dict], rules: Dict[str, KaryotypeRules], num_cells: int, scale: float, seed: int
):
    """
    Each rule on the labelled cells and on simulated ones (one bank per way of counting).
    The chosen rule: the most exact calls on the labelled cells among the rules that call
    the simulated abnormal cells at least as well as every rule that names by the top class.

    Returns:
        dict: rule name -> {"dataset": summary, "simulated": summary}.
        str: the chosen rule's name.
    """
    banks, results = {}, {}
    for name, rule in rules.items():
        counting = (
            rule.count_by,
            rule.score_thresh,
            rule.nms_thresh,
            rule.fg_thresh,
            rule.fg_nms_thresh,
            rule.judge,
        )
        if counting not in banks:
            bank = detection_bank(records, rule)
            banks[counting] = simulate_cells(bank, num_cells, scale, seed)
        results[name] = {
            "dataset": summarize([judge_cell(r, rule) for r in records]),
            "simulated": summarize([judge_simulated_cell(c, rule) for c in banks[counting]]),
        }
    floor = max(
        r["simulated"]["exact_abnormal"] for name, r in results.items() if not rules[name].assign
    )
    allowed = [n for n, r in results.items() if r["simulated"]["exact_abnormal"] >= floor]
    dataset = {n: results[n]["dataset"] for n in allowed}
    chosen = max(allowed, key=lambda n: (dataset[n]["exact"], dataset[n]["named_right"]))
    return results, chosen


def rules_table(results: Dict, chosen: str, dataset_name: str, command: str) -> str:
    """The comparison as a markdown table (shares in %)."""
    lines = [
        f"`{command}`",
        "",
        f"| rule | {dataset_name}: call exact | count right | named right | sent to review "
        "| wrong, not sent | simulated: exact, normal | exact, abnormal | named right "
        "| sent to review |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        d, s = r["dataset"], r["simulated"]
        mark = " **(chosen)**" if name == chosen else ""
        lines.append(
            f"| {name}{mark} | {d['exact']:.1f} | {d['count_right']:.1f} | "
            f"{d['named_right']:.1f} | {d['sent_to_review']:.1f} | {d['wrong_not_sent']:.1f} | "
            f"{s['exact_normal']:.1f} | {s['exact_abnormal']:.1f} | {s['named_right']:.1f} | "
            f"{s['sent_to_review']:.1f} |"
        )
    any_result = next(iter(results.values()))
    lines += [
        "",
        f"{any_result['dataset']['cells']} {dataset_name} cells "
        f"({any_result['dataset']['abnormal_cells']} abnormal by their labels); "
        f"{any_result['simulated']['cells']} simulated cells "
        f"({any_result['simulated']['abnormal_cells']} abnormal).",
    ]
    return "\n".join(lines) + "\n"


def rules_to_plot(results: Dict, chosen: str) -> List[str]:
    """The rules the bars show, each once: those that name each candidate by its top class,
    then the chosen one."""
    return [n for n in results if "assignment" not in n and n != chosen] + [chosen]


def plot_rules(results: Dict, chosen: str, path: str, dataset_name: str):
    """Bars of exact calls and chromosomes named right for the top-class rules and the
    chosen assignment."""

    names = rules_to_plot(results, chosen)
    measures = [
        ("dataset", "exact", f"{dataset_name}: call exact"),
        ("dataset", "named_right", f"{dataset_name}: named right"),
        ("simulated", "exact_normal", "simulated normal: call exact"),
        ("simulated", "exact_abnormal", "simulated abnormal: call exact"),
    ]
    fig = Figure(figsize=(9, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [results[name][part][key] for part, key, _ in measures]
        bars = ax.bar(np.arange(len(measures)) + i * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(np.arange(len(measures)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([label for _, _, label in measures], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.tight_layout()
    fig.savefig(path)
