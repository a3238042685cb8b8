"""
:class:`DeepACCROIHeads`: detectron2's StandardROIHeads with DeepACC's box head (§2.1) and
predictor (§2.2–2.4). ``_init_box_head`` differs; detectron2's ``_forward_box`` runs as is.
With the second look on (``MODEL.SECOND_LOOK``), inference also names each candidate box from
its crop of the input image, which only ``forward`` sees; with ``MODEL.DEEPACC.BOX_VOTE_IOU``
each candidate's box is the vote of the proposals' boxes around it (:func:`vote_boxes`).
"""

import torch

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, build_box_head
from detectron2.structures import Boxes, pairwise_iou

from .box_head import build_separate_branches_head
from .fast_rcnn import DeepACCOutputLayers
from .second_look import SecondLook

__all__ = ["DeepACCROIHeads", "vote_boxes"]

VOTE_POWER = 4.0  # a voter weighs its detector foreground to this power (docs/studies/counting.md)


def vote_boxes(boxes, voters, weights, iou_thresh: float):
    """
    Box voting: each box replaced by the weighted mean of the ``voters`` that overlap it at
    IoU >= ``iou_thresh`` (Gidaris & Komodakis, ICCV 2015, §3.4); a box no voter reaches stays.
    Many proposals regress onto one chromosome, each a little off; their mean, weighted to
    the surest, lies closer to the chromosome than the one box NMS keeps.

    Args:
        boxes (Tensor): (R, 4) XYXY; voters (Tensor): (V, 4); weights (Tensor): (V,) >= 0.

    Returns:
        Tensor: (R, 4).
    """
    overlap = pairwise_iou(Boxes(boxes), Boxes(voters))  # R x V
    w = torch.where(overlap >= iou_thresh, weights[None, :], torch.zeros_like(overlap))
    total = w.sum(dim=1, keepdim=True)
    voted = (w @ voters) / total.clamp(min=1e-12)
    return torch.where(total > 0, voted, boxes)


@ROI_HEADS_REGISTRY.register()
class DeepACCROIHeads(StandardROIHeads):
    """
    ``MODEL.DEEPACC`` switches every piece on or off, one config file per row of Table 1.
    With all switches off it builds the same modules, in the same order (so the same random
    initialisation), and computes the same losses and detections as StandardROIHeads; the
    detections then also carry ``class_scores`` (see :meth:`DeepACCOutputLayers.inference`).
    """

    @configurable
    def __init__(self, *, second_look=None, box_vote_iou: float = 0.0, **kwargs):
        """
        Args:
            second_look (SecondLook or None): renames the candidates at inference.
            box_vote_iou (float): > 0: at inference each candidate's box is voted by the
                proposals' boxes overlapping it at IoU >= this (:meth:`_voted`).
        """
        super().__init__(**kwargs)
        self.second_look = second_look
        self.box_vote_iou = box_vote_iou

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        if cfg.MODEL.SECOND_LOOK.ENABLED:
            ret["second_look"] = SecondLook.from_config(cfg)
        vote = cfg.MODEL.DEEPACC.BOX_VOTE_IOU
        if not 0.0 <= vote <= 1.0:
            raise ValueError(f"MODEL.DEEPACC.BOX_VOTE_IOU must lie in [0, 1], not {vote}")
        ret["box_vote_iou"] = vote
        return ret

    def forward(self, images, features, proposals, targets=None):
        if self.training or (self.second_look is None and not self.box_vote_iou):
            return super().forward(images, features, proposals, targets)
        # _forward_box's inference, with the second look between the predictor and the selection
        boxes, probs = self.proposal_predictions(images, features, proposals)
        instances, _ = self.box_predictor.select(boxes, probs, proposals)
        return instances, {}

    def proposal_predictions(self, images, features, proposals):
        """
        Every proposal's boxes and class probabilities, before any selection: the predictor's,
        with the second look's names when it is on, and the candidates' boxes voted
        (:meth:`_voted`) when box voting is.

        Returns:
            list[Tensor]: per image (R_i, K x 4) or (R_i, 4) boxes in the input's pixels.
            list[Tensor]: per image (R_i, K + 1) probabilities, background last.
        """
        features = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        predictions = self.box_predictor(self.box_head(box_features))
        boxes = self.box_predictor.predict_boxes(predictions, proposals)
        probs = self.box_predictor.predict_probs(predictions, proposals)
        detector = probs
        if self.second_look is not None:
            probs = self.second_look(images, boxes, probs)
        if self.box_vote_iou > 0:
            boxes = [self._voted(*args) for args in zip(boxes, detector, probs)]
        return boxes, probs

    def _voted(self, boxes, detector, probs):
        """
        One image's boxes with each candidate's (a box whose foreground reaches the score
        threshold) replaced, for every class, by the vote (:func:`vote_boxes`) of every
        proposal's box of its detector's top class, weighted by the detector's foreground to
        the power VOTE_POWER, around the candidate's box of its top class.

        Args:
            boxes (Tensor): (R, K x 4) or (R, 4); detector, probs (Tensor): (R, K + 1), the
                detector's probabilities and the final ones (the second look's).

        Returns:
            Tensor: the shape of ``boxes``.
        """
        per_class = boxes.view(boxes.shape[0], -1, 4)
        rows = torch.arange(boxes.shape[0], device=boxes.device)

        def top_box(p):
            if per_class.shape[1] == 1:
                return per_class[:, 0]
            return per_class[rows, p[:, :-1].argmax(dim=1)]

        weights = (1 - detector[:, -1]).clamp(min=0).pow(VOTE_POWER)
        voted = vote_boxes(top_box(probs), top_box(detector), weights, self.box_vote_iou)
        candidate = (1 - probs[:, -1]) >= self.box_predictor.test_score_thresh
        out = torch.where(candidate[:, None, None], voted[:, None, :].expand_as(per_class), per_class)
        return out.reshape(boxes.shape)

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
