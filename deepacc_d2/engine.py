"""
Training-setup helpers shared by ``train_net.py`` and the ``deepacc`` command.
"""
import logging
import math

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

from .data.stream import derived_seed

logger = logging.getLogger(__name__)


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
        raise ValueError(f"need positive epochs/images/batch, got {epochs}/{num_images}/"
                         f"{ims_per_batch}")
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
    max_iter, steps = epoch_schedule(cfg.SOLVER.EPOCHS, cfg.SOLVER.EPOCH_STEPS, num_images,
                                     cfg.SOLVER.IMS_PER_BATCH)
    logger.info(f"{cfg.SOLVER.EPOCHS} epochs of {num_images} images: MAX_ITER={max_iter}, "
                f"STEPS={steps}")
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS = max_iter, steps


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (avx512_bf16 or AMX), from /proc/cpuinfo;
    False where that file does not exist."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def use_cpu_bf16(cfg) -> bool:
    """``cfg.SOLVER.CPU_BF16`` resolved for this machine (logged)."""
    mode = str(cfg.SOLVER.CPU_BF16).lower()
    if mode not in ("on", "off", "auto"):
        raise ValueError(f"SOLVER.CPU_BF16 must be on, off or auto, not {cfg.SOLVER.CPU_BF16!r}")
    if not cfg.MODEL.DEVICE.startswith("cpu") or mode == "off":
        return False
    has_bf16 = cpu_has_bf16()
    on = mode == "on" or has_bf16
    logger.info(f"CPU training under bfloat16 autocast: {'yes' if on else 'no'} "
                f"(SOLVER.CPU_BF16={mode}, bf16 instructions: {has_bf16})")
    return on


def resolve_device(cfg):
    """Fall back to the CPU when the config asks for CUDA and none is available."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"MODEL.DEVICE={cfg.MODEL.DEVICE} but CUDA is unavailable: using cpu")
        cfg.MODEL.DEVICE = "cpu"


def build_cfg(config_file: str, opts=(), weights: str = None):
    """A frozen config for inference: get_cfg + DeepACC keys + file + overrides."""
    from detectron2.config import get_cfg

    from .config import add_deepacc_config

    cfg = get_cfg()
    add_deepacc_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if weights:
        cfg.MODEL.WEIGHTS = weights
    resolve_device(cfg)
    cfg.freeze()
    return cfg


class SeedEachIteration(HookBase):
    """
    Seeds torch's RNG (proposal sampling draws from it) before each iteration from (seed,
    rank, iteration), so that iteration t samples alike in an uninterrupted and in a resumed
    run, whatever ran between iterations (evaluation, a data loader starting). The data's
    counterpart is :mod:`deepacc_d2.data.stream`.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def before_step(self):
        torch.manual_seed(derived_seed(self.seed, comm.get_rank(), self.trainer.iter))
