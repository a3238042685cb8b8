#!/usr/bin/env python
"""
Train and evaluate DeepACC (or the baselines) with detectron2.

    python train_net.py --config-file configs/table1/f_deepacc.yaml
    python train_net.py --config-file configs/cpu/f_deepacc_cpu.yaml OUTPUT_DIR output/x
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/x/model_final.pth
"""

import logging

import deepacc_d2  # noqa: F401  (compat fixes, registrations) before detectron2
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.engine.trainer import evaluate_checkpoint, setup_run, train

from detectron2.engine import default_argument_parser, launch


def setup(args):
    cfg = setup_cfg(args.config_file, args.opts, training=not args.eval_only)
    setup_run(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        return evaluate_checkpoint(cfg, resume=args.resume)
    return train(cfg, resume=args.resume)


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
