"""
``add_deepacc_config(cfg)``: the keys DeepACC adds to a fresh ``get_cfg()``.
``setup_cfg(...)``: the one way to build a config, for ``train_net.py`` and every
``deepacc`` command.

Every key says what it means and, where the paper names it, its symbol (DeepACC, MICCAI;
equations referenced by number).
"""

import logging
import math

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

logger = logging.getLogger(__name__)


def add_deepacc_config(cfg):
    """
    Add the ``MODEL.DEEPACC``, ``TEST.KARYOTYPE``, ``SOLVER.EPOCHS`` and ``DATASETS.SYNTH``
    keys to ``cfg`` (in place). Call it right after ``get_cfg()``.
    """
    _C = cfg

    # Switches and weights of the DeepACC ROI heads (``ROI_HEADS.NAME: "DeepACCROIHeads"``).
    # With every switch False the heads are detectron2's StandardROIHeads, bit for bit, plus a
    # ``class_scores`` field on the outputs (Table 1 (a)).
    _C.MODEL.DEEPACC = CN()
    # Table 1 (b) "sep" (§2.1): a classification branch and a regression branch that share no
    # parameters. Each is a head of the kind MODEL.ROI_BOX_HEAD describes (NAME, NUM_CONV,
    # NUM_FC, FC_DIM: the paper's two 1024-wide FC layers each) on the same pooled RoI
    # features. True / False (False = detectron2's one shared box head).
    _C.MODEL.DEEPACC.SEPARATE_BRANCHES = False

    # Margin branch (§2.2, Eq. 1): the last FC of the classification branch without bias, its
    # class weights W_M (the global class centers, K + 1 rows with background last) and the
    # features both L2-normalised; logits s·cos θ_j.
    _C.MODEL.DEEPACC.AAM = CN()
    # True: train the margin branch with the additive angular margin m on the target class
    # (L_AAM, Eq. 1). Background targets never get the margin (see losses.aam_logits).
    # False while SIAMESE.ENABLED (Table 1 (d)): the margin branch still exists, because the
    # inference branch needs its normalised centers and scores, and is trained with m = 0
    # (normalised softmax cross-entropy s·cos θ, NormFace), weighted by α.
    # False and SIAMESE False: no margin branch, detectron2's linear classifier.
    _C.MODEL.DEEPACC.AAM.ENABLED = False
    # s: the scale of the cosine logits, > 0. Paper: 64.
    _C.MODEL.DEEPACC.AAM.SCALE = 64.0
    # m: the additive angular margin in radians, in [0, π). Paper: 0.25.
    _C.MODEL.DEEPACC.AAM.MARGIN = 0.25
    # Iterations over which m ramps linearly from 0 to MARGIN; 0 = no ramp (docs/learning.md).
    _C.MODEL.DEEPACC.AAM.MARGIN_WARMUP_ITERS = 0

    # Siamese inference branch (§2.3, Eq. 2): per-image local class centers W_I; logits
    # W_I,jᵀ·x + b_j on the unnormalised x, trained by L_CE; its softmax is the final score.
    _C.MODEL.DEEPACC.SIAMESE = CN()
    _C.MODEL.DEEPACC.SIAMESE.ENABLED = False
    # δ of Eq. 2, in [-1, 1): a local center needs margin-branch score cos θ > δ (paper: none;
    # 0.7 measured in docs/learning.md).
    _C.MODEL.DEEPACC.SIAMESE.DELTA = 0.7
    # Training candidates for class j's center: "labelled" (proposals labelled j) or
    # "predicted" (every proposal, as at test time). docs/learning.md.
    _C.MODEL.DEEPACC.SIAMESE.TRAIN_CENTERS = "labelled"
    # L_CE back-propagates into the chosen proposals' features (it always trains W_M).
    _C.MODEL.DEEPACC.SIAMESE.CENTER_GRAD = False

    # Group Inner-Adjacency loss (§2.4, Eq. 3) on the margin branch's probabilities, over the
    # Denver groups (deepacc_d2.classes.group_adjacency_matrix). Needs the margin branch
    # (AAM or SIAMESE enabled) and ROI_HEADS.NUM_CLASSES = 24. True / False.
    _C.MODEL.DEEPACC.GIA = CN()
    _C.MODEL.DEEPACC.GIA.ENABLED = False

    # Eq. 4: L = L_det + α L_AAM + β L_CE + γ L_GIA (paper: α 0.1, β 1.0, γ 0.1), each >= 0.
    # α: weight of the margin branch's loss (``loss_aam``), with or without margin.
    _C.MODEL.DEEPACC.AAM_LOSS_WEIGHT = 0.1
    # β: weight of the inference branch's cross-entropy (``loss_cls``, SIAMESE only; without
    # the siamese branch ``loss_cls`` is detectron2's classification loss, weight 1).
    _C.MODEL.DEEPACC.CE_LOSS_WEIGHT = 1.0
    # γ: weight of L_GIA (``loss_gia``).
    _C.MODEL.DEEPACC.GIA_LOSS_WEIGHT = 0.1

    # Karyotype metrics (§3.1), used by KaryotypeEvaluator.
    _C.TEST.KARYOTYPE = CN()
    _C.TEST.KARYOTYPE.IOU_THRESH = 0.5  # a detection matches a ground truth at IoU >= this
    # Acc/AER, karyotype calls and pictures keep top-1 detections with score >= p, then
    # apply class-agnostic NMS at NMS_THRESH (evaluation.metrics.select_for_counting).
    _C.TEST.KARYOTYPE.SCORE_THRESH = 0.5  # p, in [0, 1]
    _C.TEST.KARYOTYPE.NMS_THRESH = 0.7  # IoU above which the lower-scoring box goes
    # Review flags of a cell's karyotype (deepacc_d2.karyotype.cell.review_flags):
    _C.TEST.KARYOTYPE.REVIEW_LOW_SCORE = 0.8  # a counted call below this is low-confidence
    _C.TEST.KARYOTYPE.REVIEW_LOW_SCORE_SHARE = 0.1  # flag when more than this share is low
    _C.TEST.KARYOTYPE.REVIEW_OVERLAP_IOU = 0.3  # flag two counted boxes overlapping this much
    _C.TEST.KARYOTYPE.REVIEW_AMBIGUITY_MARGIN = 0.2  # flag top-2 of one group closer than this

    # Schedule in epochs (the paper: 24 epochs, LR x0.1 at 16 and 22). When EPOCHS > 0,
    # train_net.py converts them to MAX_ITER / STEPS from the training set's size and
    # SOLVER.IMS_PER_BATCH; 0 keeps MAX_ITER / STEPS as written.
    _C.SOLVER.EPOCHS = 0
    # Training on the CPU under bfloat16 autocast: "on", "off", or "auto" (on where the CPU has
    # bf16 instructions: avx512_bf16 or AMX). detectron2's AMP (SOLVER.AMP) is CUDA-only.
    _C.SOLVER.CPU_BF16 = "off"
    # Inference on the CPU under bfloat16 autocast, channels-last (deepacc eval / predict /
    # karyotype): "on", "off", or "auto", as SOLVER.CPU_BF16.
    _C.TEST.CPU_BF16 = "off"
    _C.SOLVER.EPOCH_STEPS = (16, 22)

    # Training augmentations beyond detectron2's resize and flip (deepacc_d2.data.augment).
    _C.INPUT.ROTATE_90 = False  # rotate by a random multiple of 90 degrees: True / False
    _C.INPUT.INTENSITY_JITTER = 0.0  # brightness and contrast x U[1 - j, 1 + j], j in [0, 1)


def setup_cfg(config_file: str, opts=(), weights: str = None, training: bool = False):
    """
    The frozen config of a run: ``get_cfg()`` with the DeepACC keys, the YAML file, the
    command line's overrides, resolved for this machine.

    Args:
        config_file (str): a YAML under ``configs/``.
        opts (sequence[str]): KEY VALUE overrides, as ``cfg.merge_from_list`` takes them.
        weights (str or None): a checkpoint for MODEL.WEIGHTS; None keeps the config's.
        training (bool): also convert SOLVER.EPOCHS into MAX_ITER / STEPS
            (:func:`resolve_schedule`), which reads the training set.

    Returns:
        CfgNode: frozen.
    """
    cfg = get_cfg()
    add_deepacc_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if weights:
        cfg.MODEL.WEIGHTS = weights
    resolve_device(cfg)
    if training:
        resolve_schedule(cfg)
    cfg.freeze()
    return cfg


def resolve_device(cfg):
    """Fall back to the CPU when the config asks for CUDA and none is available (cfg must
    not be frozen)."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"MODEL.DEVICE={cfg.MODEL.DEVICE} but CUDA is unavailable: using cpu")
        cfg.MODEL.DEVICE = "cpu"


def epoch_schedule(epochs: int, epoch_steps, num_images: int, ims_per_batch: int):
    """
    Convert the paper's schedule in epochs (§3.1: 24 epochs, LR x0.1 at 16 and 22) into
    detectron2's iterations.

    Args:
        epochs (int): E, epochs to train.
        epoch_steps (tuple[int]): epochs after which the LR is multiplied by SOLVER.GAMMA.
        num_images (int): images in the training set.
        ims_per_batch (int): images per iteration (all GPUs together).

    Returns:
        tuple[int, tuple[int]]: (MAX_ITER, STEPS).
    """
    if epochs <= 0 or num_images <= 0 or ims_per_batch <= 0:
        raise ValueError(
            f"need positive epochs/images/batch, got {epochs}/{num_images}/{ims_per_batch}"
        )
    iters_per_epoch = math.ceil(num_images / ims_per_batch)
    steps = tuple(int(e * iters_per_epoch) for e in epoch_steps if e < epochs)
    return epochs * iters_per_epoch, steps


def resolve_schedule(cfg):
    """When ``cfg.SOLVER.EPOCHS > 0``, set MAX_ITER and STEPS from the training set's size
    (cfg must not be frozen)."""
    if cfg.SOLVER.EPOCHS <= 0:
        return
    from detectron2.data import DatasetCatalog

    num_images = sum(len(DatasetCatalog.get(name)) for name in cfg.DATASETS.TRAIN)
    max_iter, steps = epoch_schedule(
        cfg.SOLVER.EPOCHS, cfg.SOLVER.EPOCH_STEPS, num_images, cfg.SOLVER.IMS_PER_BATCH
    )
    logger.info(
        f"{cfg.SOLVER.EPOCHS} epochs of {num_images} images: MAX_ITER={max_iter}, STEPS={steps}"
    )
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS = max_iter, steps
