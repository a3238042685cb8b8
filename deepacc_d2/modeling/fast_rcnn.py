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

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import cat, cross_entropy
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ..classes import NUM_CLASSES, group_adjacency_matrix
from .branch_stats import log_branch_statistics, log_classification
from .classification import (
    aam_loss,
    center_candidates,
    cosine_similarity_matrix,
    group_inner_adjacency_loss,
    local_class_centers,
    siamese_logits,
)
from .detections import detection_sets

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
        siamese_delta: float = 0.7,
        train_centers: str = "labelled",
        center_grad: bool = False,
        margin_warmup_iters: int = 0,
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
            train_centers (str): in training, the candidates for the local center of class j:
                "labelled" (proposals labelled j) or "predicted" (every proposal, as at test).
            center_grad (bool): let L_CE back-propagate into the chosen proposals' features
                (local centers); it always reaches the global centers W_M it uses.
            margin_warmup_iters (int): ramp m linearly from 0 over this many iterations.
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
        assert train_centers in ("labelled", "predicted"), train_centers
        self.train_centers = train_centers
        self.margin_warmup_iters = margin_warmup_iters
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
                # Table 1 (d) trains the margin branch with m = 0 (docs/method.md).
                "aam_margin": deepacc.AAM.MARGIN if deepacc.AAM.ENABLED else 0.0,
                "siamese": deepacc.SIAMESE.ENABLED,
                "siamese_delta": deepacc.SIAMESE.DELTA,
                "train_centers": deepacc.SIAMESE.TRAIN_CENTERS,
                "margin_warmup_iters": deepacc.AAM.MARGIN_WARMUP_ITERS,
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
        # float32 whatever autocast does elsewhere: s·cos θ with s = 64 needs the digits
        with torch.autocast(device_type=cls_x.device.type, enabled=False):
            cls_x = cls_x.float()
            cosine = cosine_similarity_matrix(cls_x, self.cls_score.weight.float())  # R x (K+1)
        return {"cosine": cosine, "features": cls_x}, self.bbox_pred(reg_x)

    def margin_logits(self, class_outputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """
        Returns:
            Tensor: (R, K + 1) the margin branch's logits s·cos θ. Their softmax is its scores
            s_ij of Eq. 2 and the vectors M of Eq. 3. The margin is a training penalty on the
            known target only, so it is not part of them.
        """
        return self.aam_scale * class_outputs["cosine"]

    def current_margin(self) -> float:
        """m of Eq. 1 at this training iteration: ramped linearly from 0 over
        ``margin_warmup_iters`` (the usual remedy when a large-scale angular margin stalls
        from scratch), then constant."""
        if self.margin_warmup_iters <= 0:
            return self.aam_margin
        progress = min(1.0, get_event_storage().iter / self.margin_warmup_iters)
        return self.aam_margin * progress

    def final_logits(
        self, predictions, proposals: List[Instances], by_label: Optional[bool] = None
    ):
        """
        The logits whose softmax is the model's score, per image.

        Args:
            by_label (bool or None): choose local centers among the proposals labelled with
                their class (True) or by prediction (False, the test-time rule); None: by label
                in training when ``train_centers`` is "labelled".

        Returns:
            list[Tensor]: N tensors (R_i, K + 1).
            list[Tensor]: N tensors (K,) bool, which classes use a local center (siamese only;
            empty list otherwise).
            list[Tensor]: N tensors (K,) int64, the proposal chosen for each class (R_i where
            none; siamese only).
        """
        class_outputs, _ = predictions
        num_per_image = [len(p) for p in proposals]
        if not self.margin_branch:
            return list(class_outputs.split(num_per_image)), [], []
        if not self.siamese:
            return list(self.margin_logits(class_outputs).split(num_per_image)), [], []

        features, cosine = class_outputs["features"], class_outputs["cosine"].detach()
        # L_CE trains the global centers W_M it uses (the fallback and background rows: they
        # are the margin branch's weights); into the chosen proposals' features only with
        # center_grad. The selection (argmax, > δ) has no gradient in any case.
        center_features = features if self.center_grad else features.detach()
        if by_label is None:
            by_label = self.training and self.train_centers == "labelled"
        logits, is_local, chosen = [], [], []
        for i, (x_i, cx_i, cos_i) in enumerate(
            zip(
                features.split(num_per_image),
                center_features.split(num_per_image),
                cosine.split(num_per_image),
            )
        ):  # Eq. 2 per image: never mix the proposals of two metaphases
            candidates = center_candidates(cos_i, proposals[i].gt_classes if by_label else None)
            centers, local_i, best_i = local_class_centers(
                cx_i, cos_i, self.cls_score.weight, self.siamese_delta, candidates
            )
            logits.append(siamese_logits(x_i, centers, self.inference_bias))
            is_local.append(local_i)
            chosen.append(best_i)
        return logits, is_local, chosen

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
            * aam_loss(class_outputs["cosine"], gt_classes, self.aam_scale, self.current_margin()),
        }
        logits, _, _ = self.final_logits(predictions, proposals)
        logits = cat(logits, dim=0) if logits else self.margin_logits(class_outputs)
        if self.siamese:
            losses["loss_cls"] = self.ce_loss_weight * cross_entropy(
                logits, gt_classes, reduction="mean"
            )
        if self.gia:
            num_per_image = [len(p) for p in proposals]
            losses["loss_gia"] = self.gia_loss_weight * group_inner_adjacency_loss(
                list(F.softmax(self.margin_logits(class_outputs), dim=1).split(num_per_image)),
                list(gt_classes.split(num_per_image)),
                self.group_adjacency,
            )
        log_classification(logits, gt_classes, self.num_classes)
        log_branch_statistics(self, predictions, gt_classes, proposals)
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

    def predict_probs(self, predictions, proposals: List[Instances]):
        """
        Returns:
            list[Tensor]: N tensors (R_i, K + 1), the final class probabilities: detectron2's
            softmax, or that of the margin branch (no siamese branch), or that of the
            siamese inference branch.
        """
        if not self.margin_branch:
            return super().predict_probs(predictions, proposals)
        logits, _, _ = self.final_logits(predictions, proposals)
        return [F.softmax(x, dim=-1) for x in logits]

    def inference(self, predictions: Tuple, proposals: List[Instances]):
        """
        Two detection sets from the same boxes and scores, returned together:

        * detectron2's (``all_classes``): per-class score threshold, NMS and top-k over every
          class of every proposal; mAP is computed on it.
        * the top-1-first set (``top1``): each proposal keeps only its top-1 foreground class,
          then the same threshold, per-class NMS and top-k. mAPmax, Acc and AER (§3.1) and the
          pictures use it. Selecting top-1 *after* NMS instead would let a proposal's
          second-best box suppress another proposal's top-1 box, then be dropped itself.

        A detection in both sets (same proposal, same class, so the same box and score) appears
        once. Each carries ``class_scores`` (R', K): its proposal's foreground probability
        vector (background column dropped, not renormalised).

        Returns:
            list[Instances]: per image, fields ``pred_boxes``, ``scores``, ``pred_classes``,
            ``class_scores``, ``top1`` (bool), ``all_classes`` (bool).
            list[Tensor]: per image, the index in [0, R_i) of each detection's proposal.
        """
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        return self.select(boxes, scores, proposals)

    def select(self, boxes: List[torch.Tensor], scores: List[torch.Tensor], proposals):
        """
        The detections of :meth:`inference` from given boxes and class probabilities (the
        second look hands in its combined probabilities here).

        Args:
            boxes (list[Tensor]): per image (R_i, K x 4) or (R_i, 4), :meth:`predict_boxes`.
            scores (list[Tensor]): per image (R_i, K + 1), :meth:`predict_probs` or a substitute.
        """
        results, proposal_indices = [], []
        for boxes_i, scores_i, proposals_i in zip(boxes, scores, proposals):
            result, indices = detection_sets(
                boxes_i,
                scores_i,
                proposals_i.image_size,
                self.test_score_thresh,
                self.test_nms_thresh,
                self.test_topk_per_image,
            )
            results.append(result)
            proposal_indices.append(indices)
        return results, proposal_indices
