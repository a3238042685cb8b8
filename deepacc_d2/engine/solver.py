"""
The learning-rate schedule with warm restarts: detectron2's ``WarmupCosineLR`` whose cosine
starts again, at a lower peak, at each iteration of ``SOLVER.COSINE_RESTARTS`` (SGDR,
Loshchilov & Hutter, ICLR 2017). A model trained to the end of one cycle is then exactly the
model of a shorter run, and training on from its checkpoint (``--resume`` with a larger
MAX_ITER) continues the same schedule: the learning curve can be extended without starting over.
"""

import logging

from fvcore.common.param_scheduler import CompositeParamScheduler, CosineParamScheduler

from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.solver import build_lr_scheduler as build_detectron2_lr_scheduler

__all__ = ["build_lr_scheduler", "cosine_restart_multiplier"]

logger = logging.getLogger(__name__)


def cosine_restart_multiplier(
    max_iter: int,
    restarts,
    restart_factor: float,
    warmup_iters: int,
    warmup_factor: float,
    warmup_method: str = "linear",
):
    """
    Args:
        max_iter (int): iterations of the whole schedule.
        restarts (sequence[int]): increasing iterations > 0 where a new cosine cycle starts;
            those at or after max_iter are dropped (as detectron2 drops STEPS after MAX_ITER),
            so that a shorter run is the schedule's first cycles.
        restart_factor (float): peak of cycle k (k = 0 first) is ``restart_factor ** k``.
        warmup_iters, warmup_factor, warmup_method: detectron2's SOLVER.WARMUP_* (first
            cycle only).

    Returns:
        ParamScheduler: the LR multiplier as a function of ``iteration / max_iter``.
    """
    restarts = tuple(restarts)
    if list(restarts) != sorted(set(restarts)) or (restarts and restarts[0] <= 0):
        raise ValueError(f"SOLVER.COSINE_RESTARTS {restarts} must be increasing and > 0")
    if restarts and restarts[-1] >= max_iter:
        logger.warning(f"SOLVER.COSINE_RESTARTS at or after MAX_ITER {max_iter} are ignored")
    bounds = [0, *(r for r in restarts if r < max_iter), max_iter]
    if not 0 < restart_factor <= 1:
        raise ValueError(f"SOLVER.RESTART_LR_FACTOR must be in (0, 1], got {restart_factor}")
    cycles = len(bounds) - 1
    sched = CompositeParamScheduler(
        [CosineParamScheduler(restart_factor**k, 0) for k in range(cycles)],
        lengths=[(b - a) / max_iter for a, b in zip(bounds, bounds[1:])],
        interval_scaling=["rescaled"] * cycles,
    )
    return WarmupParamScheduler(
        sched, warmup_factor, min(warmup_iters / max_iter, 1.0), warmup_method
    )


def build_lr_scheduler(cfg, optimizer):
    """detectron2's scheduler, or with SOLVER.COSINE_RESTARTS the cosine with warm restarts."""
    if not cfg.SOLVER.COSINE_RESTARTS:
        return build_detectron2_lr_scheduler(cfg, optimizer)
    if cfg.SOLVER.LR_SCHEDULER_NAME != "WarmupCosineLR":
        raise ValueError(
            "SOLVER.COSINE_RESTARTS needs SOLVER.LR_SCHEDULER_NAME WarmupCosineLR, "
            f"not {cfg.SOLVER.LR_SCHEDULER_NAME}"
        )
    multiplier = cosine_restart_multiplier(
        cfg.SOLVER.MAX_ITER,
        cfg.SOLVER.COSINE_RESTARTS,
        cfg.SOLVER.RESTART_LR_FACTOR,
        cfg.SOLVER.WARMUP_ITERS,
        cfg.SOLVER.WARMUP_FACTOR,
        cfg.SOLVER.WARMUP_METHOD,
    )
    return LRMultiplier(optimizer, multiplier=multiplier, max_iter=cfg.SOLVER.MAX_ITER)
