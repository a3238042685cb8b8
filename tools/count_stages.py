#!/usr/bin/env python
"""
Where a cell's chromosomes are lost or counted twice, stage by stage (docs/karyotype.md): the
RPN's proposals, the heads' outputs, the model's detections (score threshold, per-class NMS,
detections cap), the counting rule's threshold and NMS, the counted set; and each cell's count
error as a histogram. The model runs once per dataset and proposal budget; its proposal
outputs are cached in OUT (deepacc_d2.app.karyotype.candidates) and reused by the candidate
judge's training (tools/train_candidate_judge.py).

    python tools/count_stages.py --weights cil-r18-crops --dataset cil24_val \\
        --out output/count_stages
"""

import argparse
import json
import os
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="cil-r18-crops", help="a model of MODEL_ZOO.md or a file")
    p.add_argument("--config-file")
    p.add_argument("--dataset", default="cil24_val")
    p.add_argument("--out", default="output/count_stages")
    p.add_argument(
        "--proposals",
        type=int,
        nargs=2,
        default=None,
        metavar=("PRE_NMS", "POST_NMS"),
        help="RPN budget at test time (default: the config's)",
    )
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--collect-only", action="store_true", help="cache the outputs, no table")
    p.add_argument("--opts", nargs="+", default=[])
    args = p.parse_args(argv)

    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs
    from deepacc_d2.app.model_zoo import resolve_model
    from deepacc_d2.studies import count_stages as stages

    config_file, weights, model_opts = resolve_model(args.weights, args.config_file)
    opts = model_opts + args.opts
    if args.proposals:
        opts += ["MODEL.RPN.PRE_NMS_TOPK_TEST", str(args.proposals[0])]
        opts += ["MODEL.RPN.POST_NMS_TOPK_TEST", str(args.proposals[1])]
    cfg = setup_cfg(config_file, opts, weights)
    records = cached_proposal_outputs(cfg, args.dataset, args.out, args.limit)
    if args.collect_only:
        return
    command = " ".join(["python", "tools/count_stages.py"] + sys.argv[1:])
    report, table = stages.stage_report(cfg, records, args.dataset, command, args.out)
    name = f"stages_{args.dataset}_{cfg.MODEL.RPN.PRE_NMS_TOPK_TEST}"
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
