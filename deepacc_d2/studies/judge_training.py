"""
Training the candidate judge (:mod:`.judge`) on the detector's own candidates of a labelled
dataset (``tools/train_candidate_judge.py``), and choosing how much the karyotype step trusts
it on images the judge did not train on.
"""

import dataclasses
import logging
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from ..app.karyotype.candidates import model_detections, one_box_labels
from ..app.karyotype.cell import KaryotypeRules, counting_candidates
from ..app.karyotype.judge import CandidateJudge, candidate_features
from ..data.crops import NEGATIVE_IOU
from ..evaluation.matching import box_iou
from .count_stages import covered
from .karyotype_benchmark import (
    NORMAL_CALLS,
    counted_and_matched,
    counted_cell_judgment,
    summarize,
)

logger = logging.getLogger(__name__)


def judge_examples(cfg, records: Sequence[Dict]) -> List[Tuple[np.ndarray, np.ndarray]]:
    """
    Per image the judge's inputs and labels: the features of its counting candidates
    (:func:`.cell.counting_candidates` under the config's rules, without a judge) and whether
    each is the one box of a chromosome (:func:`.candidates.one_box_labels`).

    Returns:
        list[tuple[ndarray, ndarray]]: (R, F) float32 features, (R,) bool labels.
    """
    rules = dataclasses.replace(KaryotypeRules.from_config(cfg), judge="")
    examples = []
    for record in records:
        boxes, class_scores = counting_candidates(model_detections(cfg, record), rules)
        labels, _ = one_box_labels(boxes, record["gt_boxes"])
        examples.append((candidate_features(boxes, class_scores), labels))
    return examples


def wrong_candidates(cfg, records: Sequence[Dict]) -> Dict[str, np.ndarray]:
    """
    Per file name the model's wrong counting candidates (:func:`.cell.counting_candidates`
    under the config's rules, without a judge): those that overlap every true box at IoU
    below NEGATIVE_IOU (fragments, boxes around two chromosomes, debris), for the crop
    classifier's "not one chromosome" (:func:`..data.crops.image_patches`).

    Returns:
        dict[str, ndarray]: (W, 4) float32 XYXY boxes in the image's own pixels.
    """
    rules = dataclasses.replace(KaryotypeRules.from_config(cfg), judge="")
    wrong = {}
    for record in records:
        boxes, _ = counting_candidates(model_detections(cfg, record), rules)
        gt = np.asarray(record["gt_boxes"], np.float64).reshape(-1, 4)
        best = box_iou(boxes, gt).max(axis=1) if len(gt) else np.zeros(len(boxes))
        wrong[record["file_name"]] = boxes[best < NEGATIVE_IOU].astype(np.float32)
    return wrong


def boxes_together(*boxes_of: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Per file name the boxes of every dict, in the dicts' order (the wrong candidates of
    several models of one training set).

    Returns:
        dict[str, ndarray]: (B, 4) float32.
    """
    together = {}
    for boxes in boxes_of:
        for name, b in boxes.items():
            b = np.asarray(b, np.float32).reshape(-1, 4)
            together[name] = np.concatenate([together[name], b]) if name in together else b
    return together


def train_judge(
    examples: Sequence[Tuple[np.ndarray, np.ndarray]],
    hidden: int = 64,
    epochs: int = 30,
    batch_size: int = 1024,
    lr: float = 3e-3,
    seed: int = 0,
) -> CandidateJudge:
    """
    A judge fitted to ``examples`` (binary cross-entropy, Adam, cosine LR); the candidates'
    order is shuffled from ``seed`` alone, so a run is repeated exactly on one machine.
    """
    torch.manual_seed(seed)
    x = torch.from_numpy(np.concatenate([e[0] for e in examples]))
    y = torch.from_numpy(np.concatenate([e[1] for e in examples]).astype(np.float32))
    judge = CandidateJudge(hidden, x.shape[1])
    judge.mean.copy_(x.mean(dim=0))
    judge.std.copy_(x.std(dim=0).clamp(min=1e-3))
    steps = epochs * -(-len(y) // batch_size)
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    judge.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            loss = F.binary_cross_entropy_with_logits(judge(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        logger.info(f"judge epoch {epoch + 1}/{epochs}: loss {total / len(y):.4f}")
    return judge.eval()


def split_images(num_images: int, held_out: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A seeded split of image indices: (training, held out)."""
    order = np.random.default_rng(seed).permutation(num_images)
    cut = int(round(num_images * (1 - held_out)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def count_summary(cells: Sequence[Dict], rules: KaryotypeRules) -> Dict[str, float]:
    """How one counting rule does on labelled cells (:func:`.benchmark.detection_cells`):
    cells counted right and called exactly (%, all and those whose true call is abnormal),
    chromosomes named right (%), counted objects on no chromosome (%: no true box at
    IoU >= 0.5)."""
    judged, on_none = [], 0
    for cell in cells:
        detections, matched = counted_and_matched(cell, rules)
        judged.append(counted_cell_judgment(cell, detections, matched, rules))
        on_none += int((~covered(cell["gt_boxes"], detections["boxes"])).sum())
    summary = summarize(judged)
    counted = sum(j["counted"] for j in judged)
    summary["counted_per_cell"] = counted / max(1, len(judged))
    summary["not_chromosome"] = 100.0 * on_none / max(1, counted)
    abnormal = [j["count_right"] for j in judged if j["truth"] not in NORMAL_CALLS]
    summary["count_right_abnormal"] = 100.0 * float(np.mean(abnormal)) if abnormal else 0.0
    return summary


def choose_rule(results: Dict[str, Dict[str, float]]) -> str:
    """The counting rule to ship, from each rule's :func:`count_summary` on held-out cells: the
    most exact calls on normal and on abnormal cells, weighed alike (a rule that never calls
    45,X or 47,XXY is no use to a lab, however many normal cells it gets right); then the most
    exact calls."""
    return max(
        results,
        key=lambda k: (
            results[k]["exact_normal"] + results[k]["exact_abnormal"],
            results[k]["exact"],
        ),
    )
