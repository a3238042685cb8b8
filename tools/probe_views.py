#!/usr/bin/env python
"""
Probe (a first look, not shipped): the one-view model on each image flipped up-down and turned
by 180 degrees, those views' proposal outputs joined with the mirror view model's cached ones
before the detections' per-class NMS, counted with a given judge.

    python tools/probe_views.py --dataset cil24_val --judge models/cil_candidate_judge_mirror.pth
"""

import argparse
import json
import os

import numpy as np
import torch


def unflipped(boxes, dims, height, width):
    out = boxes.copy()
    if "h" in dims:
        out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    if "v" in dims:
        out[:, 1], out[:, 3] = height - boxes[:, 3], height - boxes[:, 1]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="cil24_val")
    p.add_argument("--cache", default="output/count_stages_mirror")
    p.add_argument("--out", default="output/probe_views")
    p.add_argument("--judge", required=True)
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--views", default="", help="judge/stages: the views joined, e.g. v,hv")
    p.add_argument("--tool", choices=["train_candidate_judge", "count_stages"])
    p.add_argument("--tool-args", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args()

    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs, proposal_outputs
    from deepacc_d2.app.model_zoo import resolve_model
    from deepacc_d2.data.mapper import build_eval_loader
    from deepacc_d2.engine.predictor import load_model
    from deepacc_d2.studies import count_stages

    _, weights, model_opts = resolve_model("cil-r18-crops", None)
    mirror_config = "configs/cpu/f_deepacc_cil_r18_crops_mirror.yaml"
    cfg = setup_cfg(mirror_config, model_opts + ["TEST.KARYOTYPE.COUNT_JUDGE", args.judge], weights)
    records = cached_proposal_outputs(cfg, args.dataset, args.cache)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"views_{args.dataset}.pt")
    if os.path.isfile(path):
        views = torch.load(path, weights_only=False)
    else:
        one_view = setup_cfg("configs/cpu/f_deepacc_cil_r18_crops.yaml", model_opts, weights)
        model = load_model(one_view)
        views = {"v": {}, "hv": {}}
        for inputs in build_eval_loader(one_view, args.dataset):
            x = inputs[0]
            for dims, flip in (("v", [-2]), ("hv", [-2, -1])):
                (out,) = proposal_outputs(model, [dict(x, image=x["image"].flip(flip))])
                h, w = x["height"], x["width"]
                views[dims][x["file_name"]] = {
                    "proposals": unflipped(out["proposals"], dims, h, w),
                    "boxes": unflipped(out["boxes"], dims, h, w),
                    "probs": out["probs"],
                }
            if len(views["v"]) % 50 == 0:
                print(f"{len(views['v'])} images", flush=True)
        torch.save(views, path)
    if args.collect_only:
        return
    if args.tool:
        import importlib.util

        from deepacc_d2.app.karyotype import candidates

        original = candidates.cached_proposal_outputs
        dims = args.views.split(",")

        def joined(cfg_, dataset_name, cache_dir, limit=None):
            out = []
            for r in original(cfg_, dataset_name, cache_dir, limit):
                extra = [views[d][r["file_name"]] for d in dims]
                out.append(
                    dict(r, **{k: np.concatenate([r[k]] + [e[k] for e in extra]) for k in extra[0]})
                )
            return out

        candidates.cached_proposal_outputs = joined
        spec = importlib.util.spec_from_file_location(args.tool, f"tools/{args.tool}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(args.tool_args)
        return
    keys = (
        "counted_once_pct",
        "named_right_pct",
        "not_chromosome_pct",
        "duplicate_pct",
        "no_candidate_pct",
        "not_counted_pct",
        "named_wrong_pct",
        "count_right_pct",
        "call_exact_pct",
    )
    rows = []
    for arm in (("h",), ("h", "v"), ("h", "v", "hv")):
        arm_records = []
        for r in records:
            extra = [views[d][r["file_name"]] for d in arm if d != "h"]
            arm_records.append(
                dict(r, **{k: np.concatenate([r[k]] + [e[k] for e in extra]) for k in extra[0]})
                if extra
                else r
            )
        report, _ = count_stages.stage_report(cfg, arm_records, args.dataset, "probe", args.out)
        row = {"arm": "+".join(("own",) + arm), **{k: round(report[k], 3) for k in keys}}
        row["candidates_per_chromosome"] = round(report["stages"][5]["per_chromosome"], 3)
        row["candidates_cover_pct"] = round(report["stages"][5]["covered_pct"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(os.path.join(args.out, f"arms_{args.dataset}.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
