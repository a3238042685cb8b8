"""
:class:`KaryotypeRetinaNet`: detectron2's RetinaNet (Table 2's one-stage baseline) whose
detections also carry ``class_scores``, so that every Table 2 row is judged by the same top-1
rule (mAPmax, Acc, AER).
"""

from typing import List, Tuple

import torch

from detectron2.layers import batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.structures import Boxes, Instances

__all__ = ["KaryotypeRetinaNet"]


@META_ARCH_REGISTRY.register()
class KaryotypeRetinaNet(RetinaNet):
    """
    The same detections as :class:`RetinaNet` (score threshold and top-k candidates per
    level, per-class NMS, top detections per image), each with ``class_scores`` (R', K): the
    sigmoid scores of every class at the anchor it comes from.
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
        boxes, scores, classes, class_scores = [], [], [], []
        for anchors_l, scores_l, deltas_l in zip(anchors, box_cls, box_delta):
            candidates = torch.nonzero(scores_l > self.test_score_thresh)  # C x 2
            candidate_scores = scores_l[candidates[:, 0], candidates[:, 1]]
            order = candidate_scores.argsort(descending=True)[: self.test_topk_candidates]
            anchor_idx, class_idx = candidates[order].unbind(dim=1)
            boxes.append(
                self.box2box_transform.apply_deltas(
                    deltas_l[anchor_idx], anchors_l.tensor[anchor_idx]
                )
            )
            scores.append(candidate_scores[order])
            classes.append(class_idx)
            class_scores.append(scores_l[anchor_idx])
        boxes, scores, classes = cat(boxes), cat(scores), cat(classes)
        keep = batched_nms(boxes, scores, classes, self.test_nms_thresh)
        keep = keep[: self.max_detections_per_image]
        result = Instances(image_size)
        result.pred_boxes = Boxes(boxes[keep])
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        result.class_scores = cat(class_scores)[keep]
        return result
