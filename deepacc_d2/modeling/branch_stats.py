"""
Training statistics of a DeepACC head, logged to detectron2's event storage: detectron2's
Fast R-CNN accuracies, and those that tell the branches apart (``deepacc/``).
"""

from typing import List

import torch

from detectron2.layers import cat
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

__all__ = ["log_branch_statistics", "log_classification"]


def log_classification(logits, gt_classes, num_classes: int, prefix: str = "fast_rcnn"):
    """The same training statistics, under the same names, as detectron2's Fast R-CNN
    (so the rows of Table 1 compare in one TensorBoard)."""
    storage = get_event_storage()
    if not gt_classes.numel():
        return
    pred = logits.argmax(dim=1)
    fg = gt_classes < num_classes
    storage.put_scalar(f"{prefix}/cls_accuracy", (pred == gt_classes).float().mean().item())
    if fg.any():
        fg_pred = pred[fg]
        storage.put_scalar(
            f"{prefix}/fg_cls_accuracy", (fg_pred == gt_classes[fg]).float().mean().item()
        )
        storage.put_scalar(
            f"{prefix}/false_negative", (fg_pred == num_classes).float().mean().item()
        )


@torch.no_grad()
def log_branch_statistics(predictor, predictions, gt_classes, proposals: List[Instances]):
    """
    Statistics that tell the branches apart (``deepacc/``): the margin branch's own
    accuracies, the mean feature norm ‖x‖, and for the siamese branch, under the
    test-time rule (centers chosen by prediction): its accuracies, the share of
    (image, class) pairs with a local center and the label purity of those centers.
    """
    storage = get_event_storage()
    class_outputs, _ = predictions
    storage.put_scalar("deepacc/feature_norm", class_outputs["features"].norm(dim=1).mean().item())
    log_classification(
        predictor.margin_logits(class_outputs), gt_classes, predictor.num_classes, "deepacc/margin"
    )
    if not predictor.siamese or not gt_classes.numel():
        return
    logits, is_local, chosen = predictor.final_logits(predictions, proposals, by_label=False)
    pure = []
    for gt_i, local_i, best_i in zip(
        gt_classes.split([len(p) for p in proposals]), is_local, chosen
    ):
        labels = torch.cat([gt_i, gt_i.new_full((1,), -1)])[best_i]  # K
        pure.append(labels[local_i] == torch.nonzero(local_i).squeeze(1))
    # The final scores as inference forms them (centers by prediction, not by label).
    log_classification(cat(logits), gt_classes, predictor.num_classes, "deepacc/test_centers")
    storage.put_scalar("deepacc/local_center_fraction", torch.stack(is_local).float().mean().item())
    pure = torch.cat(pure)
    if pure.numel():
        storage.put_scalar("deepacc/local_center_purity", pure.float().mean().item())
