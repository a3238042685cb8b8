#!/usr/bin/env python
"""
How often a model's karyotype call is exactly right, on synthetic cells of known karyotype
(abnormal karyotypes made common), beside how often the chromosome count is: a table
(``summary.md``) and the per-cell calls (``cells.csv``).

    python tools/karyotype_benchmark.py --config-file C --weights W --num-cells 60 \\
        --out output/karyotype_benchmark
    python tools/karyotype_benchmark.py --oracle ...   # the true boxes as the detections:
                                                       # checks the karyotype step alone
"""

import argparse
import csv
import os
import time
from collections import Counter

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", default="")
    p.add_argument(
        "--oracle",
        action="store_true",
        help="use the true boxes and classes (score 1) instead of the model",
    )
    p.add_argument("--num-cells", type=int, default=60)
    p.add_argument(
        "--abnormality-scale",
        type=float,
        default=6.0,
        help="multiplies the generator's default abnormal-karyotype rates",
    )
    p.add_argument("--image-size", type=int, nargs=2, default=(600, 800), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default="output/karyotype_benchmark")
    p.add_argument("--pictures", type=int, default=2, help="overlay + karyogram PNGs to write")
    p.add_argument("--opts", nargs="+", default=[])
    args = p.parse_args()

    import torch
    from PIL import Image

    import deepacc_d2  # noqa: F401
    from deepacc_d2.classes import NUM_CLASSES, class_index
    from deepacc_d2.config import setup_cfg
    from deepacc_d2.karyotype.cell import ReviewRules
    from deepacc_d2.karyotype.run import karyotype_cell
    from deepacc_d2.synth.karyotype import DEFAULT_ABNORMALITY_RATES
    from deepacc_d2.synth.render import SynthConfig
    from deepacc_d2.synth.writer import box_edges, generate_image

    from detectron2.engine import DefaultPredictor
    from detectron2.structures import Boxes, Instances

    cfg = setup_cfg(args.config_file, args.opts, args.weights)
    predictor = None if args.oracle else DefaultPredictor(cfg)
    rules = ReviewRules.from_config(cfg)
    config = SynthConfig(
        image_size=tuple(args.image_size),
        abnormality_rates={
            a: r * args.abnormality_scale for a, r in DEFAULT_ABNORMALITY_RATES.items()
        },
    )
    os.makedirs(args.out, exist_ok=True)
    rows, t0 = [], time.time()
    for i in range(args.num_cells):
        drawn = generate_image(args.seed, i, i % config.num_batches, config)
        rgb = np.repeat(drawn.image[:, :, None], 3, axis=2)
        if args.oracle:
            classes = torch.tensor([class_index(x["category"]) for x in drawn.instances])
            instances = Instances(
                rgb.shape[:2],
                scores=torch.ones(len(classes)),
                pred_classes=classes,
                pred_boxes=Boxes(
                    torch.tensor(
                        [box_edges(x["bbox"]) for x in drawn.instances], dtype=torch.float32
                    )
                ),
            )
            instances.class_scores = torch.nn.functional.one_hot(classes, NUM_CLASSES).float()
        else:
            instances = predictor(np.ascontiguousarray(rgb[:, :, ::-1]))["instances"].to("cpu")
        record, picture = karyotype_cell(rgb, instances, rules)
        if i < args.pictures:
            Image.fromarray(picture).save(os.path.join(args.out, f"cell{i:03d}_karyogram.png"))
        truth_total = int(drawn.karyotype.split(",")[0])
        rows.append(
            {
                "cell": i,
                "truth": drawn.karyotype,
                "call": record["karyotype"] or "",
                "truth_count": truth_total,
                "count": record["total"],
                "exact": record["karyotype"] == drawn.karyotype,
                "needs_review": record["needs_review"],
            }
        )
    with open(os.path.join(args.out, "cells.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    n = len(rows)
    exact = sum(r["exact"] for r in rows)
    count_exact = sum(r["count"] == r["truth_count"] for r in rows)
    mae = float(np.mean([abs(r["count"] - r["truth_count"]) for r in rows]))
    abnormal = [r for r in rows if r["truth"] not in ("46,XX", "46,XY")]
    lines = [
        f"cells: {n} ({len(abnormal)} abnormal: "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["truth"] for r in abnormal).items()))
        + ")",
        "",
        "| | cells | share |",
        "|---|---|---|",
        f"| karyotype call exactly right | {exact} | {100 * exact / n:.1f} % |",
        f"| ... of the abnormal cells | {sum(r['exact'] for r in abnormal)} | "
        f"{100 * sum(r['exact'] for r in abnormal) / max(1, len(abnormal)):.1f} % |",
        f"| chromosome count right | {count_exact} | {100 * count_exact / n:.1f} % |",
        f"| sent to review | {sum(r['needs_review'] for r in rows)} | "
        f"{100 * sum(r['needs_review'] for r in rows) / n:.1f} % |",
        "",
        f"mean absolute count error: {mae:.1f} chromosomes; {time.time() - t0:.0f} s",
    ]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
