"""
Checkpoints that survive an interrupted run: written to a temporary file and renamed (a
crash while writing never leaves a truncated ``model_*.pth``), and, when the last checkpoint
cannot be loaded anyway (a disk filled up, a copy cut short), resuming falls back to the
newest one that loads, with a message naming the file it skipped. A checkpointer for trained
weights that refuses a file leaving part of the model unset. And a hook that pauses training
after a given time, at a checkpoint that ``--resume`` goes on from.
"""

import logging
import os
import time

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase
from detectron2.utils import comm

logger = logging.getLogger(__name__)

_PARTIAL = ".partial"


class AtomicCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` with atomic saves and a fallback when resuming."""

    def save(self, name: str, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        super().save(name + _PARTIAL, **kwargs)  # tags it last only once fully written
        os.replace(
            os.path.join(self.save_dir, f"{name}{_PARTIAL}.pth"),
            os.path.join(self.save_dir, f"{name}.pth"),
        )
        self.tag_last_checkpoint(f"{name}.pth")

    def _checkpoints_newest_first(self):
        files = [
            os.path.join(self.save_dir, f)
            for f in os.listdir(self.save_dir)
            if f.endswith(".pth") and not f.endswith(_PARTIAL + ".pth")
        ]
        return sorted(files, key=os.path.getmtime, reverse=True)

    def resume_or_load(self, path: str, *, resume: bool = True):
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        last = self.get_checkpoint_file()
        try:
            return self.load(last)
        except Exception as e:  # truncated, corrupt or missing: try the ones before it
            self._forget_failed_load()
            logger.warning(f"cannot resume from {last} ({type(e).__name__}: {e})")
            failed = {os.path.abspath(last)}
        for candidate in self._checkpoints_newest_first():
            if os.path.abspath(candidate) in failed:
                continue
            try:
                checkpoint = self.load(candidate)
            except Exception as e:
                self._forget_failed_load()
                logger.warning(f"cannot resume from {candidate} ({type(e).__name__}: {e})")
                failed.add(os.path.abspath(candidate))
                continue
            logger.warning(f"resumed from {candidate} instead")
            self.tag_last_checkpoint(os.path.basename(candidate))
            return checkpoint
        raise RuntimeError(f"no checkpoint in {self.save_dir} can be loaded to resume from")

    def _forget_failed_load(self):
        # Version switch: detectron2 after 0.6 keeps the URL of the load in progress in
        # ``_parsed_url_during_load``, clears it only when a load succeeds, and asserts it is
        # clear when the next load starts; 0.6 has no such attribute.
        if getattr(self, "_parsed_url_during_load", None) is not None:
            self._parsed_url_during_load = None


class TrainedWeightsCheckpointer(DetectionCheckpointer):
    """
    Loads a trained model for evaluation, prediction or export. Weights that do not fit the
    model (a config other than the one the file was trained with: parameters missing, or
    left over) are refused with the file and the names, where detectron2 only logs them and
    runs on random values.
    """

    def load(self, path: str, *args, **kwargs):
        self._loading = path
        return super().load(path, *args, **kwargs)

    def _log_incompatible_keys(self, incompatible):
        # a module that loaded its own weights file (the second look's classifier) may be
        # absent from the model's file
        own_files = tuple(
            f"{name}." for name, m in self.model.named_modules() if getattr(m, "weights_file", "")
        )
        missing = [k for k in incompatible.missing_keys if not k.startswith(own_files)]
        incompatible.missing_keys[:] = missing
        super()._log_incompatible_keys(incompatible)
        for what, names in (
            ("missing", missing),
            ("not in the model", incompatible.unexpected_keys),
        ):
            if names:
                shown = ", ".join(sorted(names)[:6]) + (", ..." if len(names) > 6 else "")
                raise ValueError(
                    f"{self._loading}: these weights do not fit the model of this config "
                    f"({len(names)} parameters {what}: {shown}); pass the config the file "
                    "was trained with"
                )


class TrainingPaused(BaseException):
    """Training stopped by :class:`StopAfter` at a checkpoint; ``--resume`` goes on. Not an
    ``Exception``: detectron2's trainer logs those as failures; its hooks' ``after_train``
    still run."""


class StopAfter(HookBase):
    """
    After the first step that ends ``minutes`` into training, save a checkpoint of that
    iteration (model, optimizer, scheduler, iteration: what the periodic checkpointer saves)
    and raise :class:`TrainingPaused`. A machine lent for minutes at a time trains in pieces:
    each piece runs ``train_net.py --resume`` and goes on exactly where the last one paused.
    In distributed training rank 0's clock decides for every rank.
    """

    def __init__(self, minutes: float):
        self.seconds = 60.0 * minutes

    def before_train(self):
        self.start = time.perf_counter()

    def after_step(self):
        due = time.perf_counter() - self.start >= self.seconds
        if comm.get_world_size() > 1:
            due = comm.all_gather(due)[0]
        trainer = self.trainer
        if due and trainer.iter + 1 < trainer.max_iter:
            trainer.checkpointer.save(f"model_{trainer.iter:07d}", iteration=trainer.iter)
            raise TrainingPaused(
                f"paused after iteration {trainer.iter + 1} of {trainer.max_iter} "
                f"({self.seconds / 60:g} min); train_net.py --resume goes on from here"
            )
