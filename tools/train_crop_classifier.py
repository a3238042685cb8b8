"""
Train the second look's crop classifier (docs/second_look.md) on the labelled chromosomes of a
config's DATASETS.TRAIN, evaluated on its DATASETS.TEST. A run in --output with the same settings
is resumed from OUTPUT/last.pth, or, finished, reused; one with other settings is refused.

    python tools/train_crop_classifier.py --config-file configs/cpu/f_deepacc_cil_r18_crops.yaml \\
        --epochs 4 --output output/crop_classifier [--ship models/cil_crop_classifier.pth]
"""

import argparse
import json
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True, help="a config with MODEL.SECOND_LOOK")
    p.add_argument("--output", default="output/crop_classifier")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-period", type=int, default=0, help="steps between evaluations (0: each epoch)"
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: whichever trains faster on this CPU (timed at the start)",
    )
    p.add_argument(
        "--negatives",
        type=float,
        default=0.5,
        help="with MODEL.SECOND_LOOK.NOT_CHROMOSOME: negative boxes per chromosome",
    )
    p.add_argument(
        "--wrong-candidates",
        metavar="MODEL",
        help="with NOT_CHROMOSOME: also the wrong counting candidates of this model of "
        "MODEL_ZOO.md on DATASETS.TRAIN",
    )
    p.add_argument(
        "--candidates-cache",
        default="output/count_stages",
        help="where the model's outputs are cached (tools/count_stages.py --out)",
    )
    p.add_argument(
        "--candidate-opts",
        nargs="+",
        action="append",
        metavar="KEY VALUE",
        help="config overrides of the --wrong-candidates model (e.g. its classifier's weights); "
        "given again, the wrong candidates of each version together",
    )
    p.add_argument("--init", default="", help="start from these crop classifier weights")
    p.add_argument("--ship", help="also write the final weights as float16 to this file")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE")
    args = p.parse_args(argv)

    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.model_zoo import save_half_weights
    from deepacc_d2.studies.crop_training import train_crop_classifier

    from detectron2.utils.logger import setup_logger

    setup_logger(name="deepacc_d2", abbrev_name="deepacc")
    cfg = setup_cfg(args.config_file, args.opts)
    wrong = None
    if args.wrong_candidates:
        from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs
        from deepacc_d2.app.model_zoo import resolve_model
        from deepacc_d2.studies.judge_training import boxes_together, wrong_candidates

        config_file, weights, model_opts = resolve_model(args.wrong_candidates, None)
        wrong = {}
        for opts in args.candidate_opts or [[]]:
            model_cfg = setup_cfg(config_file, model_opts + opts, weights)
            records = cached_proposal_outputs(
                model_cfg, cfg.DATASETS.TRAIN[0], args.candidates_cache
            )
            wrong = boxes_together(wrong, wrong_candidates(model_cfg, records))
    summary = train_crop_classifier(
        cfg,
        args.output,
        args.epochs,
        batch_size=args.batch_size,
        base_lr=args.lr,
        seed=args.seed,
        eval_period=args.eval_period,
        precision=args.precision,
        negatives=args.negatives,
        init=args.init,
        wrong_boxes=wrong,
    )
    summary["command"] = " ".join(["python", "tools/train_crop_classifier.py"] + sys.argv[1:])
    if args.ship:
        digest, size = save_half_weights(f"{args.output}/model_final.pth", args.ship)
        summary["shipped"] = {"path": args.ship, "sha256": digest, "bytes": size}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
