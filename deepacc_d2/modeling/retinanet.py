"""
:class:`KaryotypeRetinaNet`: detectron2's RetinaNet (Table 2's one-stage baseline) whose
detections also carry ``class_scores``, so that every Table 2 row is judged by the same top-1
rule (mAPmax, Acc, AER).
"""

from typing import List, Tuple

import torch

from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.structures import Boxes

__all__ = ["KaryotypeRetinaNet"]


@META_ARCH_REGISTRY.register()
class KaryotypeRetinaNet(RetinaNet):
    """
    The installed detectron2's :class:`RetinaNet` detections, unchanged, each with
    ``class_scores`` (R', K): the sigmoid scores of every class at the anchor it comes from.
    """

    def inference_single_image(
        self,
        anchors: List[Boxes],
        box_cls: List[torch.Tensor],
        box_delta: List[torch.Tensor],
        image_size: Tuple[int, int],
    ):
        """
        Args:
            anchors (list[Boxes]): per feature level, its (A_l) anchors.
            box_cls (list[Tensor]): per level, (A_l, K) sigmoid scores.
            box_delta (list[Tensor]): per level, (A_l, 4) box deltas.
            image_size (tuple[int, int]): (H, W).

        Returns:
            Instances: ``pred_boxes``, ``scores``, ``pred_classes``, ``class_scores``.
        """
        result = super().inference_single_image(anchors, box_cls, box_delta, image_size)
        result.class_scores = self._anchor_class_scores(result, anchors, box_cls, box_delta)
        return result

    def _anchor_class_scores(self, result, anchors, box_cls, box_delta):
        """
        Each detection's anchor, found again (the detectron2 versions decode by different
        private functions, so the anchor indices are not handed out): an anchor whose score
        for the detection's class is the detection's score, and whose decoded box is the
        detection's box (the nearest, should two anchors tie on the score).

        Returns:
            Tensor: (R', K) the class scores of each detection's anchor.
        """
        scores = cat(box_cls)  # A x K
        decoded = self.box2box_transform.apply_deltas(
            cat(box_delta), cat([a.tensor for a in anchors])
        )  # A x 4
        same_score = scores[:, result.pred_classes].T == result.scores[:, None]  # R' x A
        distance = (decoded[None] - result.pred_boxes.tensor[:, None]).abs().sum(dim=2)
        anchor = torch.where(same_score, distance, torch.full_like(distance, float("inf")))
        return scores[anchor.argmin(dim=1)]
