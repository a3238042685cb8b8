"""
The CPU recipe on real metaphases, end to end: optional synthetic pre-training, training on
``cil24_train``, evaluation on ``cil24_val``, the metric table, the learning curve, and
(``--ship``) the half-precision weights file of the model zoo.

    python tools/cil_recipe.py                      # `make cil`: ~2.5 h on 2 CPU cores
    python tools/cil_recipe.py --init models/cil_r18_deepacc.pth --iters 4000 ...
                                                    # train the shipped detector on
    python tools/cil_recipe.py --synth-iters 1000   # pre-train on on-the-fly synthetic images
    python tools/cil_recipe.py --device cuda --fit-minutes 7 ...
                                                    # as many iterations as fit in 7 minutes
    python tools/cil_recipe.py --config configs/table1/f_deepacc.yaml --device cuda \\
        --iters 0 --out output/cil_r101            # the paper's R101 recipe (24 epochs) on a GPU

Each step is skipped when its result exists (a second call only re-evaluates); a training
that stopped short of the config's MAX_ITER (interrupted, or a schedule since extended by a
warm restart, ``SOLVER.COSINE_RESTARTS``) goes on from its last checkpoint; ``--fresh``
starts over.
``--fit-minutes`` times a few iterations first (``fit_probe/``, deleted after) and sets the
schedule's length to what fits in the minutes, so that its cosine ends within them; a training
under way keeps the length it was given.
Written under ``--out``: ``model/`` (training), ``eval/`` (metrics, pictures),
``learning_curve.png``, ``summary.json``.
"""

import argparse
import json
import os
import shutil
import time
from typing import Dict

import torch

from ..app.config import setup_cfg
from ..app.model_zoo import save_half_weights
from ..engine.evaluate import evaluate as evaluate_model
from ..engine.predictor import load_model
from ..engine.runs import RESUME, START, OtherSettingsError, run_decision
from ..engine.trainer import setup_run
from ..engine.trainer import train as train_model
from .table1 import METRICS_WITH_AP50
from .training_logs import logged_training_seconds, plot_learning_curve, read_metrics_log

CONFIG = os.path.join("configs", "cpu", "f_deepacc_cil_r18.yaml")
FIT_PROBE_ITERS = 60  # timed by --fit-minutes: three of detectron2's 20-iteration windows
FIT_RESERVE = 0.1  # the minutes left for slower stretches: 2 CPU cores vary 0.97-1.2 s a window


def device_opts(device):
    return ["MODEL.DEVICE", device]  # CPU_BF16 applies to "cpu" only (deepacc_d2.engine.precision)


def run_training(args, out_dir, opts_of_step=(), resume=False):
    """
    The Trainer (:func:`..engine.trainer.train`) on --config with the seed, the device, --opts
    and ``opts_of_step``, in this process, set up as ``train_net.py`` sets it up; ``resume``:
    on from out_dir's last checkpoint.

    Returns:
        float: its seconds.
    """
    opts = ["SEED", str(args.seed), "OUTPUT_DIR", out_dir] + device_opts(args.device)
    opts += args.opts + list(opts_of_step)
    print("+ train", args.config, *(["--resume"] if resume else []), *opts, flush=True)
    start = time.time()
    cfg = setup_cfg(args.config, opts, training=True)
    setup_run(cfg, argparse.Namespace(config_file=args.config, eval_only=False, opts=opts))
    train_model(cfg, resume=resume)
    return time.time() - start


def pretrain(args, out_dir):
    """The same model and input pipeline trained on on-the-fly synthetic metaphases (never the
    same image twice)."""
    return run_training(
        args,
        out_dir,
        [
            "DATASETS.TRAIN",
            "('synth_onthefly_train',)",
            "DATASETS.TEST",
            "()",
            "SOLVER.EPOCHS",
            "0",
            "SOLVER.MAX_ITER",
            str(args.synth_iters),
            "SOLVER.STEPS",
            f"({int(args.synth_iters * 0.8)},)",  # for a step schedule; cosine ignores it
        ],
    )


def train(args, out_dir, init_weights, resume=False):
    opts = iteration_opts(args) + (["MODEL.WEIGHTS", init_weights] if init_weights else [])
    return run_training(args, out_dir, opts, resume)


def iteration_opts(args):
    return ["SOLVER.MAX_ITER", str(args.iters)] if args.iters else []


def planned_iterations(args):
    """MAX_ITER of the CIL training as the Trainer resolves it."""
    opts = device_opts(args.device) + args.opts + iteration_opts(args)
    return setup_cfg(args.config, opts, training=True).SOLVER.MAX_ITER


def trained_iterations(model_dir):
    """Iterations of the last checkpoint that a resumed training would continue from (0:
    none)."""
    path = os.path.join(model_dir, "last_checkpoint")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        checkpoint = os.path.join(model_dir, f.read().strip())
    if not os.path.isfile(checkpoint):
        return 0
    return torch.load(checkpoint, map_location="cpu", weights_only=False).get("iteration", -1) + 1


def evaluate(args, weights, out_dir):
    """What `deepacc eval` runs: metrics and pictures of the trained model on --dataset."""
    cfg = setup_cfg(args.config, device_opts(args.device) + args.opts, weights)
    results = evaluate_model(cfg, load_model(cfg), args.dataset, out_dir, args.visualize)
    return results["karyotype"]


def fitted_iterations(seconds_per_iter, left_s, startup_s, upper=0):
    """
    The iterations that fit in ``left_s`` seconds: those left after a training's start-up
    (``startup_s``) and the reserve (FIT_RESERVE), at ``seconds_per_iter``; at least 1, at most
    ``upper`` (0: no bound).
    """
    if seconds_per_iter <= 0:
        raise ValueError(f"seconds per iteration must be > 0, got {seconds_per_iter}")
    n = max(1, int((left_s - startup_s) * (1 - FIT_RESERVE) / seconds_per_iter))
    return min(n, upper) if upper else n


def probe_speed(args, init_weights):
    """
    FIT_PROBE_ITERS iterations of the training ``args`` asks for, in ``--out/fit_probe``
    (deleted after), without evaluation.

    Returns:
        tuple[float, float]: the seconds of one iteration (the mean of detectron2's medians
        over its logged windows, the first iterations' included: one window alone was seen
        10 % faster than the long run on a CPU) and the probe's start-up seconds (its time
        less detectron2's "Total training time").
    """
    probe_dir = os.path.join(args.out, "fit_probe")
    shutil.rmtree(probe_dir, ignore_errors=True)
    probe = argparse.Namespace(**vars(args))
    probe.iters = FIT_PROBE_ITERS
    probe.opts = args.opts + ["DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "1000000"]
    wall = train(probe, probe_dir, init_weights)
    times = [r["time"] for r in read_metrics_log(probe_dir) if "time" in r]
    trained_s = logged_training_seconds(probe_dir)
    shutil.rmtree(probe_dir, ignore_errors=True)
    if not times:
        raise SystemExit(f"--fit-minutes: the probe in {probe_dir} logged no iteration time")
    seconds_per_iter = sum(times) / len(times)
    return seconds_per_iter, max(0.0, wall - (trained_s or FIT_PROBE_ITERS * seconds_per_iter))


def fit_schedule(args, summary: Dict, init_weights, start: float):
    """--fit-minutes: ``args.iters`` set to what fits in the minutes left since ``start``
    (``time.time()``), measured once and kept in ``summary`` for the pieces that follow; an
    ``--iters`` no longer than the probe is trained as it is."""
    if 0 < args.iters <= FIT_PROBE_ITERS:
        return
    if summary.get("fit_iters"):
        args.iters = summary["fit_iters"]
        return
    if trained_iterations(os.path.join(args.out, "model")):
        raise SystemExit(
            f"--fit-minutes: {args.out}/model holds a training begun without it: "
            "another --out, or --fresh"
        )
    seconds_per_iter, startup = probe_speed(args, init_weights)
    left = 60 * args.fit_minutes - (time.time() - start)
    args.iters = fitted_iterations(seconds_per_iter, left, startup, args.iters)
    summary.update(fit_iters=args.iters, fit_seconds_per_iter=seconds_per_iter)
    print(
        f"--fit-minutes {args.fit_minutes:g}: {seconds_per_iter:.3f} s per iteration, "
        f"start-up {startup:.0f} s, {left:.0f} s left: {args.iters} iterations",
        flush=True,
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="output/cil")
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--iters", type=int, default=0, help="training iterations (0: the config's)")
    p.add_argument(
        "--synth-iters",
        type=int,
        default=0,
        help="synthetic pre-training iterations before CIL (0: none)",
    )
    p.add_argument("--dataset", default="cil24_val", help="evaluation dataset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--visualize", type=int, default=4, help="pictures of this many images")
    p.add_argument("--ship", metavar="PATH", help="write the float16 model-zoo weights here")
    p.add_argument("--fresh", action="store_true", help="delete --out and start over")
    p.add_argument(
        "--init",
        default="",
        metavar="WEIGHTS",
        help="start from these weights (e.g. the shipped model's, to train it on) instead of "
        "from scratch",
    )
    p.add_argument(
        "--fit-minutes",
        type=float,
        default=0.0,
        metavar="M",
        help="time the training first and train as many iterations as fit in M minutes "
        "(--iters, when given, at most)",
    )
    p.add_argument(
        "--opts", nargs="+", default=[], metavar="KEY VALUE", help="training config overrides"
    )
    args = p.parse_args(argv)
    if args.fit_minutes and args.synth_iters:
        raise SystemExit("--fit-minutes times the CIL training alone: leave out --synth-iters")
    if args.synth_iters and "SOLVER.STOP_AFTER_MINUTES" in args.opts:
        raise SystemExit("--synth-iters cannot be trained in pieces (SOLVER.STOP_AFTER_MINUTES)")
    if args.synth_iters and args.init:
        raise SystemExit("--init and --synth-iters both choose the starting weights: pick one")
    return args


def read_summary(out_dir) -> Dict:
    path = os.path.join(out_dir, "summary.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_summary(out_dir, summary: Dict):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


def training_plan(args, summary: Dict):
    """
    What becomes of the CIL training in ``--out/model`` (:func:`..engine.runs.run_decision`):
    started, trained on from its last checkpoint (interrupted, paused, or a schedule since
    extended by a warm restart) or reused; a training made with other ``--opts`` (as
    summary.json records them) is refused.

    Returns:
        tuple: the decision, the iterations trained, the iterations planned.
    """
    model_dir = os.path.join(args.out, "model")
    trained, planned = trained_iterations(model_dir), planned_iterations(args)
    # summary.json records the --opts from the start of a training; none there: unknown for a
    # training under way (written once only when it paused), none for a finished model
    recorded = bool(summary) or os.path.isfile(os.path.join(model_dir, "model_final.pth"))
    try:
        decision = run_decision(
            model_dir,
            {"opts": args.opts},
            {"opts": summary.get("opts", [])} if recorded else None,
            trained,
            planned,
            advice="pass the same --opts, another --out, or --fresh",
        )
    except OtherSettingsError as e:
        raise SystemExit(str(e)) from None
    return decision, trained, planned


def starting_weights(args, summary: Dict) -> str:
    """--init, or the synthetic pre-training's weights (trained first when missing)."""
    if not args.synth_iters:
        return args.init
    pre_dir = os.path.join(args.out, "pretrain")
    init = os.path.join(pre_dir, "model_final.pth")
    if not os.path.isfile(init):
        summary["pretrain_s"] = pretrain(args, pre_dir)
    return init


def train_as_planned(args, summary: Dict, plan, init: str):
    """Start, train on or reuse the CIL training (``plan``: :func:`training_plan`); its
    training seconds into ``summary``."""
    decision, trained, planned = plan
    model_dir = os.path.join(args.out, "model")
    if decision == START:
        summary["train_s"] = train(args, model_dir, init)
    elif decision == RESUME:
        # its time so far is counted when the run had finished before
        print(f"training {model_dir} on from iteration {trained} to {planned}")
        done_s = summary.get("train_s") or logged_training_seconds(model_dir) or 0
        summary["train_s"] = done_s + train(args, model_dir, init, resume=True)
    else:
        print(f"reusing trained model {os.path.join(model_dir, 'model_final.pth')}")
        summary.setdefault("train_s", logged_training_seconds(model_dir))


def evaluate_and_ship(args, summary: Dict) -> Dict:
    """Evaluate the trained model, plot its learning curve, ship it (--ship); the results
    into ``summary``. Returns the metrics."""
    model_dir = os.path.join(args.out, "model")
    weights = os.path.join(model_dir, "model_final.pth")
    metrics = evaluate(args, weights, os.path.join(args.out, "eval"))
    rows = read_metrics_log(model_dir)
    final_iter = max((r["iteration"] for r in rows), default=0) + 1
    plot_learning_curve(rows, metrics, final_iter, os.path.join(args.out, "learning_curve.png"))
    summary.update(
        iterations=final_iter, metrics={k: metrics[k] for k in METRICS_WITH_AP50 if k in metrics}
    )
    if args.ship:
        digest, size = save_half_weights(weights, args.ship)
        summary.update(shipped=args.ship, sha256=digest, size_mb=round(size / 2**20, 1))
    return metrics


def print_summary(args, summary: Dict, metrics: Dict):
    hours = (summary.get("pretrain_s", 0) + (summary.get("train_s") or 0)) / 3600
    print(
        f"\n{args.config} on {args.dataset}, {summary['iterations']} iterations"
        + (f" after {args.synth_iters} synthetic" if args.synth_iters else "")
        + (f", training {hours:.2f} h" if hours else "")
    )
    print("| " + " | ".join(METRICS_WITH_AP50) + " |\n" + "|---" * len(METRICS_WITH_AP50) + "|")
    print(
        "| " + " | ".join(f"{metrics.get(k, float('nan')):.1f}" for k in METRICS_WITH_AP50) + " |"
    )
    print(
        f"learning curve: {os.path.join(args.out, 'learning_curve.png')}; "
        f"pictures: {os.path.join(args.out, 'eval')}"
    )
    if args.ship:
        print(f"shipped {args.ship}: {summary['size_mb']} MB, sha256 {summary['sha256']}")


def main(argv=None):
    start = time.time()
    args = parse_args(argv)
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    summary = read_summary(args.out)
    if args.fit_minutes:
        fit_schedule(args, summary, args.init, start)
    plan = training_plan(args, summary)
    summary.update(
        config=args.config,
        dataset=args.dataset,
        synth_iters=args.synth_iters,
        init=args.init,
        opts=args.opts,
    )
    write_summary(args.out, summary)  # the settings, before anything is trained with them
    train_as_planned(args, summary, plan, starting_weights(args, summary))
    model_dir, planned = os.path.join(args.out, "model"), plan[2]
    if trained_iterations(model_dir) < planned:  # paused (SOLVER.STOP_AFTER_MINUTES)
        write_summary(args.out, summary)
        print(
            f"{model_dir}: paused at iteration {trained_iterations(model_dir)} of {planned}; "
            "run the same command again to go on"
        )
        return
    metrics = evaluate_and_ship(args, summary)
    write_summary(args.out, summary)
    print_summary(args, summary, metrics)
