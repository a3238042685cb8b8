#!/usr/bin/env python
"""
Learning curves of Table 1 rows on the small CPU model: same synthetic data, same seed, same
iterations; training statistics and the held-out-style test metrics of each run, as a table
(``summary.md``, ``summary.json``) and pictures (``curves.png``, ``branches.png``).

    python tools/learning_curves.py --out output/learning --iters 1500
    python tools/learning_curves.py --out output/learning --iters 1500 --device cuda --jobs 8 \\
        --before-repo /path/to/older/checkout   # the same rows with another version's code
    python tools/learning_curves.py --out output/learning --plot-only

A run is ``NAME=CONFIG[,KEY=VALUE...]``; the default runs are the rows of Table 1 that the CPU
model has a config of (``configs/cpu/<row>_*_cpu.yaml``: (a), (c), (d), (f)).
Data: ``synth_learn`` under ``$DETECTRON2_DATASETS`` (made when missing: 400 images of
600x800, seed 0, batches 18 and 19 held out for ``synth_learn_test``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from deepacc_d2.studies.table1 import METRICS, table1_rows
from deepacc_d2.studies.training_logs import read_metrics_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "synth_learn"
CURVES = [  # (metrics.json key, title)
    ("fast_rcnn/fg_cls_accuracy", "fg accuracy (final scores)"),
    ("total_loss", "total loss"),
]
BRANCHES = [
    ("deepacc/margin/fg_cls_accuracy", "margin branch fg accuracy"),
    ("deepacc/test_centers/fg_cls_accuracy", "fg accuracy, test-time centers"),
    ("deepacc/local_center_fraction", "share of local centers"),
    ("deepacc/local_center_purity", "label purity of local centers (test-time rule)"),
    ("deepacc/feature_norm", "mean feature norm |x|"),
]


def table1_runs():
    """The default runs: Table 1's rows on the small CPU model, ``<row>=configs/cpu/...``
    (relative to the checkout: ``--before-repo`` trains the same path of another one)."""
    rows = table1_rows().values()
    return [f"{r.letter}={os.path.relpath(r.cpu_config, REPO)}" for r in rows if r.cpu_config]


def parse_run(text):
    name, _, rest = text.partition("=")
    config, *opts = rest.split(",")
    pairs = []
    for opt in opts:
        key, _, value = opt.partition("=")
        pairs += [key, value]
    return {"name": name, "config": config, "opts": pairs}


def ensure_data(root):
    if os.path.isfile(os.path.join(root, DATA, "annotations", "test.json")):
        return
    subprocess.check_call(
        [
            sys.executable,
            "-m",
            "deepacc_d2.app.cli",
            "synth",
            "--out",
            os.path.join(root, DATA),
            "--num-images",
            "400",
            "--seed",
            "0",
            "--image-size",
            "600",
            "800",
            "--held-out-batches",
            "18",
            "19",
            "--workers",
            "0",
            "--no-progress",
        ],
        cwd=REPO,
    )


def train_command(run, args, out_dir):
    steps = f"({int(args.iters * 0.8)},)"
    return [
        sys.executable,
        "train_net.py",
        "--config-file",
        run["config"],
        "SOLVER.MAX_ITER",
        str(args.iters),
        "SOLVER.STEPS",
        steps,
        "SEED",
        "0",
        "DATASETS.TRAIN",
        f"('{DATA}_train',)",
        "DATASETS.TEST",
        f"('{DATA}_test',)",
        "MODEL.DEVICE",
        args.device,
        "DATALOADER.NUM_WORKERS",
        str(args.workers),
        "OUTPUT_DIR",
        out_dir,
    ] + run["opts"]


def run_all(jobs, args):
    """Run (name, cmd, cwd, log) tuples, ``args.jobs`` at a time; returns their exit codes.
    Past ``args.deadline`` seconds the running ones are stopped (their curves so far stay)."""
    pending, running, codes, start = list(jobs), [], {}, time.time()
    while pending or running:
        if args.deadline and time.time() - start > args.deadline:
            for name, proc, _ in running:
                proc.terminate()
                print(f"deadline: stopped {name}", flush=True)
            for name, proc, _ in running:
                codes[name] = proc.wait()
            return codes
        while pending and len(running) < args.jobs:
            name, cmd, cwd, log = pending.pop(0)
            os.makedirs(os.path.dirname(log), exist_ok=True)
            print(f"start {name}: {' '.join(cmd)}", flush=True)
            running.append(
                (
                    name,
                    subprocess.Popen(cmd, cwd=cwd, stdout=open(log, "w"), stderr=subprocess.STDOUT),
                    log,
                )
            )
        time.sleep(2)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is not None:
                running.remove(item)
                codes[name] = proc.returncode
                print(f"done {name}: exit {proc.returncode} (log {log})", flush=True)
    return codes


def read_history(run_dir):
    """metrics.json -> {key: (iterations, values)}."""
    series = {}
    for row in read_metrics_log(run_dir):
        for key, value in row.items():
            if key != "iteration" and isinstance(value, (int, float)):
                series.setdefault(key, ([], []))
                series[key][0].append(row["iteration"])
                series[key][1].append(value)
    return series


def final_metrics(run_dir):
    path = os.path.join(run_dir, "inference", f"{DATA}_test", "karyotype_details.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)["metrics"]


def end_value(series, key, fraction=0.1):
    """Mean of the last ``fraction`` of the logged values (robust to one noisy window)."""
    if key not in series or not series[key][1]:
        return float("nan")
    values = series[key][1]
    return float(np.mean(values[-max(1, int(len(values) * fraction)) :]))


def summarize(out, names):
    rows = []
    for name in names:
        run_dir = os.path.join(out, name)
        series = read_history(run_dir)
        metrics = final_metrics(run_dir)
        last_iter = max(series["total_loss"][0]) + 1 if "total_loss" in series else 0
        rows.append(
            {
                "run": name,
                "iters": last_iter,
                "fg_acc": end_value(series, "fast_rcnn/fg_cls_accuracy"),
                "margin_fg_acc": end_value(series, "deepacc/margin/fg_cls_accuracy"),
                **{k: metrics.get(k, float("nan")) for k in METRICS},
            }
        )
    lines = [
        "| run | iterations | fg acc (last 10 %) | margin-branch fg acc | "
        + " | ".join(METRICS)
        + " |",
        "|---" * (4 + len(METRICS)) + "|",
    ]
    for r in rows:
        cells = [
            r["run"],
            str(r["iters"]),
            f"{100 * r['fg_acc']:.1f}",
            f"{100 * r['margin_fg_acc']:.1f}",
        ] + [f"{r[k]:.1f}" for k in METRICS]
        lines.append("| " + " | ".join(c.replace("nan", "–") for c in cells) + " |")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n".join(lines))
    return rows


def smooth(values, window=5):
    values = np.asarray(values, dtype=np.float64)
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(
        np.pad(values, (window // 2, window - 1 - window // 2), mode="edge"), kernel, mode="valid"
    )


def plot(out, names, panels, filename):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    histories = {name: read_history(os.path.join(out, name)) for name in names}
    rows = list(dict.fromkeys(n.replace("before-", "") for n in names))
    for ax, (key, title) in zip(axes[0], panels):
        for name in names:
            if key in histories[name]:
                its, values = histories[name][key]
                row = name.replace("before-", "")
                ax.plot(
                    its,
                    smooth(values),
                    "--" if name != row else "-",
                    label=name,
                    color=f"C{rows.index(row) % 10}",
                )
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, filename), dpi=90)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="output/learning")
    p.add_argument("--iters", type=int, default=1500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="trainings at a time (1 on a CPU)")
    p.add_argument("--workers", type=int, default=0, help="DATALOADER.NUM_WORKERS per run")
    p.add_argument("--run", action="append", help="NAME=CONFIG[,KEY=VALUE...]; repeatable")
    p.add_argument(
        "--before-repo", help="another checkout: its code trains the rows too, as before-<row>"
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=0,
        help="seconds; stop the trainings still running then (0: none)",
    )
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()

    defaults = [parse_run(r) for r in table1_runs()]
    runs = [parse_run(r) for r in args.run] if args.run else defaults
    table1 = {r["name"] for r in defaults}  # the rows --before-repo trains too
    out = os.path.abspath(args.out)
    names = [r["name"] for r in runs]
    if args.before_repo:
        names += [f"before-{r['name']}" for r in runs if r["name"] in table1]
    if not args.plot_only:
        os.chdir(REPO)
        from deepacc_d2.data.datasets import datasets_root

        root = os.path.abspath(datasets_root())
        ensure_data(root)
        os.environ["DETECTRON2_DATASETS"] = root
        jobs = [
            (
                r["name"],
                train_command(r, args, os.path.join(out, r["name"])),
                REPO,
                os.path.join(out, r["name"], "log.txt"),
            )
            for r in runs
        ]
        if args.before_repo:
            before = os.path.abspath(args.before_repo)
            jobs += [
                (
                    f"before-{r['name']}",
                    train_command(dict(r, opts=[]), args, os.path.join(out, f"before-{r['name']}")),
                    before,
                    os.path.join(out, f"before-{r['name']}", "log.txt"),
                )
                for r in runs
                if r["name"] in table1
            ]
        run_all(jobs, args)
    summarize(out, names)
    plot(out, names, CURVES, "curves.png")
    plot(out, [n for n in names if n not in ("a", "before-a")], BRANCHES, "branches.png")


if __name__ == "__main__":
    main()
