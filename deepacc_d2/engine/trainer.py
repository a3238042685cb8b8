"""
The trainer of DeepACC and the baselines: detectron2's ``DefaultTrainer`` with resumable,
exactly continued training (atomic checkpoints, the optimizer saved on detectron2 0.6, each
iteration's sampling seeded by the iteration), bf16 autocast on the CPU, the cosine schedule
with restarts, training in pieces of limited time, and the karyotype evaluation.

``train_net.py`` runs it from the command line, the CIL recipe in its own process.
"""

import logging
import os

import torch

from detectron2.engine import DefaultTrainer, TrainerBase, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data.mapper import MetaphaseDatasetMapper
from ..data.stream import SeedEachIteration, build_resumable_train_loader, training_seed
from .checkpoint import AtomicCheckpointer, StopAfter, TrainedWeightsCheckpointer, TrainingPaused
from .evaluate import evaluate
from .precision import use_cpu_bf16
from .solver import build_lr_scheduler

__all__ = ["Trainer", "evaluate_checkpoint", "setup_run", "train"]

# detectron2 0.6's DefaultTrainer leaves the optimizer out of its checkpoints, so a resumed run
# lost its momentum and ran its first iteration at the LR of iteration 0; later versions save
# it under "_trainer", which Trainer does on 0.6.
_SAVES_OPTIMIZER = DefaultTrainer.state_dict is not TrainerBase.state_dict


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.cpu_bf16 = use_cpu_bf16(cfg)

    def run_step(self):
        # forward, backward and update of one iteration; matmuls and convolutions in bf16
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_bf16):
            super().run_step()

    def build_hooks(self):
        # before detectron2 builds the hooks that save with it
        self.checkpointer = AtomicCheckpointer(
            self.checkpointer.model, self.checkpointer.save_dir, **self.checkpointer.checkpointables
        )
        # each iteration's sampling seeded by the iteration, so that --resume continues exactly
        hooks = [SeedEachIteration(training_seed(self.cfg))] + super().build_hooks()
        if self.cfg.SOLVER.STOP_AFTER_MINUTES > 0:
            hooks.append(StopAfter(self.cfg.SOLVER.STOP_AFTER_MINUTES))
        return hooks

    def state_dict(self):
        ret = super().state_dict()
        if not _SAVES_OPTIMIZER:
            ret["_trainer"] = {"iteration": self.iter, "optimizer": self.optimizer.state_dict()}
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if not _SAVES_OPTIMIZER and "_trainer" in state_dict:
            self.optimizer.load_state_dict(state_dict["_trainer"]["optimizer"])

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        # The first iteration's LR is the schedule's at start_iter, also when the checkpoint's
        # optimizer holds the LR of another schedule (a finished run extended by a restart).
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
            group["lr"] = lr

    @classmethod
    def build_train_loader(cls, cfg):
        # reads files with read_metaphase, skipping unreadable ones; draws on-the-fly synthetic
        # images; after --resume, continues with the batches the killed run would have seen
        return build_resumable_train_loader(cfg, MetaphaseDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # detectron2's, or the cosine with warm restarts (SOLVER.COSINE_RESTARTS)
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def test(cls, cfg, model):
        # the evaluation during training and --eval-only write what `deepacc eval` writes
        results = {
            name: evaluate(cfg, model, name, os.path.join(cfg.OUTPUT_DIR, "inference", name))
            for name in cfg.DATASETS.TEST
        }
        # one dataset: its results unnested, as DefaultTrainer.test returns them
        return next(iter(results.values())) if len(results) == 1 else results


def setup_run(cfg, args):
    """detectron2's ``default_setup`` (OUTPUT_DIR, the config written there, seed, logging)
    and the package's own log in ``OUTPUT_DIR``.

    Args:
        args (argparse.Namespace): as ``default_argument_parser`` gives it (``config_file``,
            ``eval_only`` and ``opts`` are read).
    """
    default_setup(cfg, args)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="deepacc_d2", abbrev_name="deepacc"
    )


def train(cfg, resume: bool = False):
    """
    Train ``cfg`` (``--resume``: on from ``OUTPUT_DIR``'s last checkpoint).

    Returns:
        dict or None: the final evaluation's results; None when the run paused
        (``SOLVER.STOP_AFTER_MINUTES``), to go on with ``resume=True``.
    """
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    try:
        return trainer.train()
    except TrainingPaused as e:
        logging.getLogger("deepacc_d2").info(str(e))
        return None


def evaluate_checkpoint(cfg, resume: bool = False):
    """The evaluation of ``MODEL.WEIGHTS`` (``resume``: of ``OUTPUT_DIR``'s last checkpoint)
    on ``DATASETS.TEST``, as during training."""
    model = Trainer.build_model(cfg)
    TrainedWeightsCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
        cfg.MODEL.WEIGHTS, resume=resume
    )
    return Trainer.test(cfg, model)
