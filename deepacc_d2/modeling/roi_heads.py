"""
:class:`DeepACCROIHeads`: detectron2's StandardROIHeads with DeepACC's box head (§2.1) and
predictor (§2.2–2.4). Only ``_init_box_head`` differs; detectron2's ``_forward_box`` runs as is.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, build_box_head

from .box_head import build_separate_branches_head
from .fast_rcnn import DeepACCOutputLayers

__all__ = ["DeepACCROIHeads"]


@ROI_HEADS_REGISTRY.register()
class DeepACCROIHeads(StandardROIHeads):
    """
    ``MODEL.DEEPACC`` switches every piece on or off, one config file per row of Table 1.
    With all switches off it builds the same modules, in the same order (so the same random
    initialisation), and computes the same losses and detections as StandardROIHeads; the
    detections then also carry ``class_scores`` (see :meth:`DeepACCOutputLayers.inference`).
    """

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        # One head serves every FPN level, so the levels must agree on the channel count.
        channels = {input_shape[f].channels for f in in_features}
        assert len(channels) == 1, channels
        pooled_shape = ShapeSpec(channels=channels.pop(), height=resolution, width=resolution)

        box_pooler = ROIPooler(
            output_size=resolution,
            scales=tuple(1.0 / input_shape[f].stride for f in in_features),
            sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
        )
        # The difference v.s. StandardROIHeads: the "sep" head and DeepACC's predictor.
        if cfg.MODEL.DEEPACC.SEPARATE_BRANCHES:
            box_head = build_separate_branches_head(cfg, pooled_shape)
        else:
            box_head = build_box_head(cfg, pooled_shape)
        box_predictor = DeepACCOutputLayers(cfg, box_head.output_shape)
        return {
            "box_in_features": in_features,
            "box_pooler": box_pooler,
            "box_head": box_head,
            "box_predictor": box_predictor,
        }
