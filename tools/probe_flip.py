#!/usr/bin/env python
"""
Probe (a first look, not shipped): the detector on each image and on its mirror image, the
two passes' proposal outputs joined before the detections' per-class NMS, the counting and the
shipped judge.

    python tools/probe_flip.py --dataset cil24_val --cache output/count_stages
"""

import argparse
import json
import os

import numpy as np
import torch


def unflipped(boxes, width):
    """(R, 4) XYXY boxes of the mirror image back in the image's own pixels."""
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="cil24_val")
    p.add_argument("--cache", default="output/count_stages")
    p.add_argument("--out", default="output/probe_flip")
    p.add_argument("--mode", choices=["arms", "collect", "judge", "stages"], default="arms")
    p.add_argument("--tool-args", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args()

    import deepacc_d2  # noqa: F401
    from deepacc_d2.app.config import setup_cfg
    from deepacc_d2.app.karyotype.candidates import cached_proposal_outputs, proposal_outputs
    from deepacc_d2.app.model_zoo import resolve_model
    from deepacc_d2.data.mapper import build_eval_loader
    from deepacc_d2.engine.predictor import load_model
    from deepacc_d2.studies import count_stages

    config_file, weights, model_opts = resolve_model("cil-r18-crops", None)
    cfg = setup_cfg(config_file, model_opts, weights)
    records = cached_proposal_outputs(cfg, args.dataset, args.cache)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"flipped_{args.dataset}.pt")
    if os.path.isfile(path):
        flipped = torch.load(path, weights_only=False)
    else:
        model = load_model(cfg)
        flipped = {}
        for inputs in build_eval_loader(cfg, args.dataset):
            x = dict(inputs[0], image=inputs[0]["image"].flip(-1))
            (out,) = proposal_outputs(model, [x])
            w = x["width"]
            flipped[x["file_name"]] = {
                "proposals": unflipped(out["proposals"], w),
                "boxes": unflipped(out["boxes"], w),
                "probs": out["probs"],
            }
            if len(flipped) % 50 == 0:
                print(f"{len(flipped)} images", flush=True)
        torch.save(flipped, path)
    if args.mode == "collect":
        return
    if args.mode in ("judge", "stages"):
        import importlib.util

        from deepacc_d2.app.karyotype import candidates

        original = candidates.cached_proposal_outputs

        def joined(cfg_, dataset_name, cache_dir, limit=None):
            out = []
            for r in original(cfg_, dataset_name, cache_dir, limit):
                f = flipped[r["file_name"]]
                out.append(dict(r, **{k: np.concatenate([r[k], f[k]]) for k in f}))
            return out

        candidates.cached_proposal_outputs = joined
        tool = "train_candidate_judge" if args.mode == "judge" else "count_stages"
        spec = importlib.util.spec_from_file_location(tool, f"tools/{tool}.py")
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
        "auc_judge",
    )
    rows = []
    for arm in ("original", "mirror", "both"):
        arm_records = []
        for r in records:
            f = flipped[r["file_name"]]
            if arm == "mirror":
                r = dict(r, **f)
            elif arm == "both":
                r = dict(r, **{k: np.concatenate([r[k], f[k]]) for k in f})
            arm_records.append(r)
        report, table = count_stages.stage_report(cfg, arm_records, args.dataset, "probe", args.out)
        row = {"arm": arm, **{k: round(report[k], 3) for k in keys}}
        row["candidates_per_chromosome"] = round(report["stages"][5]["per_chromosome"], 3)
        row["candidates_cover_pct"] = round(report["stages"][5]["covered_pct"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(os.path.join(args.out, f"arms_{args.dataset}.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
