#!/usr/bin/env python
"""
`make demo`: the shipped model (MODEL_ZOO.md) on the real CIL validation metaphases, where
they are present (output/demo/shipped/); then synthetic metaphases -> a small DeepACC trained
on the CPU -> metrics and pictures in output/demo/. Each step is skipped when its result
already exists, so a second run only re-draws the evaluations.

    python tools/demo.py [--num-images 120] [--iters 300] [--fresh]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Table 1 (f), DeepACC, on the small CPU model (docs/studies/learning.md: it learns at least as fast
# as the Faster R-CNN baseline, `--config configs/cpu/a_faster_rcnn_cpu.yaml`).
CONFIG = os.path.join("configs", "cpu", "f_deepacc_cpu.yaml")


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.check_call(cmd, cwd=REPO)


SHIPPED = "cil-r18-crops"


def shipped_model_on_real_images(out):
    """Metrics and pictures of the shipped model on cil24_val; None when CIL is absent."""
    import deepacc_d2  # noqa: F401  (registers cil24_val)

    from detectron2.data import DatasetCatalog

    try:
        DatasetCatalog.get("cil24_val")
    except FileNotFoundError as e:
        print(f"real metaphases not found ({e}): skipping the shipped model's demo")
        return None
    shipped_dir = os.path.join(out, "shipped")
    run(
        [
            sys.executable,
            "-m",
            "deepacc_d2.app.cli",
            "eval",
            "--weights",
            SHIPPED,
            "--dataset",
            "cil24_val",
            "--output",
            shipped_dir,
            "--visualize",
            "4",
        ]
    )
    with open(os.path.join(shipped_dir, "evaluation.json")) as f:
        return json.load(f)["karyotype"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-images", type=int, default=120, help="synthetic images (train+val)")
    p.add_argument("--iters", type=int, default=300, help="training iterations")
    p.add_argument("--out", default="output/demo")
    p.add_argument("--config", default=CONFIG)
    p.add_argument(
        "--score-thresh",
        type=float,
        default=0.1,
        help="pictures: top-1 detections scoring at least this (a few minutes of "
        "CPU training gives low scores; the metrics use 0.5)",
    )
    p.add_argument("--fresh", action="store_true", help="regenerate data and retrain")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="copy the first prediction picture to docs/demo_prediction.png",
    )
    args = p.parse_args()

    os.chdir(REPO)
    from deepacc_d2.data.datasets import datasets_root

    data_dir = os.path.join(datasets_root(), "synth_demo")
    model_dir = os.path.join(args.out, "model")
    weights = os.path.join(model_dir, "model_final.pth")
    if args.fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.time()
    shipped = shipped_model_on_real_images(args.out)

    if not os.path.isfile(os.path.join(data_dir, "annotations", "val.json")):
        run(
            [
                sys.executable,
                "-m",
                "deepacc_d2.app.cli",
                "synth",
                "--out",
                data_dir,
                "--num-images",
                str(args.num_images),
                "--seed",
                "0",
                "--image-size",
                "600",
                "800",
                "--no-progress",
            ]
        )
    else:
        print(f"reusing synthetic data in {data_dir}")

    if not os.path.isfile(weights):
        steps = f"({int(args.iters * 0.8)},)"
        run(
            [
                sys.executable,
                "train_net.py",
                "--config-file",
                args.config,
                "OUTPUT_DIR",
                model_dir,
                "SOLVER.MAX_ITER",
                str(args.iters),
                "SOLVER.STEPS",
                steps,
                "DATASETS.TEST",
                "()",
                "SEED",
                "0",
            ]
        )
    else:
        print(f"reusing trained model {weights}")

    run(
        [
            sys.executable,
            "-m",
            "deepacc_d2.app.cli",
            "eval",
            "--config-file",
            args.config,
            "--weights",
            weights,
            "--dataset",
            "synth_demo_val",
            "--output",
            args.out,
            "--visualize",
            "4",
            "--score-thresh",
            str(args.score_thresh),
        ]
    )

    with open(os.path.join(args.out, "evaluation.json")) as f:
        m = json.load(f)["karyotype"]
    pictures = sorted(f for f in os.listdir(args.out) if f.endswith(".png"))
    print(f"\nDemo done in {time.time() - t0:.0f} s.")
    if shipped:
        print(
            f"  shipped model {SHIPPED} on cil24_val (real): mAP {shipped['mAP']:.1f}, "
            f"mAPmax {shipped['mAPmax']:.1f}, Acc {shipped['Acc']:.1f}, AER {shipped['AER']:.1f}"
            f"; pictures in {os.path.join(args.out, 'shipped')}"
        )
    print(
        f"  metrics : {os.path.join(args.out, 'evaluation.json')}  (mAP {m['mAP']:.1f}, "
        f"mAPmax {m['mAPmax']:.1f}, Acc {m['Acc']:.1f}, AER {m['AER']:.1f})"
    )
    print("  pictures: " + "\n            ".join(os.path.join(args.out, f) for f in pictures))
    print(f"            (*_pred.png: truth left, top-1 detections >= {args.score_thresh} right)")
    print(f"  model   : {weights}  (training log: {model_dir}/log.txt)")
    if args.update_docs:
        first = next(f for f in pictures if f.endswith("_pred.png"))
        shutil.copy(os.path.join(args.out, first), os.path.join("docs", "demo_prediction.png"))
        print(f"  copied {first} to docs/demo_prediction.png")


if __name__ == "__main__":
    main()
