"""The narrow ResNet-FPN backbone: at 64 channels it is detectron2's R-18 + FPN layer for layer;
at 32 every trunk width halves."""

import os

import torch

import deepacc_d2  # noqa: F401  (registers the backbone)
from deepacc_d2.app.config import setup_cfg

from detectron2.modeling import build_backbone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_BASE = os.path.join(REPO, "configs", "cpu", "a_faster_rcnn_cpu.yaml")


def _backbone(name, width, depth=18):
    cfg = setup_cfg(
        CPU_BASE,
        [
            "MODEL.BACKBONE.NAME",
            name,
            "MODEL.RESNETS.DEPTH",
            str(depth),
            "MODEL.RESNETS.STEM_OUT_CHANNELS",
            str(width),
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            str(width),
        ],
    )
    return build_backbone(cfg)


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_at_64_channels_it_is_detectron2s_resnet():
    for depth in (18, 34):
        ours = _backbone("build_narrow_resnet_fpn_backbone", 64, depth)
        theirs = _backbone("build_resnet_fpn_backbone", 64, depth)
        assert _shapes(ours) == _shapes(theirs)


def test_half_width_halves_every_trunk_stage():
    full = _backbone("build_narrow_resnet_fpn_backbone", 64).bottom_up
    half = _backbone("build_narrow_resnet_fpn_backbone", 32).bottom_up
    for name in ("res2", "res3", "res4", "res5"):
        assert half.output_shape()[name].channels * 2 == full.output_shape()[name].channels
        assert half.output_shape()[name].stride == full.output_shape()[name].stride
    assert half.output_shape()["res5"].channels == 256  # 32 * 2**3
    features = half(torch.rand(1, 3, 64, 96))
    assert features["res3"].shape == (1, 64, 8, 12)
