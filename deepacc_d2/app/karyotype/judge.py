"""
The candidate judge: how likely each of a cell's candidates is *one whole chromosome* (the one
box of a chromosome, :func:`.candidates.one_box_labels`), from the candidate and its
neighbours: its foreground probability and names, its size against the cell's confident
candidates, and how it overlaps stronger candidates (a second box on a chromosome, a fragment
inside one, a box around two). A small MLP trained on the detector's own candidates
(``tools/train_candidate_judge.py``); counting keeps candidates by its judgement
(:func:`.assignment.assign_classes` with ``keep_probs``).

Shape shorthand: R candidates of one cell, K foreground classes, F features.
"""

from typing import Dict

import numpy as np
import torch
from torch import nn

from ...classes import NUM_CLASSES
from ...evaluation.matching import box_intersection, box_iou

__all__ = ["CandidateJudge", "candidate_features", "load_judge"]

CONFIDENT = 0.5  # the cell's scale is the median size of candidates with foreground >= this
OVERLAP = 0.3  # neighbours: candidates overlapping at IoU >= this
NUM_FEATURES = NUM_CLASSES + 14


def _cell_scale(long_side: np.ndarray, area: np.ndarray, fg: np.ndarray):
    """Median long side and area of the cell's confident candidates (all, when none is)."""
    confident = fg >= CONFIDENT
    if not confident.any():
        confident = np.ones_like(fg, dtype=bool)
    return np.median(long_side[confident]), np.median(area[confident])


def candidate_features(boxes: np.ndarray, class_scores: np.ndarray) -> np.ndarray:
    """
    Each candidate's features, from the cell's candidates alone.

    Args:
        boxes (ndarray): (R, 4) XYXY.
        class_scores (ndarray): (R, K) foreground class probabilities (summing to 1 - p_bg).

    Returns:
        ndarray: (R, F) float32: the names (K, normalised), then foreground, top name,
        name entropy, log long side and log area against the cell's confident candidates, log
        elongation, the cell's share of confident candidates against 46, the foreground rank,
        and against stronger candidates (higher foreground): the largest IoU, the largest
        share of this box inside one, the largest share of one inside this box, that
        candidate's foreground, and the count of stronger and of weaker neighbours.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    fg = np.asarray(class_scores, np.float64)[:, :NUM_CLASSES].sum(axis=1)
    r = len(boxes)
    if r == 0:
        return np.zeros((0, NUM_FEATURES), np.float32)
    names = class_scores[:, :NUM_CLASSES] / np.clip(fg[:, None], 1e-12, None)
    entropy = -(names * np.log(np.clip(names, 1e-12, None))).sum(axis=1)
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 1.0, None)
    long_side, short_side, area = wh.max(axis=1), wh.min(axis=1), wh.prod(axis=1)
    scale_long, scale_area = _cell_scale(long_side, area, fg)
    ious = box_iou(boxes, boxes)
    np.fill_diagonal(ious, 0.0)
    inter = box_intersection(boxes, boxes)
    np.fill_diagonal(inter, 0.0)
    stronger = fg[None, :] > fg[:, None]  # [i, j]: j is stronger than i
    inside = np.where(stronger, inter / area[:, None], 0.0)  # share of i inside j
    contains = np.where(stronger, inter / area[None, :], 0.0)  # share of j inside i
    iou_stronger = np.where(stronger, ious, 0.0)
    j_best = iou_stronger.argmax(axis=1)
    rank = np.argsort(np.argsort(-fg, kind="stable"), kind="stable")
    neighbours = ious >= OVERLAP
    extra = np.stack(
        [
            fg,
            names.max(axis=1),
            entropy,
            np.log(long_side / scale_long),
            np.log(area / scale_area),
            np.log(long_side / short_side),
            np.full(r, (fg >= CONFIDENT).sum() / 46.0),
            rank / 46.0,
            iou_stronger.max(axis=1),
            inside.max(axis=1),
            contains.max(axis=1),
            np.where(iou_stronger.max(axis=1) > 0, fg[j_best], 0.0),
            (neighbours & stronger).sum(axis=1),
            (neighbours & ~stronger).sum(axis=1),
        ],
        axis=1,
    )
    return np.concatenate([names, extra], axis=1).astype(np.float32)


class CandidateJudge(nn.Module):
    """(R, F) features -> (R,) logits of "one whole chromosome"; the features are
    standardised by the training set's mean and spread, kept as buffers."""

    def __init__(self, hidden: int = 64, num_features: int = NUM_FEATURES):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.net = nn.Sequential(
            nn.Linear(num_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, features):
        return self.net((features - self.mean) / self.std).squeeze(1)

    @torch.no_grad()
    def probabilities(self, boxes: np.ndarray, class_scores: np.ndarray) -> np.ndarray:
        """(R,) the judged probability that each candidate of one cell is one chromosome."""
        features = torch.from_numpy(candidate_features(boxes, class_scores))
        if len(features) == 0:
            return np.zeros(0)
        return torch.sigmoid(self.eval()(features)).numpy().astype(np.float64)


def load_judge(path: str) -> CandidateJudge:
    """A judge's weights file (``{"model": state_dict, "hidden": int}``), refused with the
    file's name when it cannot be read or does not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        judge = CandidateJudge(int(state["hidden"]))
        judge.load_state_dict(state["model"])
    except Exception as e:
        raise ValueError(f"{path}: cannot read candidate judge weights ({e})") from e
    return judge.eval()


def judge_state(judge: CandidateJudge) -> Dict:
    return {"model": judge.state_dict(), "hidden": judge.net[0].out_features}
