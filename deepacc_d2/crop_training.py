"""
Training the second look's crop classifier (:mod:`deepacc_d2.modeling.second_look`) on the
labelled chromosomes of a registered dataset (crops: :mod:`deepacc_d2.data.crops`);
``tools/train_crop_classifier.py`` runs it. Checkpoints are atomic and the data order and
augmentation of step t depend on (seed, epoch, step) alone, so an interrupted run resumes as
if it had not stopped.
"""

import copy
import json
import logging
import os
import time
from typing import Dict, List

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.nn import functional as F

from .classes import DENVER_GROUPS, NUM_CLASSES, denver_group_of
from .cpu import cpu_has_bf16
from .data.crops import cached_patches, patch_crops, patch_size, save_atomic, training_crops
from .modeling.second_look import CropClassifier

logger = logging.getLogger(__name__)

GROUP_OF_CLASS = torch.tensor(
    [sorted(DENVER_GROUPS).index(denver_group_of(k)) for k in range(NUM_CLASSES)]
)


@torch.no_grad()
def crop_accuracy(model, data, crop_size: int, crop_margin: float, batch_size: int = 512):
    """
    Top-1, top-2 and Denver-group accuracy (%) of ``model`` on the true boxes of ``data``.

    Returns:
        dict: "top1", "top2", "group", "count".
    """
    model.eval()
    logits = []
    for start in range(0, len(data["classes"]), batch_size):
        end = start + batch_size
        crops = patch_crops(
            data["patches"][start:end], data["boxes"][start:end], crop_size, crop_margin
        )
        logits.append(model(crops.contiguous(memory_format=torch.channels_last)))
    logits, truth = torch.cat(logits), data["classes"]
    top2 = logits.topk(2, dim=1).indices
    return {
        "top1": 100.0 * (top2[:, 0] == truth).float().mean().item(),
        "top2": 100.0 * (top2 == truth[:, None]).any(dim=1).float().mean().item(),
        "group": 100.0
        * (GROUP_OF_CLASS[top2[:, 0]] == GROUP_OF_CLASS[truth]).float().mean().item(),
        "count": int(len(truth)),
    }


def faster_precision(model, data, batch_size: int, crop_size: int, crop_margin: float) -> str:
    """
    "bf16" or "fp32", whichever trains ``model`` faster on this CPU: a few timed steps of
    each on a copy (the model itself is not changed).
    """
    if not cpu_has_bf16():
        return "fp32"
    n = min(batch_size, len(data["classes"]))
    crops = patch_crops(data["patches"][:n], data["boxes"][:n], crop_size, crop_margin)
    crops = crops.contiguous(memory_format=torch.channels_last)
    seconds = {}
    for precision in ("fp32", "bf16"):
        trial = copy.deepcopy(model).train()
        optimizer = torch.optim.SGD(trial.parameters(), lr=1e-3)
        for i in range(5):
            if i == 2:
                start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(trial(crops).float(), data["classes"][:n])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds[precision] = time.perf_counter() - start
    logger.info(f"3 training steps: fp32 {seconds['fp32']:.2f} s, bf16 {seconds['bf16']:.2f} s")
    return min(seconds, key=seconds.get)


def train_crop_classifier(
    cfg,
    output_dir: str,
    epochs: float,
    batch_size: int = 128,
    base_lr: float = 0.1,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    seed: int = 0,
    eval_period: int = 0,
    checkpoint_period: int = 50,
    precision: str = "auto",
) -> Dict:
    """
    Train a :class:`CropClassifier` of ``cfg.MODEL.SECOND_LOOK``'s shape on the chromosomes of
    ``cfg.DATASETS.TRAIN``, evaluated on ``cfg.DATASETS.TEST``: SGD (Nesterov momentum 0.9)
    with a one-cycle LR, label smoothing, channels-last, under bf16 autocast or in fp32
    (``precision``; "auto": whichever :func:`faster_precision` measures faster on this CPU:
    bf16 is twice as fast on some CPUs and many times slower on others). Evaluates every
    ``eval_period`` steps (0: every epoch). Resumes from ``output_dir/last.pth`` when it exists.

    Writes ``output_dir``: ``metrics.jsonl`` (one line per evaluation: step, epoch, training
    seconds, val accuracy), ``last.pth`` (checkpoint), ``model_final.pth`` (``{"model":
    state_dict}`` for MODEL.SECOND_LOOK.WEIGHTS), ``summary.json``.

    Returns:
        dict: the summary.
    """
    look = cfg.MODEL.SECOND_LOOK
    size = patch_size(look.CROP_SIZE, look.CROP_MARGIN)
    cache = os.path.join(output_dir, "cache")
    resize = (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    (train_name,), (val_name,) = cfg.DATASETS.TRAIN, cfg.DATASETS.TEST
    train = cached_patches(train_name, cache, *resize, size)
    val = cached_patches(val_name, cache, *resize, size)
    logger.info(f"{len(train['classes'])} training, {len(val['classes'])} val chromosomes")

    torch.manual_seed(seed)
    model = CropClassifier(look.WIDTH, look.DEPTH).to(memory_format=torch.channels_last)
    steps_per_epoch = len(train["classes"]) // batch_size
    eval_period = eval_period or steps_per_epoch
    total_steps = max(1, int(round(epochs * steps_per_epoch)))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=base_lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=base_lr, total_steps=total_steps, pct_start=0.25
    )
    state = {"step": 0, "train_seconds": 0.0}
    last = os.path.join(output_dir, "last.pth")
    if os.path.isfile(last):
        checkpoint = torch.load(last, weights_only=False)
        if checkpoint["total_steps"] != total_steps:
            raise ValueError(
                f"{last} was trained for {checkpoint['total_steps']} steps, this run asks for "
                f"{total_steps}: use another --output"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = checkpoint["state"]
        logger.info(f"resumed from {last} at step {state['step']}")
    os.makedirs(output_dir, exist_ok=True)

    def checkpoint():
        save_atomic(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": state,
                "total_steps": total_steps,
            },
            last,
        )

    def evaluate():
        metrics = crop_accuracy(model, val, look.CROP_SIZE, look.CROP_MARGIN)
        record = {
            "step": state["step"],
            "epoch": round(state["step"] / steps_per_epoch, 3),
            "train_seconds": round(state["train_seconds"], 1),
            "lr": scheduler.get_last_lr()[0],
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        with open(os.path.join(output_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        logger.info(f"crop classifier {record}")
        return record

    if precision == "auto":
        precision = faster_precision(model, train, batch_size, look.CROP_SIZE, look.CROP_MARGIN)
    bf16 = precision == "bf16"
    logger.info(f"training in {precision}")
    record = None
    while state["step"] < total_steps:
        epoch, index = divmod(state["step"], steps_per_epoch)
        order = torch.randperm(
            len(train["classes"]), generator=torch.Generator().manual_seed(seed * 10_000 + epoch)
        )
        batch = order[index * batch_size : (index + 1) * batch_size]
        generator = torch.Generator().manual_seed((seed * 10_000 + epoch) * 100_000 + index)
        start = time.perf_counter()
        model.train()
        crops = training_crops(
            train["patches"][batch],
            train["boxes"][batch],
            look.CROP_SIZE,
            look.CROP_MARGIN,
            generator,
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(crops.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(
            logits.float(), train["classes"][batch], label_smoothing=label_smoothing
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        state["train_seconds"] += time.perf_counter() - start
        if state["step"] % 20 == 0:
            logger.info(
                f"step {state['step']}/{total_steps} loss {loss.item():.3f} "
                f"{state['train_seconds'] / state['step']:.2f} s/step"
            )
        if state["step"] % checkpoint_period == 0 or state["step"] == total_steps:
            checkpoint()
        if state["step"] % eval_period == 0 or state["step"] == total_steps:
            record = evaluate()
    if record is None or record["step"] != state["step"]:
        record = evaluate()
    save_atomic({"model": model.state_dict()}, os.path.join(output_dir, "model_final.pth"))
    summary = {
        "train_dataset": train_name,
        "val_dataset": val_name,
        "train_chromosomes": len(train["classes"]),
        "val_chromosomes": len(val["classes"]),
        "skipped_images": train["errors"] + val["errors"],
        "crop_size": look.CROP_SIZE,
        "crop_margin": look.CROP_MARGIN,
        "width": look.WIDTH,
        "depth": look.DEPTH,
        "epochs": epochs,
        "steps": total_steps,
        "batch_size": batch_size,
        "base_lr": base_lr,
        "seed": seed,
        "precision": precision,
        "train_seconds": round(state["train_seconds"], 1),
        "val": {k: v for k, v in record.items() if k.startswith("val_")},
    }
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def read_crop_metrics(run_dir: str) -> List[Dict]:
    """The evaluations of a run (``metrics.jsonl``), in order; a resumed run's repeated
    evaluations of one step keep the last."""
    by_step = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def plot_crop_curves(runs: Dict[str, str], path: str):
    """
    Val top-1 accuracy against training CPU-minutes, one line per run: the picture of
    accuracy per CPU-minute.

    Args:
        runs (dict): label -> run directory.
    """

    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, run_dir in runs.items():
        records = read_crop_metrics(run_dir)
        ax.plot(
            [r["train_seconds"] / 60 for r in records],
            [r["val_top1"] for r in records],
            marker="o",
            markersize=3,
            label=label,
        )
    ax.set_xlabel("training time (CPU-minutes on this machine)")
    ax.set_ylabel("val top-1 accuracy of true-box crops (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def crop_runs_table(run_dirs: List[str]) -> str:
    """A markdown table of finished runs (``summary.json``): shape, epochs, precision,
    training minutes, val accuracy."""
    lines = [
        "| run | crop px | width | epochs | precision | training min | val top-1 | top-2 "
        "| Denver group |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        v = s["val"]
        lines.append(
            f"| {os.path.basename(run_dir.rstrip('/'))} | {s['crop_size']} | {s['width']} | "
            f"{s['epochs']:g} | {s['precision']} | {s['train_seconds'] / 60:.1f} | "
            f"{v['val_top1']:.1f} | {v['val_top2']:.1f} | {v['val_group']:.1f} |"
        )
    return "\n".join(lines) + "\n"
