"""The cosine schedule with warm restarts: hand-computed learning rates, detectron2's schedule
when there is no restart, and a run extended past its end continuing the same schedule."""

import math

import pytest
import torch

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2)
from deepacc_d2.engine.solver import build_lr_scheduler

from detectron2.config import get_cfg
from detectron2.solver import build_lr_scheduler as build_detectron2_lr_scheduler


def solver_cfg(max_iter, restarts=(), factor=1.0, warmup=0):
    cfg = get_cfg()
    deepacc_d2.add_deepacc_config(cfg)
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    cfg.SOLVER.BASE_LR = 0.3
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.WARMUP_ITERS = warmup
    cfg.SOLVER.WARMUP_FACTOR = 0.1
    cfg.SOLVER.COSINE_RESTARTS = restarts
    cfg.SOLVER.RESTART_LR_FACTOR = factor
    return cfg


def learning_rates(cfg, builder=build_lr_scheduler):
    """LR used at each iteration 0 .. MAX_ITER - 1 (detectron2 steps after each one)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    scheduler = builder(cfg, optimizer)
    rates = []
    for _ in range(cfg.SOLVER.MAX_ITER):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_restart_rates_by_hand():
    lr = learning_rates(solver_cfg(100, restarts=(60,), factor=0.5))
    assert lr[0] == pytest.approx(0.3)
    assert lr[30] == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * 30 / 60)))  # = 0.15
    assert lr[59] == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * 59 / 60)))
    assert lr[60] == pytest.approx(0.15)  # the second cycle starts at half the peak
    assert lr[80] == pytest.approx(0.15 * 0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert lr[99] == pytest.approx(0.15 * 0.5 * (1 + math.cos(math.pi * 39 / 40)))


def test_without_restarts_it_is_detectron2s_schedule():
    cfg = solver_cfg(50, warmup=10)
    assert learning_rates(cfg) == pytest.approx(
        learning_rates(cfg, build_detectron2_lr_scheduler), rel=1e-9
    )


def test_first_cycle_is_the_shorter_run():
    """A run of 60 iterations, and the 60 first of a 100-iteration run that restarts at 60,
    see the same learning rates (warm-up included): the longer run can resume the shorter."""
    short = learning_rates(solver_cfg(60, warmup=10))
    longer = learning_rates(solver_cfg(100, restarts=(60,), factor=0.3, warmup=10))
    assert longer[:60] == pytest.approx(short, rel=1e-9)
    assert longer[60] == pytest.approx(0.3 * 0.3)


def test_restarts_after_the_end_are_dropped():
    """--iters shorter than the schedule: the run is its first cycles (here: plain cosine)."""
    plain = learning_rates(solver_cfg(50, warmup=10))
    assert learning_rates(solver_cfg(50, restarts=(50, 70), factor=0.5, warmup=10)) == (
        pytest.approx(plain, rel=1e-9)
    )


@pytest.mark.parametrize(
    "restarts,factor", [((0,), 0.5), ((60, 40), 0.5), ((60, 60), 0.5), ((50,), 0)]
)
def test_bad_restarts_are_refused(restarts, factor):
    with pytest.raises(ValueError, match="RESTART"):
        learning_rates(solver_cfg(100, restarts=restarts, factor=factor))


def test_restarts_need_the_cosine_schedule():
    cfg = solver_cfg(100, restarts=(50,))
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
    with pytest.raises(ValueError, match="WarmupCosineLR"):
        learning_rates(cfg)
