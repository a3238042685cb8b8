"""
The two detection sets of a DeepACC head's output (:meth:`.fast_rcnn.DeepACCOutputLayers.inference`)
from one image's boxes and class probabilities.
"""

import torch
from torch.nn import functional as F

from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Instances

__all__ = ["detection_sets"]


def _isin(elements, test_elements):
    """``torch.isin`` for 1-D tensors, as a comparison ONNX can export."""
    return (elements[:, None] == test_elements[None, :]).any(dim=1)


def detection_sets(boxes, scores, image_size, score_thresh, nms_thresh, topk):
    """
    detectron2's detections (``all_classes``) and the top-1-first ones (``top1``) of one
    image, each detection once, with its proposal's ``class_scores``.

    Args:
        boxes (Tensor): (R, K x 4) or (R, 4).
        scores (Tensor): (R, K + 1), background last.
        score_thresh, nms_thresh, topk: detectron2's ``fast_rcnn_inference`` parameters.

    Returns:
        Instances: fields ``pred_boxes``, ``scores``, ``pred_classes``, ``class_scores``
        (R', K), ``top1``, ``all_classes``.
        Tensor: (R',) the index in [0, R) of each detection's proposal.
    """
    num_classes = scores.shape[1] - 1
    # fast_rcnn_inference drops non-finite rows before indexing; drop them first, the same
    # way, so that its kept indices index our rows.
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    boxes, scores = boxes[valid], scores[valid]
    fg_scores = scores[:, :-1]  # R x K
    top1 = F.one_hot(fg_scores.argmax(dim=1), num_classes).to(torch.bool)
    top1_scores = torch.cat(
        [torch.where(top1, fg_scores, torch.zeros_like(fg_scores)), scores[:, -1:]], dim=1
    )
    sets = []
    for set_scores in (scores, top1_scores):
        (result,), (kept,) = fast_rcnn_inference(
            [boxes],
            [set_scores],
            [image_size],
            score_thresh,
            nms_thresh,
            topk,
        )
        sets.append((result, kept, kept * num_classes + result.pred_classes))
    (every, every_kept, every_key), (first, first_kept, first_key) = sets
    new = ~_isin(first_key, every_key)  # top-1-first detections detectron2's lacks
    result = Instances.cat([every, first[new]])
    kept = torch.cat([every_kept, first_kept[new]])
    result.class_scores = fg_scores[kept]  # R' x K
    # built from tensors, not len(): a traced model must not bake the count in
    result.all_classes = torch.cat(
        [
            torch.ones_like(every_kept, dtype=torch.bool),
            torch.zeros_like(first_kept[new], dtype=torch.bool),
        ]
    )
    result.top1 = torch.cat([_isin(every_key, first_key), new[new]])
    return result, torch.nonzero(valid).squeeze(1)[kept]
