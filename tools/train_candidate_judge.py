#!/usr/bin/env python
"""
Train the candidate judge (deepacc_d2.app.karyotype.judge) on the detector's own candidates of a
labelled dataset, and choose how much counting trusts it (TEST.KARYOTYPE.COUNT_JUDGE_WEIGHT
and the assignment's costs) on images of that dataset the judge did not train on. The model's
proposal outputs are cached once in --cache (tools/count_stages.py's cache); training the
judge itself takes seconds, so a rerun trains it again from the cache.

    python tools/train_candidate_judge.py --weights cil-r18-crops --dataset cil24_train \\
        --out output/judge --ship models/cil_candidate_judge.pth
"""

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="cil-r18-crops", help="a model of MODEL_ZOO.md or a file")
    p.add_argument("--config-file")
    p.add_argument("--dataset", default="cil24_train")
    p.add_argument("--cache", default="output/count_stages", help="proposal outputs cache")
    p.add_argument("--out", default="output/judge")
    p.add_argument("--held-out", type=float, default=0.2, help="share of images to choose on")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge-weights", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--costs", type=float, nargs="+", default=[6.0, 8.0], help="extra copy costs")
    p.add_argument(
        "--missing-costs",
        type=float,
        nargs="+",
        help="missing copy costs (default: each equal to the extra copy cost)",
    )
    p.add_argument("--sex-costs", type=float, nargs="+", default=[-1.0, 2.0, 4.0])
    p.add_argument(
        "--review-tolerance",
        type=float,
        default=1.0,
        help="review thresholds: at most this %% of held-out cells wrong and not sent",
    )
    p.add_argument("--ship", help="also copy the judge to this file (trained on every image)")
    p.add_argument("--opts", nargs="+", default=[])
    args = p.parse_args(argv)

    import torch

    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs
    from deepacc_d2.app.karyotype.cell import KaryotypeRules
    from deepacc_d2.app.karyotype.judge import judge_state
    from deepacc_d2.app.model_zoo import resolve_model
    from deepacc_d2.engine.files import write_atomic
    from deepacc_d2.studies import judge_training as jt
    from deepacc_d2.studies.karyotype_benchmark import detection_cells
    from deepacc_d2.studies.review_choice import (
        choose_thresholds,
        plot_tradeoff,
        review_cells,
        review_table,
        threshold_rows,
    )

    config_file, weights, model_opts = resolve_model(args.weights, args.config_file)
    cfg = setup_cfg(config_file, model_opts + args.opts, weights)
    records = cached_proposal_outputs(cfg, args.dataset, args.cache)
    examples = jt.judge_examples(cfg, records)
    fit, held = jt.split_images(len(records), args.held_out, args.seed)
    os.makedirs(args.out, exist_ok=True)

    def save(judge, name):
        path = os.path.join(args.out, name)
        write_atomic(path, lambda f: torch.save(judge_state(judge), f))
        return path

    trial = save(
        jt.train_judge([examples[i] for i in fit], args.hidden, args.epochs, seed=args.seed),
        "judge_fit.pth",
    )
    held_cells = detection_cells(cfg, [records[i] for i in held])  # the model's detections, once
    base = dataclasses.replace(KaryotypeRules.from_config(cfg), judge="")

    def rule(judge_weight, cost, missing_cost, sex_cost):
        return dataclasses.replace(
            base,
            judge=trial,
            judge_weight=judge_weight,
            extra_cost=cost,
            missing_cost=missing_cost,
            sex_cost=sex_cost,
        )

    results = {}
    costs = [
        (cost, missing)
        for cost in args.costs
        for missing in (args.missing_costs if args.missing_costs else [cost])
    ]
    for weight, (cost, missing), sex in itertools.product(
        args.judge_weights, costs, args.sex_costs
    ):
        rules = rule(weight, cost, missing, sex)
        cost_name = f"costs {cost:g}" if missing == cost else f"costs {cost:g} / {missing:g}"
        sex_name = f", X/Y {sex:g}" if sex >= 0 else ""
        results[f"judge weight {weight:g}, {cost_name}{sex_name}"] = (
            jt.count_summary(held_cells, rules),
            {"judge_weight": weight, "cost": cost, "missing_cost": missing, "sex_cost": sex},
        )
        print(list(results)[-1], results[list(results)[-1]][0], flush=True)
    chosen = jt.choose_rule({k: v[0] for k, v in results.items()})
    command = " ".join(["python", "tools/train_candidate_judge.py"] + sys.argv[1:])
    lines = [
        f"{len(held)} held-out cells of {args.dataset} (judge trained on the other "
        f"{len(fit)}; `{command}`):",
        "",
        "| rule | counted right % | called exactly % | exact, normal % | exact, abnormal % "
        "| named right % | on no chromosome % | counted per cell |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, value in results.items():
        summary = value[0]
        mark = " **(chosen)**" if name == chosen else ""
        lines.append(
            f"| {name}{mark} | {summary['count_right']:.1f} | {summary['exact']:.1f} | "
            f"{summary['exact_normal']:.1f} | {summary['exact_abnormal']:.1f} | "
            f"{summary['named_right']:.1f} | {summary['not_chromosome']:.2f} | "
            f"{summary['counted_per_cell']:.1f} |"
        )
    table = "\n".join(lines) + "\n"
    # the review flags' thresholds, for the chosen rule on the same held-out cells
    chosen_rules = rule(**results[chosen][1])
    firings = review_cells(held_cells, chosen_rules)
    rows = threshold_rows(firings, [f["exact"] for f in firings])
    ranked = choose_thresholds(rows, args.review_tolerance)
    table += "\n" + review_table(ranked, chosen_rules, args.review_tolerance)
    plot_tradeoff(rows, os.path.join(args.out, "review.png"))
    final = save(jt.train_judge(examples, args.hidden, args.epochs, seed=args.seed), "judge.pth")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {"chosen": chosen, "results": results, "review": ranked[0], "command": command},
            f,
            indent=1,
        )
    print(table)
    print(f"chosen: {chosen}; judge trained on all {len(records)} images: {final}")
    if args.ship:
        shutil.copyfile(final, args.ship)
        print(f"shipped as {args.ship}")


if __name__ == "__main__":
    main()
