"""
Training the second look's crop classifier (:mod:`deepacc_d2.modeling.second_look`) on the
labelled chromosomes of a registered dataset (crops: :mod:`deepacc_d2.data.crops`);
``tools/train_crop_classifier.py`` runs it. Checkpoints are atomic and the data order and
augmentation of step t depend on (seed, epoch, step) alone, so an interrupted run resumes as
if it had not stopped. Runs compared: :mod:`.crop_report`.
"""

import copy
import json
import logging
import os
import time
from typing import Dict, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ..classes import DENVER_GROUPS, NUM_CLASSES, denver_group_of
from ..data.crops import (
    boxes_digest,
    cached_patches,
    patch_crops,
    patch_size,
    save_atomic,
    training_crops,
)
from ..engine.precision import cpu_has_bf16
from ..engine.runs import REUSE, START, run_decision
from ..modeling.crop_classifier import CropClassifier, load_classifier, read_classifier_state

logger = logging.getLogger(__name__)

GROUP_OF_CLASS = torch.tensor(
    [sorted(DENVER_GROUPS).index(denver_group_of(k)) for k in range(NUM_CLASSES)]
)


@torch.no_grad()
def crop_accuracy(model, data, crop_size: int, crop_margin: float, batch_size: int = 512):
    """
    Top-1, top-2 and Denver-group accuracy (%) of ``model`` on the true boxes of ``data``
    (a chromosome called "not one chromosome" is named wrong); with negative boxes in
    ``data`` (class K) also the % of them called "not one chromosome" (``not_caught``) and of
    the chromosomes called so (``not_false``).

    Returns:
        dict: "top1", "top2", "group", "count", and with negatives "not_caught", "not_false",
        "negatives".
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
    real = truth < NUM_CLASSES
    group = torch.cat([GROUP_OF_CLASS, torch.tensor([-1])])  # "not one chromosome": no group
    out = {
        "top1": 100.0 * (top2[real, 0] == truth[real]).float().mean().item(),
        "top2": 100.0 * (top2[real] == truth[real, None]).any(dim=1).float().mean().item(),
        "group": 100.0 * (group[top2[real, 0]] == group[truth[real]]).float().mean().item(),
        "count": int(real.sum()),
    }
    if logits.shape[1] > NUM_CLASSES:
        called_not = top2[:, 0] == NUM_CLASSES
        out["not_caught"] = (
            100.0 * called_not[~real].float().mean().item() if (~real).any() else 0.0
        )
        out["not_false"] = 100.0 * called_not[real].float().mean().item()
        out["negatives"] = int((~real).sum())
    return out


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
    negatives: float = 0.5,
    init: str = "",
    wrong_boxes: Optional[Dict[str, np.ndarray]] = None,
) -> Dict:
    """
    Train a :class:`CropClassifier` of ``cfg.MODEL.SECOND_LOOK``'s shape on the chromosomes of
    ``cfg.DATASETS.TRAIN``, evaluated on ``cfg.DATASETS.TEST``: SGD (Nesterov momentum 0.9)
    with a one-cycle LR, label smoothing, channels-last, under bf16 autocast or in fp32
    (``precision``; "auto": whichever :func:`faster_precision` measures faster on this CPU:
    bf16 is twice as fast on some CPUs and many times slower on others). Evaluates every
    ``eval_period`` steps (0: every epoch). With ``MODEL.SECOND_LOOK.NOT_CHROMOSOME`` the
    classifier also learns "not one chromosome" from ``negatives`` x as many negative boxes
    as chromosomes (:func:`..data.crops.negative_boxes`) and from ``wrong_boxes``, the model's
    wrong candidates of the training images (:func:`.judge_training.wrong_candidates`).
    ``init``: start from these weights
    (a classifier without "not one chromosome" gives all but that class's row).
    A run in ``output_dir`` with the same settings
    (:func:`crop_settings`) is resumed from its ``last.pth``, or, finished, reused (its
    summary returned); one with other settings is refused
    (:class:`..engine.runs.OtherSettingsError`).

    Writes ``output_dir``: ``metrics.jsonl`` (one line per evaluation: step, epoch, training
    seconds, val accuracy), ``last.pth`` (checkpoint), ``model_final.pth`` (``{"model":
    state_dict}`` for MODEL.SECOND_LOOK.WEIGHTS), ``summary.json``.

    Returns:
        dict: the summary.
    """
    look = cfg.MODEL.SECOND_LOOK
    negatives = negatives if look.NOT_CHROMOSOME else 0.0
    wrong_boxes = wrong_boxes if look.NOT_CHROMOSOME else None
    train, val = _read_patches(cfg, output_dir, negatives, wrong_boxes)
    steps_per_epoch = len(train["classes"]) // batch_size
    total_steps = max(1, int(round(epochs * steps_per_epoch)))
    settings = crop_settings(
        cfg, total_steps, batch_size, base_lr, weight_decay, label_smoothing, seed, precision
    )
    if look.NOT_CHROMOSOME:
        settings.update(not_chromosome=True, negatives=negatives)
    if wrong_boxes:
        settings["wrong_candidates"] = boxes_digest(wrong_boxes)
    if init:
        settings["init"] = init
    run = CropTraining(look, output_dir, settings, steps_per_epoch)
    summary_path = os.path.join(output_dir, "summary.json")
    if run.resume() == REUSE and os.path.isfile(summary_path):
        logger.info(f"{output_dir} finished with these settings: reusing it")
        with open(summary_path) as f:
            return json.load(f)
    os.makedirs(output_dir, exist_ok=True)
    if precision == "auto":
        precision = faster_precision(run.model, train, batch_size, look.CROP_SIZE, look.CROP_MARGIN)
    logger.info(f"training in {precision}")
    record = run.train(
        train, val, precision == "bf16", eval_period or steps_per_epoch, checkpoint_period
    )
    save_atomic({"model": run.model.state_dict()}, os.path.join(output_dir, "model_final.pth"))
    summary = _summary(settings, epochs, train, val, precision, run.state, record)
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def crop_settings(
    cfg, total_steps, batch_size, base_lr, weight_decay, label_smoothing, seed, precision
) -> Dict:
    """What a crop classifier's training depends on: a run made with other settings is
    neither resumed nor reused."""
    look = cfg.MODEL.SECOND_LOOK
    return {
        "train_dataset": cfg.DATASETS.TRAIN[0],
        "val_dataset": cfg.DATASETS.TEST[0],
        "test_size": [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST],
        "crop_size": look.CROP_SIZE,
        "crop_margin": look.CROP_MARGIN,
        "width": look.WIDTH,
        "depth": look.DEPTH,
        "steps": total_steps,
        "batch_size": batch_size,
        "base_lr": base_lr,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "seed": seed,
        "precision": precision,
    }


def _read_patches(cfg, output_dir: str, negatives: float, wrong_boxes=None):
    """The train and val patches of ``cfg``'s datasets (cached in ``output_dir/cache``), with
    ``negatives`` x as many negative boxes as chromosomes, and the training images' wrong
    candidates ``wrong_boxes``."""
    look = cfg.MODEL.SECOND_LOOK
    size = patch_size(look.CROP_SIZE, look.CROP_MARGIN)
    cache = os.path.join(output_dir, "cache")
    resize = (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    (train_name,), (val_name,) = cfg.DATASETS.TRAIN, cfg.DATASETS.TEST
    train = cached_patches(train_name, cache, *resize, size, negatives, wrong_boxes)
    val = cached_patches(val_name, cache, *resize, size, negatives)
    logger.info(f"{len(train['classes'])} training, {len(val['classes'])} val chromosomes")
    return train, val


class CropTraining:
    """
    One crop classifier's training in ``output_dir``: the model (seeded), SGD, the one-cycle
    LR and the progress (``state``: step, training seconds), checkpointed to ``last.pth``.
    The batch and augmentation of step t depend on (seed, epoch, step) alone.
    """

    def __init__(self, look, output_dir: str, settings: Dict, steps_per_epoch: int):
        self.look, self.output_dir, self.settings = look, output_dir, settings
        self.steps_per_epoch, self.total_steps = steps_per_epoch, settings["steps"]
        torch.manual_seed(settings["seed"])
        self.model = CropClassifier(look.WIDTH, look.DEPTH, not_chromosome=look.NOT_CHROMOSOME)
        if settings.get("init"):
            initial_weights(self.model, settings["init"])
        self.model = self.model.to(memory_format=torch.channels_last)
        lr = settings["base_lr"]
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=settings["weight_decay"],
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=lr, total_steps=self.total_steps, pct_start=0.25
        )
        self.state = {"step": 0, "train_seconds": 0.0}
        self.last = os.path.join(output_dir, "last.pth")

    def resume(self) -> str:
        """Load ``last.pth`` unless the run starts (:func:`..engine.runs.run_decision`).

        Returns:
            str: the decision: START, RESUME or REUSE.
        """
        checkpoint = (
            torch.load(self.last, weights_only=False) if os.path.isfile(self.last) else None
        )
        made_with = None
        if checkpoint is not None:  # one written before settings were: only its steps are known
            made_with = checkpoint.get(
                "settings", {**self.settings, "steps": checkpoint["total_steps"]}
            )
        decision = run_decision(
            self.output_dir,
            self.settings,
            made_with,
            0 if checkpoint is None else checkpoint["state"]["step"],
            self.total_steps,
            advice="use another --output",
        )
        if decision != START:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.state = checkpoint["state"]
            logger.info(f"resumed from {self.last} at step {self.state['step']}")
        return decision

    def save(self):
        save_atomic(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "state": self.state,
                "total_steps": self.total_steps,
                "settings": self.settings,
            },
            self.last,
        )

    def train(self, train, val, bf16: bool, eval_period: int, checkpoint_period: int) -> Dict:
        """The steps left, checkpointed and evaluated periodically and at the end.

        Returns:
            dict: the evaluation of the last step (:meth:`evaluate`).
        """
        record = None
        while self.state["step"] < self.total_steps:
            loss = self.step(train, bf16)
            step = self.state["step"]
            if step % 20 == 0:
                logger.info(
                    f"step {step}/{self.total_steps} loss {loss:.3f} "
                    f"{self.state['train_seconds'] / step:.2f} s/step"
                )
            if step % checkpoint_period == 0 or step == self.total_steps:
                self.save()
            if step % eval_period == 0 or step == self.total_steps:
                record = self.evaluate(val)
        if record is None or record["step"] != self.state["step"]:
            record = self.evaluate(val)
        return record

    def step(self, train, bf16: bool) -> float:
        """One SGD step on the batch of this step; returns its loss."""
        batch_size, seed = self.settings["batch_size"], self.settings["seed"]
        epoch, index = divmod(self.state["step"], self.steps_per_epoch)
        order = torch.randperm(
            len(train["classes"]), generator=torch.Generator().manual_seed(seed * 10_000 + epoch)
        )
        batch = order[index * batch_size : (index + 1) * batch_size]
        generator = torch.Generator().manual_seed((seed * 10_000 + epoch) * 100_000 + index)
        start = time.perf_counter()
        self.model.train()
        crops = training_crops(
            train["patches"][batch],
            train["boxes"][batch],
            self.look.CROP_SIZE,
            self.look.CROP_MARGIN,
            generator,
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = self.model(crops.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(
            logits.float(),
            train["classes"][batch],
            label_smoothing=self.settings["label_smoothing"],
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.state["step"] += 1
        self.state["train_seconds"] += time.perf_counter() - start
        return loss.item()

    def evaluate(self, val) -> Dict:
        """Val accuracy now, appended to ``metrics.jsonl`` and returned."""
        metrics = crop_accuracy(self.model, val, self.look.CROP_SIZE, self.look.CROP_MARGIN)
        record = {
            "step": self.state["step"],
            "epoch": round(self.state["step"] / self.steps_per_epoch, 3),
            "train_seconds": round(self.state["train_seconds"], 1),
            "lr": self.scheduler.get_last_lr()[0],
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        with open(os.path.join(self.output_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        logger.info(f"crop classifier {record}")
        return record


def initial_weights(model: CropClassifier, path: str):
    """Load a crop classifier's weights file into ``model``; one trained without "not one
    chromosome" gives every parameter but that class's row of the last layer (zero)."""
    state = read_classifier_state(path)
    own = model.state_dict()
    for name, value in state.items():
        if name in own and value.shape != own[name].shape and value.shape[0] == NUM_CLASSES:
            state[name] = torch.cat([value, torch.zeros_like(value[:1])])  # the new class's row
    load_classifier(model, path, state)


def _summary(settings, epochs, train, val, precision, state, record) -> Dict:
    return {
        "train_dataset": settings["train_dataset"],
        "val_dataset": settings["val_dataset"],
        "train_chromosomes": len(train["classes"]),
        "val_chromosomes": len(val["classes"]),
        "skipped_images": train["errors"] + val["errors"],
        "crop_size": settings["crop_size"],
        "crop_margin": settings["crop_margin"],
        "width": settings["width"],
        "depth": settings["depth"],
        "epochs": epochs,
        "steps": settings["steps"],
        "batch_size": settings["batch_size"],
        "base_lr": settings["base_lr"],
        "seed": settings["seed"],
        "precision": precision,
        "train_seconds": round(state["train_seconds"], 1),
        "val": {k: v for k, v in record.items() if k.startswith("val_")},
    }
