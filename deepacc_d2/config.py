"""
``add_deepacc_config(cfg)``: the keys DeepACC adds to a fresh ``get_cfg()``.
``setup_cfg(...)``: the one way to build a config (the application adds its keys through
it: :mod:`deepacc_d2.app.config`).

Every key says what it means and, where the paper names it, its symbol (DeepACC, MICCAI;
equations referenced by number).
"""

import logging
import math
from typing import Callable

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

logger = logging.getLogger(__name__)


def add_deepacc_config(cfg):
    """
    Add the ``MODEL.DEEPACC``, ``MODEL.SECOND_LOOK``, ``TEST.KARYOTYPE`` (the metrics'),
    ``SOLVER`` and ``INPUT`` keys below to ``cfg`` (in place). Call it right after
    ``get_cfg()``; the application adds its own keys on top
    (:func:`deepacc_d2.app.config.add_application_config`).
    """
    _C = cfg

    # The DeepACC ROI heads (ROI_HEADS.NAME "DeepACCROIHeads"); every switch False = Table 1 (a).
    # Meaning of each piece and the decisions the paper leaves open: docs/method.md.
    _C.MODEL.DEEPACC = CN()
    _C.MODEL.DEEPACC.SEPARATE_BRANCHES = False  # Table 1 (b) "sep": no shared head; bool
    _C.MODEL.DEEPACC.AAM = CN()
    _C.MODEL.DEEPACC.AAM.ENABLED = False  # margin branch trained with margin m (Eq. 1); bool
    _C.MODEL.DEEPACC.AAM.SCALE = 64.0  # s of Eq. 1, > 0
    _C.MODEL.DEEPACC.AAM.MARGIN = 0.25  # m of Eq. 1, radians in [0, π)
    _C.MODEL.DEEPACC.AAM.MARGIN_WARMUP_ITERS = 0  # iterations of a linear m ramp, >= 0 (0: none)
    _C.MODEL.DEEPACC.SIAMESE = CN()
    _C.MODEL.DEEPACC.SIAMESE.ENABLED = False  # inference branch, local class centers (Eq. 2)
    _C.MODEL.DEEPACC.SIAMESE.DELTA = 0.7  # δ of Eq. 2: cosine a local center needs, [-1, 1)
    _C.MODEL.DEEPACC.SIAMESE.TRAIN_CENTERS = "labelled"  # training candidates: labelled, predicted
    _C.MODEL.DEEPACC.SIAMESE.CENTER_GRAD = False  # L_CE also trains the chosen features; bool
    _C.MODEL.DEEPACC.GIA = CN()
    _C.MODEL.DEEPACC.GIA.ENABLED = False  # L_GIA over the Denver groups (Eq. 3); bool
    _C.MODEL.DEEPACC.AAM_LOSS_WEIGHT = 0.1  # α of Eq. 4, >= 0
    _C.MODEL.DEEPACC.CE_LOSS_WEIGHT = 1.0  # β of Eq. 4, >= 0
    _C.MODEL.DEEPACC.GIA_LOSS_WEIGHT = 0.1  # γ of Eq. 4, >= 0

    # The second look (docs/second_look.md): each candidate box named again by a classifier of
    # its own crop of the input image, combined with the detector's class probabilities.
    _C.MODEL.SECOND_LOOK = CN()
    _C.MODEL.SECOND_LOOK.ENABLED = False  # run it at inference (the paper's configs: off); bool
    _C.MODEL.SECOND_LOOK.WEIGHTS = ""  # the crop classifier's weights file (train_crop_classifier)
    _C.MODEL.SECOND_LOOK.CROP_SIZE = 64  # S: the crop's side in pixels, > 0
    _C.MODEL.SECOND_LOOK.CROP_MARGIN = 0.08  # box grown by this x its longest side per side, >= 0
    _C.MODEL.SECOND_LOOK.WIDTH = 32  # the classifier's channels in stem and res2, > 0
    _C.MODEL.SECOND_LOOK.DEPTH = 18  # the classifier's basic-block ResNet depth: 18, 34
    _C.MODEL.SECOND_LOOK.DETECTOR_WEIGHT = 0.5  # w: names ∝ p_detector^w x p_crop, >= 0 (cil24_val)
    _C.MODEL.SECOND_LOOK.SHARE_IOU = 0.0  # boxes at IoU >= this share one crop's names; 0: off
    _C.MODEL.SECOND_LOOK.NOT_CHROMOSOME = False  # the classifier's last class: not one chromosome
    _C.MODEL.SECOND_LOOK.FOREGROUND_WEIGHT = 0.0  # v: fg = f_det x (1 - q_not)^v, in [0, 1]
    _C.MODEL.SECOND_LOOK.NMS_THRESH = 0.0  # > 0: only the survivors of NMS at this IoU stay
    _C.MODEL.SECOND_LOOK.MIN_FOREGROUND = 0.0  # boxes below this foreground: background, [0, 1]
    _C.MODEL.SECOND_LOOK.TURNS = 1  # 2 or 4: doubtful survivors named over crops turned 90°
    _C.MODEL.SECOND_LOOK.TURNS_MARGIN = 1.0  # doubtful: top-two name gap below this, [0, 1]

    # Karyotype metrics (§3.1, docs/metrics.md).
    _C.TEST.KARYOTYPE = CN()
    _C.TEST.KARYOTYPE.IOU_THRESH = 0.5  # a detection matches a truth at IoU >= this, [0, 1]
    _C.TEST.KARYOTYPE.SCORE_THRESH = 0.5  # p: Acc/AER, calls, pictures keep score >= p, [0, 1]
    _C.TEST.KARYOTYPE.NMS_THRESH = 0.7  # class-agnostic NMS IoU after the score cut, [0, 1]
    _C.TEST.CPU_BF16 = "off"  # CPU inference in bf16, channels-last: on, off, auto

    _C.SOLVER.EPOCHS = 0  # > 0: schedule in epochs (§3.1: 24), turned into MAX_ITER / STEPS
    _C.SOLVER.EPOCH_STEPS = (16, 22)  # epochs after which the LR is x GAMMA (§3.1)
    _C.SOLVER.COSINE_RESTARTS = ()  # WarmupCosineLR: iterations where the cosine restarts
    _C.SOLVER.RESTART_LR_FACTOR = 1.0  # peak LR of restart k is BASE_LR x this ** k, (0, 1]
    _C.SOLVER.CPU_BF16 = "off"  # CPU training under bf16 autocast: on, off, auto (CPU has it)
    _C.SOLVER.STOP_AFTER_MINUTES = 0.0  # stop after a checkpoint past M min (resumable); 0: no

    _C.INPUT.ROTATE_90 = False  # training: random rotation by k x 90 degrees; bool
    _C.INPUT.INTENSITY_JITTER = 0.0  # training: brightness, contrast x U[1 - j, 1 + j], [0, 1)


def setup_cfg(
    config_file: str,
    opts=(),
    weights: str = None,
    training: bool = False,
    add_config: Callable = add_deepacc_config,
):
    """
    The frozen config of a run: ``get_cfg()`` with the keys of ``add_config``, the YAML file,
    the command line's overrides, resolved for this machine.

    Args:
        config_file (str): a YAML under ``configs/``.
        opts (sequence[str]): KEY VALUE overrides, as ``cfg.merge_from_list`` takes them.
        weights (str or None): a checkpoint for MODEL.WEIGHTS; None keeps the config's.
        training (bool): also convert SOLVER.EPOCHS into MAX_ITER / STEPS
            (:func:`resolve_schedule`), which reads the training set.
        add_config (callable): adds the keys to a fresh ``get_cfg()``; the application's
            commands pass theirs (:func:`deepacc_d2.app.config.setup_cfg`).

    Returns:
        CfgNode: frozen.
    """
    cfg = get_cfg()
    add_config(cfg)
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

    num_images = sum(len(DatasetCatalog.get(name)) for name in cfg.DATASETS.TRAIN)
    max_iter, steps = epoch_schedule(
        cfg.SOLVER.EPOCHS, cfg.SOLVER.EPOCH_STEPS, num_images, cfg.SOLVER.IMS_PER_BATCH
    )
    logger.info(
        f"{cfg.SOLVER.EPOCHS} epochs of {num_images} images: MAX_ITER={max_iter}, STEPS={steps}"
    )
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS = max_iter, steps
