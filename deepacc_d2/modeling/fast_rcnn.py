"""
:class:`DeepACCOutputLayers`: detectron2's Fast R-CNN predictor with DeepACC's classification
branch (§2.2–2.4): margin branch, siamese inference branch, Group Inner-Adjacency loss.

Shape shorthand in this module:

    N: number of images in the minibatch
    R: number of proposals over the minibatch, R_i of them in image i
    K: number of foreground classes; label K means background
    D: dimension of the (classification / regression) branch features

``forward`` returns ``(class_outputs, proposal_deltas)`` like :class:`FastRCNNOutputLayers`.
``class_outputs`` is the (R, K + 1) logit matrix of the linear classifier when there is no
margin branch; with a margin branch it is a dict ``{"cosine": (R, K + 1), "features": (R, D)}``,
because the siamese scores can only be formed per image, in ``losses`` / ``inference``, where
the proposals say which rows belong to which image.
"""
from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import cat, cross_entropy
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from torch import nn
from torch.nn import functional as F

from ..classes import NUM_CLASSES, group_adjacency_matrix
from .losses import (
    aam_loss,
    cosine_similarity_matrix,
    group_inner_adjacency_loss,
    local_class_centers,
    siamese_logits,
)

__all__ = ["DeepACCOutputLayers"]


class DeepACCOutputLayers(FastRCNNOutputLayers):
    """
    With no margin branch this is :class:`FastRCNNOutputLayers` (same modules, same order, same
    initialisation, same losses and detections) plus ``class_scores`` on each detection.

    With a margin branch, ``cls_score`` is a bias-free linear layer whose K + 1 weight rows are
    the global class centers W_M (background last), and:

    * the margin branch (Eq. 1) scores s·cos θ, trained by L_AAM (``loss_aam``, weight α);
    * without the siamese branch (Table 1 (c)) softmax(s·cos θ) is the final score;
    * with it (Eq. 2) each image's own centers W_I give logits W_Iᵀx + b, trained by
      cross-entropy (``loss_cls``, weight β), and their softmax is the final score;
    * L_GIA (Eq. 3, ``loss_gia``, weight γ) acts on the margin branch's probabilities.
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        margin_branch: bool = False,
        aam_scale: float = 64.0,
        aam_margin: float = 0.25,
        siamese: bool = False,
        siamese_delta: float = 0.5,
        center_grad: bool = False,
        gia: bool = False,
        aam_loss_weight: float = 0.1,
        ce_loss_weight: float = 1.0,
        gia_loss_weight: float = 0.1,
        **kwargs,
    ):
        """
        Args:
            input_shape (ShapeSpec): shape of the branch features.
            margin_branch (bool): build the cosine classifier of §2.2 (needed by the siamese
                branch and L_GIA). False: detectron2's linear classifier.
            aam_scale (float): s of Eq. 1.
            aam_margin (float): m of Eq. 1 in radians; 0 trains the margin branch with the
                normalised softmax (Table 1 (d), siamese without AAM).
            siamese (bool): add the siamese inference branch of Eq. 2.
            siamese_delta (float): δ of Eq. 2.
            center_grad (bool): let L_CE back-propagate into the centers W_I.
            gia (bool): add L_GIA (Eq. 3); needs the margin branch and 24 classes.
            aam_loss_weight, ce_loss_weight, gia_loss_weight (float): α, β, γ of Eq. 4.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        assert margin_branch or not (siamese or gia), "siamese / GIA need the margin branch"
        self.margin_branch = margin_branch
        self.aam_scale = aam_scale
        self.aam_margin = aam_margin
        self.siamese = siamese
        self.siamese_delta = siamese_delta
        self.center_grad = center_grad
        self.gia = gia
        self.aam_loss_weight = aam_loss_weight
        self.ce_loss_weight = ce_loss_weight
        self.gia_loss_weight = gia_loss_weight
        if not margin_branch:
            return  # nothing more: detectron2's predictor exactly

        # Eq. 1: last FC without bias; its rows are the global class centers W_M.
        in_features = self.cls_score.in_features
        self.cls_score = nn.Linear(in_features, self.num_classes + 1, bias=False)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        if siamese:
            # b_j of Eq. 2, initialised to 0 as the paper says.
            self.inference_bias = nn.Parameter(torch.zeros(self.num_classes + 1))
        if gia:
            assert self.num_classes == NUM_CLASSES, "L_GIA is defined on the 24 Denver classes"
            # Not a checkpoint entry: it is fixed by the Denver system, not learned.
            adjacency = torch.as_tensor(group_adjacency_matrix())
            self.register_buffer("group_adjacency", adjacency, persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        deepacc = cfg.MODEL.DEEPACC
        ret.update(
            {
                "margin_branch": deepacc.AAM.ENABLED or deepacc.SIAMESE.ENABLED,
                "aam_scale": deepacc.AAM.SCALE,
                # Table 1 (d) trains the margin branch with m = 0 (see config.py).
                "aam_margin": deepacc.AAM.MARGIN if deepacc.AAM.ENABLED else 0.0,
                "siamese": deepacc.SIAMESE.ENABLED,
                "siamese_delta": deepacc.SIAMESE.DELTA,
                "center_grad": deepacc.SIAMESE.CENTER_GRAD,
                "gia": deepacc.GIA.ENABLED,
                "aam_loss_weight": deepacc.AAM_LOSS_WEIGHT,
                "ce_loss_weight": deepacc.CE_LOSS_WEIGHT,
                "gia_loss_weight": deepacc.GIA_LOSS_WEIGHT,
            }
        )
        return ret

    def forward(self, x):
        """
        Args:
            x (Tensor or tuple[Tensor, Tensor]): (R, ...) features of one shared box head, or
                ``(cls_features, reg_features)`` from :class:`SeparateBranchesHead`.

        Returns:
            (class_outputs, proposal_deltas): see the module docstring; proposal_deltas is
            (R, K * 4) or (R, 4), as in :class:`FastRCNNOutputLayers`.
        """
        cls_x, reg_x = x if isinstance(x, (tuple, list)) else (x, x)
        if cls_x.dim() > 2:
            cls_x = torch.flatten(cls_x, start_dim=1)
        if reg_x.dim() > 2:
            reg_x = torch.flatten(reg_x, start_dim=1)
        if not self.margin_branch:
            return self.cls_score(cls_x), self.bbox_pred(reg_x)
        cosine = cosine_similarity_matrix(cls_x, self.cls_score.weight)  # R x (K + 1)
        return {"cosine": cosine, "features": cls_x}, self.bbox_pred(reg_x)

    def margin_probs(self, class_outputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """
        Returns:
            Tensor: (R, K + 1) the margin branch's probabilities softmax(s·cos θ): its scores
            s_ij of Eq. 2 and the vectors M of Eq. 3. The margin is a training penalty on the
            known target only, so it is not part of them.
        """
        return F.softmax(self.aam_scale * class_outputs["cosine"], dim=1)

    def final_logits(self, predictions, proposals: List[Instances]):
        """
        The logits whose softmax is the model's score, per image.

        Returns:
            list[Tensor]: N tensors (R_i, K + 1).
            list[Tensor]: N tensors (K,) bool, which classes use a local center (siamese only;
            empty list otherwise).
        """
        class_outputs, _ = predictions
        num_per_image = [len(p) for p in proposals]
        if not self.margin_branch:
            return list(class_outputs.split(num_per_image)), []
        if not self.siamese:
            return list((self.aam_scale * class_outputs["cosine"]).split(num_per_image)), []

        features = class_outputs["features"]
        # The selection (argmax, > δ) has no gradient in any case; the scores never need one.
        probs = self.margin_probs(class_outputs).detach()
        center_features, global_centers = features, self.cls_score.weight
        if not self.center_grad:
            center_features, global_centers = features.detach(), global_centers.detach()
        logits, is_local = [], []
        for x_i, cx_i, p_i in zip(
            features.split(num_per_image),
            center_features.split(num_per_image),
            probs.split(num_per_image),
        ):  # Eq. 2 per image: never mix the proposals of two metaphases
            centers, local_i = local_class_centers(cx_i, p_i, global_centers, self.siamese_delta)
            logits.append(siamese_logits(x_i, centers, self.inference_bias))
            is_local.append(local_i)
        return logits, is_local

    def losses(self, predictions, proposals: List[Instances]):
        """
        Args:
            predictions: return values of :meth:`forward()`.
            proposals (list[Instances]): with ``proposal_boxes``, ``gt_boxes``, ``gt_classes``.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_box_reg`` as detectron2; with the margin
            branch ``loss_aam`` (α L_AAM), ``loss_cls`` (β L_CE, siamese only) and
            ``loss_gia`` (γ L_GIA), already weighted (Eq. 4).
        """
        if not self.margin_branch:
            return super().losses(predictions, proposals)

        class_outputs, proposal_deltas = predictions
        device = proposal_deltas.device
        gt_classes = (
            cat([p.gt_classes for p in proposals], dim=0)
            if len(proposals)
            else torch.empty(0, dtype=torch.long, device=device)
        )
        losses = {
            "loss_box_reg": self._box_reg_loss(proposal_deltas, proposals, gt_classes)
            * self.loss_weight.get("loss_box_reg", 1.0),
            "loss_aam": self.aam_loss_weight
            * aam_loss(class_outputs["cosine"], gt_classes, self.aam_scale, self.aam_margin),
        }
        logits, is_local = self.final_logits(predictions, proposals)
        logits = cat(logits, dim=0) if logits else class_outputs["cosine"]
        if self.siamese:
            losses["loss_cls"] = self.ce_loss_weight * cross_entropy(
                logits, gt_classes, reduction="mean"
            )
        if self.gia:
            num_per_image = [len(p) for p in proposals]
            losses["loss_gia"] = self.gia_loss_weight * group_inner_adjacency_loss(
                list(self.margin_probs(class_outputs).split(num_per_image)),
                list(gt_classes.split(num_per_image)),
                self.group_adjacency,
            )
        self._log_metrics(logits, gt_classes, is_local)
        return losses

    def _box_reg_loss(self, proposal_deltas, proposals: List[Instances], gt_classes):
        """Smooth-L1 of the regression branch: detectron2's ``box_reg_loss`` on the
        concatenated proposals (a proposal without a ground truth is background and unused)."""
        if not len(proposals):
            empty = proposal_deltas.new_zeros((0, 4))
            return self.box_reg_loss(empty, empty, proposal_deltas, gt_classes)
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)  # R x 4
        gt_boxes = cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals],
            dim=0,
        )
        return self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes)

    def _log_metrics(self, logits, gt_classes, is_local: List[torch.Tensor]):
        """The same training statistics, under the same names, as detectron2's Fast R-CNN
        (so the rows of Table 1 compare in one TensorBoard), plus the share of local centers."""
        storage = get_event_storage()
        if gt_classes.numel():
            pred = logits.argmax(dim=1)
            fg = gt_classes < self.num_classes
            storage.put_scalar("fast_rcnn/cls_accuracy", (pred == gt_classes).float().mean().item())
            if fg.any():
                fg_pred = pred[fg]
                storage.put_scalar("fast_rcnn/fg_cls_accuracy",
                                   (fg_pred == gt_classes[fg]).float().mean().item())
                storage.put_scalar("fast_rcnn/false_negative",
                                   (fg_pred == self.num_classes).float().mean().item())
        if is_local:
            # Share of (image, class) pairs whose center is local rather than global (Eq. 2).
            storage.put_scalar(
                "deepacc/local_center_fraction", torch.stack(is_local).float().mean().item()
            )

    def predict_probs(self, predictions, proposals: List[Instances]):
        """
        Returns:
            list[Tensor]: N tensors (R_i, K + 1), the final class probabilities: detectron2's
            softmax, or that of the margin branch (no siamese branch), or that of the
            siamese inference branch.
        """
        if not self.margin_branch:
            return super().predict_probs(predictions, proposals)
        logits, _ = self.final_logits(predictions, proposals)
        return [F.softmax(x, dim=-1) for x in logits]

    def inference(self, predictions: Tuple, proposals: List[Instances]):
        """
        detectron2's per-class score threshold, NMS and top-k, and on each detection the
        ``class_scores`` (R', K) of the proposal it comes from: the proposal's full foreground
        probability vector (background column dropped, not renormalised). A detection is its
        proposal's top-1 class iff ``pred_classes == class_scores.argmax(1)`` (mAPmax, §3.1).

        Returns:
            list[Instances]: as :func:`fast_rcnn_inference`, plus ``class_scores``.
            list[Tensor]: per image, the index in [0, R_i) of each detection's proposal.
        """
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        # fast_rcnn_inference drops non-finite rows before indexing; drop them first, the same
        # way, so that its kept indices index our rows.
        valid = [torch.isfinite(b).all(dim=1) & torch.isfinite(s).all(dim=1)
                 for b, s in zip(boxes, scores)]
        boxes = [b[v] for b, v in zip(boxes, valid)]
        scores = [s[v] for s, v in zip(scores, valid)]
        instances, kept = fast_rcnn_inference(
            boxes,
            scores,
            [x.image_size for x in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )
        proposal_indices = []
        for result, scores_i, kept_i, valid_i in zip(instances, scores, kept, valid):
            result.class_scores = scores_i[kept_i, :-1]  # R' x K
            proposal_indices.append(torch.nonzero(valid_i).squeeze(1)[kept_i])
        return instances, proposal_indices
