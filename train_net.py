#!/usr/bin/env python
"""
Train and evaluate DeepACC (or the baselines) with detectron2.

    python train_net.py --config-file configs/table1/f_deepacc.yaml
    python train_net.py --config-file configs/cpu/f_deepacc_cpu.yaml OUTPUT_DIR output/x
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/x/model_final.pth
"""

import logging
import os

import torch

import deepacc_d2  # noqa: F401  (compat fixes, registrations) before detectron2
from deepacc_d2.checkpoint import (
    AtomicCheckpointer,
    StopAfter,
    TrainedWeightsCheckpointer,
    TrainingPaused,
)
from deepacc_d2.config import setup_cfg
from deepacc_d2.cpu import use_cpu_bf16
from deepacc_d2.data.mapper import MetaphaseDatasetMapper
from deepacc_d2.data.stream import SeedEachIteration, build_resumable_train_loader, training_seed
from deepacc_d2.inference import evaluate
from deepacc_d2.solver import build_lr_scheduler

from detectron2.engine import (
    DefaultTrainer,
    TrainerBase,
    default_argument_parser,
    default_setup,
    launch,
)
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

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


def setup(args):
    cfg = setup_cfg(args.config_file, args.opts, training=not args.eval_only)
    default_setup(cfg, args)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="deepacc_d2", abbrev_name="deepacc"
    )
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        TrainedWeightsCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    try:
        return trainer.train()
    except TrainingPaused as e:
        logging.getLogger("deepacc_d2").info(str(e))
        return None


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    logging.getLogger(__name__).info(f"Command line arguments: {args}")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
