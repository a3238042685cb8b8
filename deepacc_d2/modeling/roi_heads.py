"""
:class:`DeepACCROIHeads`: detectron2's StandardROIHeads with DeepACC's box head (§2.1) and
predictor (§2.2–2.4). ``_init_box_head`` differs; detectron2's ``_forward_box`` runs as is.
With the second look on (``MODEL.SECOND_LOOK``), inference also names each candidate box from
its crop of the input image, which only ``forward`` sees.
"""

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, build_box_head

from .box_head import build_separate_branches_head
from .fast_rcnn import DeepACCOutputLayers
from .second_look import SecondLook

__all__ = ["DeepACCROIHeads"]


@ROI_HEADS_REGISTRY.register()
class DeepACCROIHeads(StandardROIHeads):
    """
    ``MODEL.DEEPACC`` switches every piece on or off, one config file per row of Table 1.
    With all switches off it builds the same modules, in the same order (so the same random
    initialisation), and computes the same losses and detections as StandardROIHeads; the
    detections then also carry ``class_scores`` (see :meth:`DeepACCOutputLayers.inference`).
    """

    @configurable
    def __init__(self, *, second_look=None, **kwargs):
        """
        Args:
            second_look (SecondLook or None): renames the candidates at inference.
        """
        super().__init__(**kwargs)
        self.second_look = second_look

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        if cfg.MODEL.SECOND_LOOK.ENABLED:
            ret["second_look"] = SecondLook.from_config(cfg)
        return ret

    def forward(self, images, features, proposals, targets=None):
        if self.training or self.second_look is None:
            return super().forward(images, features, proposals, targets)
        # _forward_box's inference, with the second look between the predictor and the selection
        boxes, probs = self.proposal_predictions(images, features, proposals)
        instances, _ = self.box_predictor.select(boxes, probs, proposals)
        return instances, {}

    def proposal_predictions(self, images, features, proposals):
        """
        Every proposal's boxes and class probabilities, before any selection: the predictor's,
        with the second look's names when it is on.

        Returns:
            list[Tensor]: per image (R_i, K x 4) or (R_i, 4) boxes in the input's pixels.
            list[Tensor]: per image (R_i, K + 1) probabilities, background last.
        """
        features = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        predictions = self.box_predictor(self.box_head(box_features))
        boxes = self.box_predictor.predict_boxes(predictions, proposals)
        probs = self.box_predictor.predict_probs(predictions, proposals)
        if self.second_look is not None:
            probs = self.second_look(images, boxes, probs)
        return boxes, probs

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
