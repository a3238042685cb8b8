"""
The classification pieces of DeepACC (§2.2–2.4) as small functions of tensors, so each can be
tested against hand-computed numbers and reused by :class:`DeepACCOutputLayers`.

Shape shorthand in this module:

    N: number of images in the minibatch
    R: number of proposals (RoIs), R_i of them in image i
    K: number of foreground classes (24 chromosome classes); label K means background
    D: dimension of a proposal's classification feature

Every score matrix has K + 1 columns: the K foreground classes, then background.
"""

import math
from typing import List, Optional, Tuple

import torch
from torch.nn import functional as F

__all__ = [
    "additive_angular_margin",
    "aam_logits",
    "aam_loss",
    "cosine_similarity_matrix",
    "center_candidates",
    "local_class_centers",
    "siamese_logits",
    "group_inner_adjacency_loss",
]

# sin θ = sqrt(1 - cos²θ) has an infinite derivative at |cos θ| = 1; the floor keeps it finite.
_SIN_SQUARED_FLOOR = 1e-6


def cosine_similarity_matrix(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """
    cos θ_ij between each feature x_i and each class center W_j (both L2-normalised), the
    ‖W_j‖‖x_i‖cos θ_j of §2.2 with the norms removed.

    Args:
        features (Tensor): (R, D) proposal features x_i.
        weights (Tensor): (C, D) class centers W_j (rows; ``nn.Linear.weight`` layout).

    Returns:
        Tensor: (R, C) cosines in [-1, 1]. A zero feature (all ReLUs off) has cosine 0 with
        every class instead of NaN.
    """
    return F.normalize(features, dim=1) @ F.normalize(weights, dim=1).t()


def additive_angular_margin(cosine: torch.Tensor, margin: float) -> torch.Tensor:
    """
    cos(θ + m) for θ = arccos(cosine), computed without arccos.

    Two numerical guards:

    * cos(θ + m) = cos θ cos m - sin θ sin m, with sin θ = sqrt(max(1 - cos²θ, ε)): neither
      arccos nor sqrt is differentiated where its derivative is infinite (|cos θ| = 1).
    * Past θ = π - m, cos(θ + m) would rise again (θ + m > π), rewarding the network for
      pushing the target *further* away. There the target logit continues as
      cos θ - (1 - cos m): equal to cos(θ + m) = -1 at θ = π - m, decreasing in θ, and still a
      penalty (≤ cos θ).

    Args:
        cosine (Tensor): any shape, values in [-1, 1].
        margin (float): m in radians, 0 <= m < π.

    Returns:
        Tensor: same shape, finite, with finite gradients.
    """
    cosine = cosine.clamp(-1.0, 1.0)
    sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=_SIN_SQUARED_FLOOR))
    shifted = cosine * math.cos(margin) - sine * math.sin(margin)
    past_pi = cosine < math.cos(math.pi - margin)  # θ > π - m
    return torch.where(past_pi, cosine - (1.0 - math.cos(margin)), shifted)


def aam_logits(
    cosine: torch.Tensor, gt_classes: torch.Tensor, scale: float, margin: float
) -> torch.Tensor:
    """
    The logits inside Eq. 1: s·cos θ_j for every class, s·cos(θ_yi + m) for the target class.

    Background rule (the paper is silent on it): the margin is added only when the target is a
    foreground class (y_i < K). A background proposal keeps s·cos θ_K against a normalised
    background row, without margin: background is "everything that is not a chromosome"
    (empty space, debris, pieces of chromosomes), not a compact class, and it is 3/4 of the
    sampled proposals; an angular margin around one background center would ask it to be
    compact and dominate the loss.

    Args:
        cosine (Tensor): (R, K + 1) cos θ_ij against the normalised global centers W_M.
        gt_classes (Tensor): (R,) int64 labels in [0, K]; K is background.
        scale (float): s.
        margin (float): m in radians (0 gives the normalised softmax, NormFace).

    Returns:
        Tensor: (R, K + 1) logits.
    """
    background = cosine.shape[1] - 1
    target = F.one_hot(gt_classes, cosine.shape[1]).to(torch.bool)
    target &= (gt_classes < background)[:, None]  # background rule: no margin on label K
    penalised = additive_angular_margin(cosine, margin)
    return scale * torch.where(target, penalised, cosine)


def aam_loss(
    cosine: torch.Tensor, gt_classes: torch.Tensor, scale: float, margin: float
) -> torch.Tensor:
    """
    L_AAM of Eq. 1: cross-entropy of :func:`aam_logits`, averaged over the R proposals.

    Args:
        See :func:`aam_logits`.

    Returns:
        Tensor: scalar; 0 (connected to the graph) when R = 0.
    """
    if cosine.numel() == 0:
        return cosine.sum() * 0.0
    return F.cross_entropy(aam_logits(cosine, gt_classes, scale, margin), gt_classes)


def local_class_centers(
    features: torch.Tensor,
    cosine: torch.Tensor,
    global_centers: torch.Tensor,
    delta: float,
    candidates: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    W_I of Eq. 2 for ONE image: for each foreground class j, the candidate proposal with the
    highest margin-branch score s_ij = cos θ_ij; if s_ij > δ its normalised feature x_i/‖x_i‖
    is the class's local center, else the normalised global center W_M,j/‖W_M,j‖. The
    background row is always the normalised global background center (background has no
    "pair"). docs/studies/learning.md says why the score is the cosine, not softmax(s·cos θ).

    Never call it on the proposals of several images at once: the point of Eq. 2 is that each
    metaphase brings its own centers (batch effects).

    Args:
        features (Tensor): (R_i, D) features x of this image's proposals (R_i may be 0).
        cosine (Tensor): (R_i, K + 1) margin-branch cos θ_ij.
        global_centers (Tensor): (K + 1, D) W_M (need not be normalised).
        delta (float): δ in [-1, 1).
        candidates (Tensor): (R_i, K) bool, which proposals may be the center of class j (see
            :func:`center_candidates`).

    Returns:
        Tensor: (K + 1, D) unit-norm centers W_I.
        Tensor: (K,) bool, True where class j uses a local center.
        Tensor: (K,) int64, the proposal chosen for class j (R_i where there is none).
    """
    num_fg = cosine.shape[1] - 1
    global_centers = F.normalize(global_centers, dim=1)
    scores = cosine[:, :num_fg].masked_fill(~candidates, -3.0)  # below any cosine
    # A zero row scoring -2 (above a non-candidate, never > δ) is chosen for a class without
    # candidates; it needs no branch on the data (tracing).
    features = torch.cat([features, features.new_zeros((1, features.shape[1]))])
    scores = torch.cat([scores, scores.new_full((1, num_fg), -2.0)])
    best = scores.argmax(dim=0)  # K
    is_local = scores.gather(0, best[None, :])[0] > delta  # K
    local = F.normalize(features[best], dim=1)  # K x D
    fg_centers = torch.where(is_local[:, None], local, global_centers[:num_fg])
    return torch.cat([fg_centers, global_centers[num_fg:]]), is_local, best


def center_candidates(cosine: torch.Tensor, gt_classes: Optional[torch.Tensor] = None):
    """
    Which proposals may be the local center of class j: in training those labelled j (the
    exemplar reading of "the most confident proposal of class j"), at test time those whose
    top-1 margin-branch class is j.

    Args:
        cosine (Tensor): (R_i, K + 1) margin-branch cos θ_ij of one image.
        gt_classes (Tensor or None): (R_i,) labels in [0, K]; None at test time.

    Returns:
        Tensor: (R_i, K) bool.
    """
    num_classes = cosine.shape[1]
    label = cosine.argmax(dim=1) if gt_classes is None else gt_classes
    return F.one_hot(label, num_classes)[:, : num_classes - 1].to(torch.bool)


def siamese_logits(features: torch.Tensor, centers: torch.Tensor, bias: torch.Tensor):
    """
    The exponent of p_ij in Eq. 2: W_I,jᵀ·x_i + b_j, on the *unnormalised* feature x_i.

    Args:
        features (Tensor): (R_i, D) x of one image.
        centers (Tensor): (K + 1, D) W_I of the same image (:func:`local_class_centers`).
        bias (Tensor): (K + 1,) b.

    Returns:
        Tensor: (R_i, K + 1) logits; softmax gives the model's final scores.
    """
    return features @ centers.t() + bias


def group_inner_adjacency_loss(
    probs_per_image: List[torch.Tensor],
    gt_classes_per_image: List[torch.Tensor],
    adjacency: torch.Tensor,
) -> torch.Tensor:
    """
    L_GIA of Eq. 3. For each positive proposal i (label y_i < K) and each class j adjacent to
    y_i ((y_i, j) ∈ F, same Denver group, j ≠ y_i): the dot product M(x_i)·M_j(x) of its
    margin-branch probability vector with that of the most confident proposal of class j *in
    the same image*. Summed over the N(y_i, j) adjacent classes of y_i ("the sum of
    element-wise product", §2.4), then averaged over the N+ positives of the whole batch.

    "The most confident proposal of class j" (the paper is silent on how it is chosen): among
    the image's proposals *labelled* j, the one with the highest probability for j. A class
    absent from the image (Y in a 46,XX cell, a lost chromosome) has no such proposal, and
    its pairs (y_i, j) are left out. Taking the
    top proposal by prediction alone would, for an absent j, pick a chromosome of another
    class (often of class y_i itself) and penalise two confident, correct answers.

    Args:
        probs_per_image (list[Tensor]): N tensors (R_i, K + 1), margin-branch probabilities M
            (the dot product runs over all K + 1 entries, background included).
        gt_classes_per_image (list[Tensor]): N tensors (R_i,), labels in [0, K].
        adjacency (Tensor): (K, K) bool, the forbidden set F
            (:func:`deepacc_d2.classes.group_adjacency_matrix` for the 24 classes).

    Returns:
        Tensor: scalar; 0 (connected to the graph) when the batch has no positive proposal.
    """
    adjacency = adjacency.to(torch.float32)
    num_fg = adjacency.shape[0]
    total = probs_per_image[0].sum() * 0.0 if probs_per_image else torch.zeros(())
    num_pos = torch.zeros((), device=total.device)
    for probs, gt in zip(probs_per_image, gt_classes_per_image):
        if probs.shape[0] == 0:
            continue
        is_class = F.one_hot(gt, num_fg + 1)[:, :num_fg].to(torch.bool)  # R x K
        present = is_class.any(dim=0)  # K
        # per class j, the proposal labelled j with the highest p_j (-1 elsewhere)
        top = torch.where(is_class, probs[:, :num_fg], probs.new_full((), -1.0)).argmax(dim=0)
        positive = gt < num_fg
        neighbours = adjacency.to(probs)[gt[positive]] * present.to(probs)  # R+ x K
        dots = probs[positive] @ probs[top].t()  # R+ x K: M(x_i)·M_j(x)
        total = total + (dots * neighbours).sum()
        num_pos = num_pos + positive.sum()
    return total / num_pos.clamp(min=1)
