"""A narrower ResNet-18/34 + FPN for CPUs: detectron2's ``build_resnet_fpn_backbone`` fixes the
basic-block ResNets at 64 channels in res2; here ``MODEL.RESNETS.STEM_OUT_CHANNELS`` and
``RES2_OUT_CHANNELS`` set the widths (each later stage doubles them; multiples of 32 with
GroupNorm's 32 groups). At 64 / 64 it is detectron2's R-18 / R-34 layer for layer. Like
detectron2's basic-block ResNets: no groups, dilation or deformable convolutions."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def basic_resnet(
    in_channels: int,
    stem_width: int,
    width: int,
    depth: int,
    norm: str,
    out_features,
    freeze_at: int = 0,
    num_classes=None,
):
    """
    The basic-block ResNet (He et al. 2016, Table 1) on detectron2's ``BasicStem`` and
    ``BasicBlock``: ``stem_width`` channels out of the stem, ``width`` out of res2, doubled by
    each later stage.
    With ``num_classes`` it ends in detectron2's pooled linear classifier ("linear").
    """
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(f"ResNet depth {depth}: the narrow ResNet has depth 18 or 34")
    stem = BasicStem(in_channels, stem_width, norm=norm)
    stages, channels = [], stem_width
    for i, num_blocks in enumerate(BLOCKS_PER_STAGE[depth]):
        out_channels = width * 2**i
        first_stride = 1 if i == 0 else 2
        stages.append(
            ResNet.make_stage(
                BasicBlock,
                num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=channels,
                out_channels=out_channels,
                norm=norm,
            )
        )
        channels = out_channels
    return ResNet(
        stem, stages, num_classes=num_classes, out_features=out_features, freeze_at=freeze_at
    )


def build_basic_resnet(cfg, input_shape: ShapeSpec):
    """:func:`basic_resnet` with the widths of ``MODEL.RESNETS``."""
    res = cfg.MODEL.RESNETS
    return basic_resnet(
        input_shape.channels,
        res.STEM_OUT_CHANNELS,
        res.RES2_OUT_CHANNELS,
        res.DEPTH,
        res.NORM,
        res.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )


@BACKBONE_REGISTRY.register()
def build_narrow_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """FPN (Lin et al. 2017) on :func:`build_basic_resnet`, as detectron2 builds it on a ResNet."""
    return FPN(
        bottom_up=build_basic_resnet(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
