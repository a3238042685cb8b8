"""
:class:`MirrorViewRCNN`: detectron2's GeneralizedRCNN (with :class:`.roi_heads.DeepACCROIHeads`)
that at inference also sees each image's left-right mirror image. The mirror pass's proposals
and proposal outputs are mirrored back and joined with the image's own before the detections'
per-class NMS, so a chromosome that one view misses can still get a box from the other, and the
two views' boxes of one chromosome meet in the same NMS (docs/studies/counting.md, "The mirror
view as a model"). Each view's second look keeps its own survivors, so one chromosome named
differently by the two views may keep a box of each; the count's class-agnostic NMS and judge
choose between them. Training is GeneralizedRCNN's: the weights are the one-view model's.
"""

from typing import Dict, List

import torch

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from .roi_heads import DeepACCROIHeads

__all__ = ["MirrorViewRCNN", "mirrored_boxes", "proposal_predictions"]


def mirrored_boxes(boxes: torch.Tensor, width) -> torch.Tensor:
    """(..., 4 x n) XYXY boxes of an image ``width`` wide, in its left-right mirror image (the
    same function maps them back)."""
    x0, y0, x1, y1 = (boxes[..., i::4] for i in range(4))  # (..., n) each, also for 0 boxes
    return torch.stack([width - x1, y0, width - x0, y1], dim=-1).flatten(-2)


def _one_view(model, batched_inputs: List[Dict]):
    images = model.preprocess_image(batched_inputs)
    features = model.backbone(images.tensor)
    proposals, _ = model.proposal_generator(images, features, None)
    boxes, probs = model.roi_heads.proposal_predictions(images, features, proposals)
    return images, proposals, boxes, probs


def proposal_predictions(model, batched_inputs: List[Dict]):
    """
    The proposals of a GeneralizedRCNN with DeepACC's ROI heads and every proposal's boxes and
    class probabilities before any selection (``DeepACCROIHeads.proposal_predictions``); for a
    :class:`MirrorViewRCNN`, each image's own followed by its mirror image's, mirrored back.

    Returns:
        ImageList: the images' own view, as ``model.preprocess_image`` gives it.
        list[Instances]: per image the proposals (``proposal_boxes``, ``objectness_logits``).
        list[Tensor]: per image (R_i, K x 4) or (R_i, 4) boxes in the input's pixels.
        list[Tensor]: per image (R_i, K + 1) probabilities, background last.
    """
    images, proposals, boxes, probs = _one_view(model, batched_inputs)
    if not isinstance(model, MirrorViewRCNN):
        return images, proposals, boxes, probs
    mirrored = [dict(x, image=x["image"].flip(-1)) for x in batched_inputs]
    _, m_proposals, m_boxes, m_probs = _one_view(model, mirrored)
    joined, joined_boxes, joined_probs = [], [], []
    for i, (own, other) in enumerate(zip(proposals, m_proposals)):
        width = own.image_size[1]
        both = Instances(own.image_size)
        other_boxes = mirrored_boxes(other.proposal_boxes.tensor, width)
        both.proposal_boxes = Boxes(torch.cat([own.proposal_boxes.tensor, other_boxes]))
        both.objectness_logits = torch.cat([own.objectness_logits, other.objectness_logits])
        joined.append(both)
        joined_boxes.append(torch.cat([boxes[i], mirrored_boxes(m_boxes[i], width)]))
        joined_probs.append(torch.cat([probs[i], m_probs[i]]))
    return images, joined, joined_boxes, joined_probs


@META_ARCH_REGISTRY.register()
class MirrorViewRCNN(GeneralizedRCNN):
    """
    ``MODEL.META_ARCHITECTURE: "MirrorViewRCNN"``: inference on each image and its mirror image
    (:func:`proposal_predictions`), then the ROI heads' own selection of the detections. It
    costs a second pass of the whole model per image.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        heads = self.roi_heads
        if not isinstance(heads, DeepACCROIHeads) or heads.mask_on or heads.keypoint_on:
            raise ValueError("MirrorViewRCNN: needs DeepACCROIHeads, without masks or keypoints")
        if self.proposal_generator is None:
            raise ValueError(
                "MirrorViewRCNN: needs a proposal generator (MODEL.PROPOSAL_GENERATOR)"
            )

    def inference(self, batched_inputs, detected_instances=None, do_postprocess=True):
        if detected_instances is not None:
            raise ValueError("MirrorViewRCNN: no inference from given detected_instances")
        images, proposals, boxes, probs = proposal_predictions(self, batched_inputs)
        results, _ = self.roi_heads.box_predictor.select(boxes, probs, proposals)
        if not do_postprocess:
            return results
        return [
            {"instances": detector_postprocess(r, x.get("height", h), x.get("width", w))}
            for r, x, (h, w) in zip(results, batched_inputs, images.image_sizes)
        ]
