"""
The second look: each candidate chromosome named again from its own pixels. The detector's
classifier sees a chromosome through a 7 x 7 RoIAlign of FPN features, where its bands are
gone; a small classifier of the chromosome's crop, cut from the input image at the image's
own resolution, sees them. Its class probabilities are combined with the detector's
(:func:`combine_class_probs`) before the detections are selected, so every consumer
(metrics, karyotype, pictures, export) sees the combined vector. Off unless
``MODEL.SECOND_LOOK.ENABLED``; the paper's configs keep it off.

Shape shorthand: N images, R boxes, K foreground classes (label K is background), S crop side.
"""

from typing import List

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, box_iou

from detectron2.structures import ImageList

from .crop_classifier import CropClassifier, crop_boxes, load_classifier

__all__ = ["SecondLook", "combine_class_probs", "name_margin", "shared_crops"]


def combine_class_probs(
    detector_probs, crop_probs, detector_weight: float, foreground_weight: float = 0.0
):
    """
    The detector's and the crop classifier's opinions of each box, as one probability vector.
    Which chromosome it is, is the normalised product p_k^w * q_k of the detector's class
    probabilities p (raised to ``detector_weight`` w) and the crop classifier's q:
    w = 1 the plain product, w = 0 the crop classifier alone. Whether it is one chromosome is
    the detector's call, f = 1 - p_background, unless the crop classifier has the class "not
    one chromosome" (q_not, its last) and ``foreground_weight`` v > 0: then the foreground is
    f * (1 - q_not)^v: the crop can only lower it (a fragment, two chromosomes in one box),
    never make a doubtful box surer; v = 1 is the plain product.

    Args:
        detector_probs (Tensor): (R, K + 1), background last.
        crop_probs (Tensor): (R, K), or (R, K + 1) with "not one chromosome" last.

    Returns:
        Tensor: (R, K + 1); each row's foreground part sums to its foreground probability.
    """
    k = detector_probs.shape[1] - 1
    foreground = 1 - detector_probs[:, -1:]
    joint = detector_probs[:, :k].clamp(min=1e-12).pow(detector_weight) * crop_probs[:, :k]
    names = joint / joint.sum(dim=1, keepdim=True).clamp(min=1e-30)
    if foreground_weight > 0:
        if crop_probs.shape[1] != k + 1:
            raise ValueError(
                "a foreground weight needs a crop classifier with 'not one chromosome'"
            )
        one = (1 - crop_probs[:, k:]).clamp(min=0.0)
        foreground = foreground * one.pow(foreground_weight)
    return torch.cat([names * foreground, 1 - foreground], dim=1)


def shared_crops(boxes, scores, groups, share_iou: float):
    """
    Which crop names each box when near-identical boxes share one: the boxes that greedy NMS
    at ``share_iou`` keeps within each group (image) by score are cropped; every box takes the
    crop of the kept box of its group it overlaps most (itself, when kept). Many proposals
    regress onto the same chromosome; their crops differ in a few pixels, and their classifier
    passes are the second look's main cost.

    Args:
        boxes (Tensor): (R, 4) XYXY.
        scores (Tensor): (R,) which box of a near-identical set is cropped: the highest.
        groups (Tensor): (R,) int64, the image of each box; boxes share only within one.
        share_iou (float): in (0, 1].

    Returns:
        Tensor: (C,) the indices of the boxes cropped.
        Tensor: (R,) for each box the position in the first of the crop that names it.
    """
    cropped = batched_nms(boxes, scores, groups, share_iou)
    overlap = box_iou(boxes, boxes[cropped])  # R x C
    overlap = torch.where(groups[:, None] == groups[cropped][None, :], overlap, -1.0)
    return cropped, overlap.argmax(dim=1)


class SecondLook(nn.Module):
    """
    Crops each candidate box from the input image (:func:`crop_boxes`), names it with a frozen
    :class:`CropClassifier`, and combines that with the detector (:func:`combine_class_probs`).
    Candidates are the boxes whose foreground probability reaches the detector's test score
    threshold: no other box can yield a detection, whatever the combined names. With
    ``MIN_FOREGROUND`` above that threshold, the boxes below it are background instead of
    named (where the karyotype counts from a foreground no lower, they can never be counted).
    With ``NMS_THRESH`` only the candidates that class-agnostic NMS keeps by the combined
    foreground are named, and only they stay foreground (:meth:`_name_survivors`).
    """

    def __init__(
        self,
        classifier: CropClassifier,
        *,
        pixel_mean,
        pixel_std,
        crop_size: int,
        crop_margin: float,
        detector_weight: float,
        score_thresh: float,
        share_iou: float = 0.0,
        foreground_weight: float = 0.0,
        nms_thresh: float = 0.0,
        min_foreground: float = 0.0,
        turns: int = 1,
        turns_margin: float = 1.0,
    ):
        super().__init__()
        # channels-last: the classifier's many small convolutions run faster so on CPUs
        classifier.to(memory_format=torch.channels_last)
        self.classifier = classifier.requires_grad_(False).eval()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.crop_size = crop_size
        self.crop_margin = crop_margin
        self.detector_weight = detector_weight
        self.score_thresh = score_thresh
        self.candidate_thresh = max(score_thresh, min_foreground)
        self.share_iou = share_iou
        self.foreground_weight = foreground_weight
        self.nms_thresh = nms_thresh
        self.turns = turns
        self.turns_margin = turns_margin
        self.weights_file = ""  # set by from_config when the classifier is loaded from a file

    @classmethod
    def from_config(cls, cfg):
        look = cfg.MODEL.SECOND_LOOK
        v = look.FOREGROUND_WEIGHT
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"MODEL.SECOND_LOOK.FOREGROUND_WEIGHT must lie in [0, 1], not {v}")
        if v and not look.NOT_CHROMOSOME:
            raise ValueError(
                "MODEL.SECOND_LOOK.FOREGROUND_WEIGHT > 0 needs a crop classifier with the class "
                "'not one chromosome' (MODEL.SECOND_LOOK.NOT_CHROMOSOME True)"
            )
        if look.TURNS not in (1, 2, 4):
            raise ValueError(f"MODEL.SECOND_LOOK.TURNS must be 1, 2 or 4, not {look.TURNS}")
        for key in ("NMS_THRESH", "MIN_FOREGROUND", "TURNS_MARGIN"):
            if not 0.0 <= look[key] <= 1.0:
                raise ValueError(f"MODEL.SECOND_LOOK.{key} must lie in [0, 1], not {look[key]}")
        classifier = CropClassifier(look.WIDTH, look.DEPTH, not_chromosome=look.NOT_CHROMOSOME)
        module = cls(
            classifier,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            crop_size=look.CROP_SIZE,
            crop_margin=look.CROP_MARGIN,
            detector_weight=look.DETECTOR_WEIGHT,
            score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            share_iou=look.SHARE_IOU,
            foreground_weight=look.FOREGROUND_WEIGHT,
            nms_thresh=look.NMS_THRESH,
            min_foreground=look.MIN_FOREGROUND,
            turns=look.TURNS,
            turns_margin=look.TURNS_MARGIN,
        )
        if look.WEIGHTS:
            load_classifier(classifier, look.WEIGHTS)
            module.weights_file = look.WEIGHTS
        return module

    def train(self, mode: bool = True):
        super().train(mode)
        self.classifier.eval()  # frozen: trained by its own command, BatchNorm statistics kept
        return self

    def forward(self, images: ImageList, boxes: List[torch.Tensor], probs: List[torch.Tensor]):
        """
        Args:
            images (ImageList): the model's normalised input images (N, C, H, W).
            boxes (list[Tensor]): per image (R_i, K x 4) or (R_i, 4), the predicted boxes.
            probs (list[Tensor]): per image (R_i, K + 1), the detector's class probabilities.

        Returns:
            list[Tensor]: per image (R_i, K + 1), the combined probabilities of the candidates,
            background for the boxes below ``MIN_FOREGROUND`` that reach the score threshold,
            the detector's for the other boxes; with ``NMS_THRESH``, the candidates that
            :meth:`_name_survivors` suppresses are background.
        """
        gray = (images.tensor * self.pixel_std + self.pixel_mean).mean(dim=1, keepdim=True)
        sizes = torch.stack([torch.as_tensor(s) for s in images.image_sizes]).to(gray.device)
        picked, which, rows, bases = [], [], [], []
        for i, (boxes_i, probs_i) in enumerate(zip(boxes, probs)):
            foreground = probs_i[:, :-1]
            fg = foreground.sum(dim=1, keepdim=True)
            row = torch.nonzero(fg[:, 0] >= self.candidate_thresh).squeeze(1)
            # what the boxes not named keep: the detector's probabilities, or background
            # between the score threshold and MIN_FOREGROUND
            unnamed = (fg >= self.score_thresh) & (fg < self.candidate_thresh)
            bases.append(torch.where(unnamed, _background_like(probs_i), probs_i).float())
            per_class = boxes_i.view(boxes_i.shape[0], -1, 4)  # R_i x (K or 1) x 4
            # the box of the detector's most probable class (the one box when class-agnostic)
            top = (
                foreground.argmax(dim=1)
                if per_class.shape[1] > 1
                else torch.zeros_like(foreground[:, 0], dtype=torch.long)
            )
            picked.append(per_class[row, top[row]])
            which.append(torch.full_like(row, i))
            rows.append(row)
        picked, which = torch.cat(picked).float(), torch.cat(which)
        detector = torch.cat([probs_i[row] for probs_i, row in zip(probs, rows)]).float()
        if self.nms_thresh > 0:
            combined = self._name_survivors(gray, sizes, picked, which, detector)
        else:
            combined, crop_probs = self._name(gray, sizes, picked, which, detector)
            every = torch.ones_like(picked[:, 0], dtype=torch.bool)  # no len(): traced
            combined = self._turn_doubtful(
                gray, sizes, picked, which, detector, combined, crop_probs, every
            )
        out, start = [], 0
        for base, row in zip(bases, rows):
            end = start + row.shape[0]
            out.append(base.index_put((row,), combined[start:end]))
            start = end
        return out

    def _name(self, gray, sizes, boxes, which, detector):
        """(R, K + 1) the combined probabilities of the boxes (R, 4), from their crops
        (:meth:`_crop_names`) and their ``detector`` probabilities (R, K + 1); with them the
        crop classifier's own (R, K or K + 1)."""
        crop_probs = self._crop_names(gray, sizes, boxes, which, 1 - detector[:, -1])
        combined = combine_class_probs(
            detector, crop_probs, self.detector_weight, self.foreground_weight
        )
        return combined, crop_probs

    def _turn_doubtful(self, gray, sizes, boxes, which, detector, combined, crop_probs, named):
        """
        With ``turns`` > 1, the ``named`` boxes whose two likeliest combined names lie less
        than ``turns_margin`` apart are named again by the mean of the crop classifier's
        probabilities over their crop turned by 0, 90 (, 180, 270) degrees (it is trained on
        turned crops): an ensemble spent only where a name is in doubt, and only on the boxes
        that stay. The views change the names alone: "not one chromosome" stays the first
        view's, so the foreground, and with it which boxes survive, is that of one view.

        Args:
            boxes, which, detector, combined, crop_probs (Tensor): (R, ...) every candidate.
            named (Tensor): (R,) bool, the candidates that stay foreground.

        Returns:
            Tensor: (R, K + 1) ``combined`` with the doubtful names replaced.
        """
        if self.turns == 1:
            return combined
        unsure = named & (name_margin(combined) < self.turns_margin)
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            # no data-dependent subset in a traced graph: every box turned, the sure ones kept
            again = self._turned_names(gray, sizes, boxes, which, detector, crop_probs)
            return torch.where(unsure[:, None], again, combined)
        row = torch.nonzero(unsure).squeeze(1)
        if len(row) == 0:
            return combined
        again = self._turned_names(
            gray, sizes, boxes[row], which[row], detector[row], crop_probs[row]
        )
        return combined.index_put((row,), again)

    def _turned_names(self, gray, sizes, boxes, which, detector, crop_probs):
        """(R, K + 1) :meth:`_turn_doubtful`'s combined probabilities of the boxes."""
        more = range(1, self.turns)
        turned = self._crop_names(gray, sizes, boxes, which, 1 - detector[:, -1], more)
        mean = (crop_probs + len(more) * turned) / self.turns
        k = detector.shape[1] - 1
        mean = torch.cat([mean[:, :k], crop_probs[:, k:]], dim=1)  # one view's q_not
        return combine_class_probs(detector, mean, self.detector_weight, self.foreground_weight)

    def _name_survivors(self, gray, sizes, boxes, which, detector):
        """
        The combined probabilities of the candidates that class-agnostic NMS at
        ``nms_thresh`` keeps within each image by the *combined* foreground (among those
        reaching the score threshold); every other candidate is background. The crop can only
        lower a box's foreground, so the detector's is an upper bound, and only the boxes NMS
        keeps under the current bounds are cropped, round after round, until every box it
        keeps is named: the same survivors as naming every candidate first (a suppressed box
        was suppressed by a kept one at least as sure as its bound), from a few crops per
        chromosome instead of every proposal's (with ``SHARE_IOU`` nearly the same: which
        boxes share a crop depends on the boxes cropped together). A traced model names every
        candidate in one round (its graph cannot loop on data).

        Args:
            boxes (Tensor): (R, 4) the candidates; which (Tensor): (R,) their images.
            detector (Tensor): (R, K + 1) their detector probabilities.

        Returns:
            Tensor: (R, K + 1).
        """
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            # a traced graph can neither loop on data nor size a tensor by len()
            combined, crop_probs = self._name(gray, sizes, boxes, which, detector)
            kept = self._survivors(boxes, which, combined)
        else:
            combined = detector.clone()
            crop_probs = None
            named = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
            kept = self._survivors(boxes, which, combined)
            new = kept
            while len(new) > 0:
                combined[new], probs = self._name(
                    gray, sizes, boxes[new], which[new], detector[new]
                )
                if crop_probs is None:
                    crop_probs = probs.new_zeros(len(boxes), probs.shape[1])
                crop_probs[new] = probs
                named[new] = True
                kept = self._survivors(boxes, which, combined)
                new = kept[~named[kept]]
        survivor = torch.zeros_like(combined[:, 0], dtype=torch.bool)  # no len(): traced
        survivor[kept] = True
        if crop_probs is not None:
            combined = self._turn_doubtful(
                gray, sizes, boxes, which, detector, combined, crop_probs, survivor
            )
        return torch.where(survivor[:, None], combined, _background_like(combined))

    def _survivors(self, boxes, which, probs):
        """(C,) the boxes that class-agnostic NMS at ``nms_thresh`` keeps within each image by
        the foreground of ``probs``, among the candidates that still reach their threshold."""
        fg = 1 - probs[:, -1]
        live = torch.nonzero(fg >= self.candidate_thresh).squeeze(1)
        return live[batched_nms(boxes[live], fg[live], which[live], self.nms_thresh)]

    def _crop_names(self, gray, sizes, boxes, which, fg, turns=(0,)):
        """(R, K or K + 1) the crop classifier's probabilities for each candidate box: each
        from its own crop, or, with ``SHARE_IOU``, near-identical boxes from one
        (:func:`shared_crops`); the mean over the crop turned by each of ``turns`` x 90
        degrees."""
        if self.share_iou > 0:
            cropped, names_of = shared_crops(boxes, fg, which, self.share_iou)
            boxes, which = boxes[cropped], which[cropped]
        with torch.autocast("cpu", enabled=False):
            crops = crop_boxes(gray.float(), sizes, boxes, which, self.crop_size, self.crop_margin)
            crop_probs = sum(
                F.softmax(self.classifier(_turned(crops, k)), dim=1) for k in turns
            ) / len(turns)
        return crop_probs[names_of] if self.share_iou > 0 else crop_probs


def _turned(crops, k: int):
    """(R, 1, S, S) ``crops`` turned by k x 90 degrees, channels-last for the classifier."""
    if k % 4:
        crops = torch.rot90(crops, k, dims=(2, 3))
    return crops.contiguous(memory_format=torch.channels_last)


def name_margin(probs):
    """(R,) how far apart each row's two likeliest names are, as probabilities of the name
    given a chromosome: (p_1 - p_2) / f of the combined (R, K + 1) ``probs``, f = 1 - p_bg."""
    names = probs[:, :-1] / probs[:, :-1].sum(dim=1, keepdim=True).clamp(min=1e-30)
    top2 = names.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def _background_like(probs):
    """(R, K + 1) probabilities of "background" for each row of ``probs``."""
    out = torch.zeros_like(probs)
    out[:, -1] = 1.0
    return out
