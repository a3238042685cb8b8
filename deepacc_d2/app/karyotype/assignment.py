"""
Naming a cell's chromosomes together. Each detection alone would take its most probable class;
a cell, though, holds two of each autosome and XX or XY, so two look-alikes that both prefer
chromosome 7 are better named 7 and 8 when the second prefers 8 next. The names are an
assignment of detections to the slots of a karyotype (Hungarian algorithm on -log p):

* normal slots: two per autosome, one X, one "X or Y"; filling one earns ``missing_cost``
  (a normal slot left empty is a missing copy, which costs that much);
* extra slots: any class again, each at ``extra_cost`` (a gain, e.g. a trisomy 21, costs that
  much more than a normal copy);
* the sex chromosomes may have costs of their own, ``sex_cost`` for the "X or Y" slot left
  empty and for an extra X or Y: their aneuploidies (45,X, 47,XXY) are the common ones.

A real trisomy survives when its third copy's evidence, -log p of naming it anything else,
outweighs ``extra_cost + missing_cost``. The costs are chosen on data (docs/studies/counting.md).
"""

from typing import Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...classes import CLASS_NAMES, NUM_CLASSES

X, Y = CLASS_NAMES.index("X"), CLASS_NAMES.index("Y")
_TINY = 1e-12
_NEVER = 1e9  # the cost of a placement that is not allowed


def _slots(num_detections: int) -> Tuple[np.ndarray, np.ndarray]:
    """
    Returns:
        ndarray: (S,) each slot's class (-1: "X or Y").
        ndarray: (S,) bool, whether the slot is a normal one.
    """
    normal = [k for k in range(X) for _ in range(2)] + [X, -1]
    # enough extra slots of every class for any number of detections
    extra_per_class = max(2, -(-num_detections // NUM_CLASSES))
    extra = [k for k in range(NUM_CLASSES) for _ in range(extra_per_class)]
    classes = np.array(normal + extra)
    return classes, np.arange(len(classes)) < len(normal)


def _cost_matrix(names: np.ndarray, extra_cost: float, missing_cost: float, sex_cost=None):
    """(N, S) costs of each detection in each slot, and the class each placement names."""
    slot_class, is_normal = _slots(len(names))
    log_p = -np.log(np.clip(names, _TINY, None))  # N x K
    either = np.where(names[:, X] >= names[:, Y], X, Y)  # the "X or Y" slot's choice
    named = np.where(slot_class[None, :] >= 0, slot_class[None, :], either[:, None])  # N x S
    cost = np.take_along_axis(log_p, named, axis=1)
    slot_cost = np.where(is_normal, -missing_cost, extra_cost)
    if sex_cost is not None:
        sex = (slot_class == -1) | (~is_normal & (slot_class >= X))
        slot_cost = np.where(sex, np.where(is_normal, -sex_cost, sex_cost), slot_cost)
    cost += slot_cost[None, :]
    return cost, named


def _with_leave_out(cost: np.ndarray, named: np.ndarray, keep_probs: np.ndarray, weight: float):
    """Counting and naming together: placing detection d in a slot also costs -w log q_d, and
    each detection gets a column of its own, "left out" (class -1), at -w log(1 - q_d)."""
    q = np.clip(np.asarray(keep_probs, np.float64), _TINY, 1 - 1e-9)
    n = len(q)
    out = np.full((n, n), _NEVER)
    out[np.arange(n), np.arange(n)] = -weight * np.log1p(-q)
    cost = np.concatenate([cost - weight * np.log(q)[:, None], out], axis=1)
    return cost, np.concatenate([named, np.full((n, n), -1)], axis=1)


def assign_classes(
    names: np.ndarray,
    extra_cost: float,
    missing_cost: float,
    keep_probs: Optional[np.ndarray] = None,
    sex_cost: Optional[float] = None,
    keep_weight: float = 1.0,
) -> Tuple[np.ndarray, np.ndarray]:
    """
    Args:
        names (ndarray): (N, K) each detection's class probabilities (rows sum to 1).
        extra_cost (float): the cost of a copy beyond the normal karyotype, >= 0.
        missing_cost (float): the cost of a normal copy that no detection fills, >= 0.
        keep_probs (ndarray or None): (N,) the probability q_d that each detection is one
            chromosome (:mod:`.judge`): with it a detection may also be left out, so a
            doubtful one is counted when it fills an empty slot and left out when it would
            be a 47th; None: every detection is counted.
        sex_cost (float or None): the cost of an empty "X or Y" slot and of an extra X or Y,
            >= 0; None: ``missing_cost`` and ``extra_cost``.
        keep_weight (float): w, the weight of the -log q_d and -log(1 - q_d) terms, > 0.

    Returns:
        ndarray: (N,) int, each detection's class in the best assignment, -1 when left out.
        ndarray: (N,) float, each detection's margin: how much more the best assignment that
        names it otherwise (or counts it otherwise) costs (-log p units); 0 when another
        choice is as good.
    """
    names = np.asarray(names, dtype=np.float64)
    if len(names) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    cost, named = _cost_matrix(names, extra_cost, missing_cost, sex_cost)
    if keep_probs is not None:
        cost, named = _with_leave_out(cost, named, keep_probs, keep_weight)
    rows, cols = linear_sum_assignment(cost)
    best = cost[rows, cols].sum()
    classes = named[rows, cols]
    margins = np.zeros(len(names))
    for d in range(len(names)):
        forbidden = np.where(named[d] == classes[d], _NEVER, cost[d])
        others = cost.copy()
        others[d] = forbidden
        r, c = linear_sum_assignment(others)
        margins[d] = others[r, c].sum() - best
    return classes.astype(np.int64), margins
