#!/usr/bin/env python
"""
Table 1 over seeds on real metaphases (protocol: deepacc_d2/studies/ablation.py; results:
docs/studies/ablation.md): every row's box head trained and evaluated on the frozen shared parts of
a trained detector, several seeds each.

    python tools/ablation.py                       # rows (a)-(f) + RetinaNet, seeds 0 1 2, CPU
    python tools/ablation.py --config configs/table1/f_deepacc.yaml --weights R101.pth \\
        --device cuda --iters 6000 --train-images 0   # the paper's R101 recipe on a GPU
"""

import argparse
import json
import os
import platform
import sys
import time

import torch

import deepacc_d2
from deepacc_d2.studies.ablation import RETINANET, run_table
from deepacc_d2.studies.ablation_report import markdown, plot_table, summarize, write_generated
from deepacc_d2.studies.table1 import table1_rows

import detectron2
from detectron2.utils.logger import setup_logger


def machine() -> str:
    cpu = platform.processor() or "CPU"
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = f"{names[0]}" if names else cpu
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (GPU)"
    return f"{os.cpu_count()} cores of {cpu}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/cpu/f_deepacc_cil_r18.yaml")
    p.add_argument("--weights", default="models/cil_r18_deepacc.pth", help="the frozen detector")
    p.add_argument("--out", default="output/ablation")
    p.add_argument(
        "--rows",
        help=f"letters: Table 1's (configs/table1/), {RETINANET}: RetinaNet (default: all)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--train-images", type=int, default=600, help="0: all of the train split")
    p.add_argument("--device", default="cpu")
    p.add_argument("--doc", default="docs/studies/ablation.md")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE")
    args = p.parse_args()
    setup_logger(name="deepacc_d2", abbrev_name="deepacc")

    start = time.perf_counter()
    rows = tuple(args.rows) if args.rows else tuple(table1_rows()) + (RETINANET,)
    seeds = tuple(args.seeds)
    runs = [os.path.join(args.out, "runs", f"{r}_s{s}.json") for r in rows for s in seeds]
    before = {path: os.path.getmtime(path) for path in runs if os.path.isfile(path)}
    results = run_table(
        args.config,
        args.weights,
        args.out,
        rows,
        seeds,
        args.iters,
        args.train_images,
        opts=["MODEL.DEVICE", args.device] + args.opts,
    )
    summary = summarize(results, rows, seeds)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    png = os.path.splitext(args.doc)[0] + ".png"
    plot_table(summary, png)
    meta = {
        "command": "python tools/ablation.py " + " ".join(sys.argv[1:]),
        "minutes": (time.perf_counter() - start) / 60,
        "reused": sum(before.get(path) == os.path.getmtime(path) for path in runs),
        "runs": len(runs),
        "machine": machine(),
        "versions": f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"detectron2 {detectron2.__version__}, deepacc_d2 {deepacc_d2.__version__}",
    }
    write_generated(args.doc, markdown(summary, results, rows, seeds, meta))
    print(f"wrote {args.doc} and {png}")


if __name__ == "__main__":
    main()
