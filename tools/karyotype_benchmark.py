#!/usr/bin/env python
"""
The karyotype step's counting and naming rules compared (docs/studies/counting.md): on a labelled
dataset's cells (the model runs once; its detections are cached in OUT), and on simulated
cells of known karyotype with abnormal karyotypes made common, whose detections are the
model's real ones on that dataset (deepacc_d2.studies.karyotype_benchmark). Prints and writes a
table (summary.md), the chosen rule's costs, and a picture (rules.png).

    python tools/karyotype_benchmark.py --weights cil-r18-crops --dataset cil24_val \\
        --out output/karyotype_benchmark
"""

import argparse
import dataclasses
import json
import os
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="a model of MODEL_ZOO.md or a checkpoint")
    p.add_argument("--config-file")
    p.add_argument("--dataset", default="cil24_val")
    p.add_argument("--out", default="output/karyotype_benchmark")
    p.add_argument("--num-cells", type=int, default=1000, help="simulated cells")
    p.add_argument("--abnormality-scale", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--costs", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument(
        "--fg-thresh", type=float, nargs="+", default=[0.3, 0.5], help="COUNT_FG_THRESH values"
    )
    p.add_argument(
        "--nms", type=float, nargs="+", default=[0.5, 0.7], help="COUNT_NMS_THRESH values"
    )
    p.add_argument("--cache", default="output/count_stages", help="proposal outputs cache")
    p.add_argument("--opts", nargs="+", default=[])
    args = p.parse_args(argv)

    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.karyotype.cell import KaryotypeRules
    from deepacc_d2.app.model_zoo import resolve_model
    from deepacc_d2.studies.karyotype_benchmark import (
        compare_rules,
        dataset_cells,
        plot_rules,
        rules_table,
    )

    config_file, weights, model_opts = resolve_model(args.weights, args.config_file)
    cfg = setup_cfg(config_file, model_opts + args.opts, weights)
    os.makedirs(args.out, exist_ok=True)
    records = dataset_cells(cfg, args.dataset, args.cache)
    base = dataclasses.replace(KaryotypeRules.from_config(cfg), judge="", sex_cost=-1.0)
    rules = {"top-1 score >= p, top class (the paper's counting)": base}
    for fg in args.fg_thresh:
        for nms in args.nms:
            counting = dataclasses.replace(
                base, count_by="foreground", fg_thresh=fg, fg_nms_thresh=nms, assign=False
            )
            rules[f"foreground >= {fg:g}, NMS {nms:g}, top class"] = counting
            for extra in args.costs:
                for missing in args.costs:
                    rules[
                        f"foreground >= {fg:g}, NMS {nms:g}, assignment (extra {extra:g}, "
                        f"missing {missing:g})"
                    ] = dataclasses.replace(
                        counting, assign=True, extra_cost=extra, missing_cost=missing
                    )
    if KaryotypeRules.from_config(cfg).judge:
        rules["the config's rule: the judge's candidates, counted and named together"] = (
            KaryotypeRules.from_config(cfg)
        )
    results, chosen = compare_rules(
        records, rules, args.num_cells, args.abnormality_scale, args.seed
    )
    command = " ".join(["python", "tools/karyotype_benchmark.py"] + sys.argv[1:])
    table = rules_table(results, chosen, args.dataset, command)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"chosen": chosen, "results": results, "command": command}, f, indent=1)
    plot_rules(results, chosen, os.path.join(args.out, "rules.png"), args.dataset)
    print(table)


if __name__ == "__main__":
    main()
