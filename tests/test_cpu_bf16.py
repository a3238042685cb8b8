"""bfloat16 autocast on the CPU: when it is used, and that it computes the same losses as
float32 within a stated tolerance."""

import os
import sys

import pytest
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2 import add_deepacc_config
from deepacc_d2.engine.precision import cpu_has_bf16, use_cpu_bf16

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_roi_heads import metaphase, small_cfg  # noqa: E402

# Stated tolerance of a loss term under bf16 autocast: 0.05 + 10 % of its float32 value
# (bf16 keeps 8 bits of mantissa: ~0.4 % per operation, compounded over the network).
ABS_TOL, REL_TOL = 0.05, 0.10


def test_when_bf16_is_used():
    cfg = get_cfg()
    add_deepacc_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    for mode, expected in (("off", False), ("on", True), ("auto", cpu_has_bf16())):
        cfg.SOLVER.CPU_BF16 = mode
        assert use_cpu_bf16(cfg) == expected, mode
    cfg.MODEL.DEVICE, cfg.SOLVER.CPU_BF16 = "cuda", "on"
    assert not use_cpu_bf16(cfg)  # a GPU run uses detectron2's AMP, not this
    cfg.MODEL.DEVICE, cfg.SOLVER.CPU_BF16 = "cpu", "yes"
    with pytest.raises(ValueError, match="on, off or auto"):
        use_cpu_bf16(cfg)


@pytest.mark.parametrize("config", ["a_faster_rcnn_cpu.yaml", "f_deepacc_cpu.yaml"])
def test_bf16_losses_match_float32(config):
    torch.manual_seed(0)
    model = build_model(small_cfg(config))
    model.train()
    data = [metaphase()]
    losses = []
    for bf16 in (False, True):
        torch.manual_seed(1)  # the same proposal sampling
        with EventStorage(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses.append({k: v.float().item() for k, v in model(data).items()})
    fp32, bf16 = losses
    assert fp32.keys() == bf16.keys()
    for key in fp32:
        assert abs(bf16[key] - fp32[key]) <= ABS_TOL + REL_TOL * abs(fp32[key]), (key, fp32, bf16)
