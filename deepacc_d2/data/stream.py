"""
The training data as a function of the iteration, so that a killed run resumed with
``--resume`` trains on exactly the batches an uninterrupted run would have.

detectron2's own loader cannot do that: its trainer starts the loader's iterator before the
checkpoint says where training stands, so a resumed run restarts the data stream, and the
augmentations draw from whatever state numpy's global RNG has in each worker. Here:

* **Which images.** The index stream is detectron2's ``TrainingSampler`` with a fixed seed
  (``cfg.SEED``). It is cut into batches, with detectron2's aspect-ratio grouping when
  ``DATALOADER.ASPECT_RATIO_GROUPING`` is on (a batch fills with images on the same side of
  w = h; the others wait for the next batch of their side). Batch t is therefore a function
  of (seed, t) alone; reaching batch T walks the index stream from its start, using only the
  dataset dicts' "width" and "height" (no image is read).
* **Which augmentation.** Before the mapper sees image p of the stream, numpy's global RNG,
  which detectron2's augmentations draw from, is seeded from (seed, p) (and restored after),
  so image p gets the same flip, scale and rotation in any process.
* **Where to start.** The loader starts its workers at its first ``next()``, which
  detectron2's trainer calls in the first step, after the checkpoint is loaded. It then asks
  detectron2's ``EventStorage`` which iteration is being trained (``storage.iter`` equals
  ``trainer.iter`` during a step, in detectron2 0.6 and later) and starts at that batch.
* **Workers.** DataLoader worker w of N produces batches start + w, start + w + N, ...;
  the DataLoader hands them out in turn, so the batches arrive in order for any number of
  workers.

The model's own randomness (proposal sampling) is seeded per iteration by
:class:`SeedEachIteration`, for the same reason. With ``SEED`` < 0 a
seed is drawn anew in each run, and a resumed run sees other data than the killed one would.
"""

import contextlib
import itertools
import logging
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.data import DatasetFromList, get_detection_dataset_dicts
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

logger = logging.getLogger(__name__)

__all__ = [
    "ResumableTrainLoader",
    "SeedEachIteration",
    "build_resumable_train_loader",
    "derived_seed",
    "training_seed",
]


def derived_seed(*key: int) -> int:
    """A 32-bit seed mixed from non-negative integers (numpy's ``SeedSequence``: keys that
    differ by one give unrelated streams)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


def seeded_order(seed: int, length: int, n: int) -> np.ndarray:
    """At least ``length`` indices into ``n`` items: one permutation per epoch, each drawn
    with (``seed``, epoch), so the order depends on the seed alone."""
    epochs = length // n + 1
    return np.concatenate(
        [np.random.default_rng(derived_seed(seed, e)).permutation(n) for e in range(epochs)]
    )


def training_seed(cfg) -> int:
    """``cfg.SEED``, or, when it is negative, a seed drawn for this run (the same on every
    process; all processes must call this)."""
    return int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed())


@contextlib.contextmanager
def _numpy_seeded(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)  # with 0 workers this is the trainer's process


def _current_iteration() -> int:
    """The iteration detectron2's trainer is running, or 0 outside training."""
    try:
        return get_event_storage().iter
    except AssertionError:  # no EventStorage: iterated outside a trainer
        return 0


class _BatchStream(torch.utils.data.IterableDataset):
    """Mapped images of batches ``start + w``, ``start + w + N``, ... in DataLoader worker w of
    N, ``batch_size`` at a time."""

    def __init__(self, loader: "ResumableTrainLoader", start: int):
        self.loader = loader
        self.start = start

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        w, n = (0, 1) if worker is None else (worker.id, worker.num_workers)
        for batch in itertools.islice(self.loader.batches(), self.start + w, None, n):
            for position, index in batch:
                yield self.loader.map(position, index)


class ResumableTrainLoader:
    """
    An iterable of training batches (lists of mapped dataset dicts) in which batch t depends
    only on (seed, t); iteration starts at the batch of the iteration being trained. See the
    module docstring.
    """

    def __init__(
        self,
        dataset_dicts: Sequence[dict],
        mapper: Callable[[dict], Optional[dict]],
        *,
        seed: int,
        batch_size: int,
        aspect_ratio_grouping: bool,
        num_workers: int = 0,
    ):
        """
        Args:
            dataset_dicts (list[dict]): detectron2 dataset dicts ("width" and "height" when
                grouping by aspect ratio).
            mapper (callable): dataset dict -> model input, or None for an image that cannot
                be used (another one of its aspect group is mapped in its place).
            seed (int): seed of the index stream and of the augmentations.
            batch_size (int): images per batch on this process.
            aspect_ratio_grouping (bool): one side of w = h per batch, as detectron2 does.
            num_workers (int): DataLoader worker processes.
        """
        self.dataset = DatasetFromList(list(dataset_dicts), copy=False)
        self.mapper = mapper
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        # detectron2's AspectRatioGroupedDataset: bucket 0 if w > h else 1
        self.group_of = np.array(
            [
                0 if not aspect_ratio_grouping or d["width"] > d["height"] else 1
                for d in dataset_dicts
            ]
        )
        self._members = [np.flatnonzero(self.group_of == g) for g in (0, 1)]

    def batches(self) -> Iterator[List[Tuple[int, int]]]:
        """
        Batches from the first, as lists of (stream position, dataset index). Position p is the
        p-th image of the stream of all processes together; this process takes every
        ``world_size``-th, from its rank on, as ``TrainingSampler`` does.
        """
        indices = iter(TrainingSampler(len(self.dataset), seed=self.seed))
        buckets = ([], [])
        for k, index in enumerate(indices):
            bucket = buckets[self.group_of[index]]
            bucket.append((self.rank + k * self.world_size, index))
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()

    def map(self, position: int, index: int) -> dict:
        """The mapper's output for stream position ``position`` (dataset image ``index``, or,
        when the mapper gives None, others of its aspect group drawn from (seed, position))."""
        for attempt in itertools.count():
            with _numpy_seeded(derived_seed(self.seed, position, attempt)):
                mapped = self.mapper(self.dataset[index])
            if mapped is not None:
                return mapped
            group = self._members[self.group_of[index]]
            rng = np.random.default_rng([self.seed, position, attempt])
            index = int(group[rng.integers(len(group))])

    def __iter__(self):
        # A generator: nothing runs until the trainer's first next(), after resume_or_load.
        start = _current_iteration()
        if start:
            logger.info(f"Training data resumes at batch {start}")
        loader = torch.utils.data.DataLoader(
            _BatchStream(self, start),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=list,
            # Its own generator: starting the loader (at the first step) then draws nothing
            # from torch's global RNG, which the model's proposal sampling uses.
            generator=torch.Generator(),
        )
        yield from loader


def build_resumable_train_loader(cfg, mapper) -> ResumableTrainLoader:
    """
    ``build_detection_train_loader(cfg, mapper=mapper)``, resumable: the datasets
    ``cfg.DATASETS.TRAIN`` (with ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``),
    ``SOLVER.IMS_PER_BATCH`` over all processes, ``DATALOADER.ASPECT_RATIO_GROUPING`` and
    ``NUM_WORKERS``, seeded by ``cfg.SEED``. Only ``DATALOADER.SAMPLER_TRAIN`` =
    "TrainingSampler" is supported.
    """
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN!r}: the "
            "resumable train loader draws with TrainingSampler only"
        )
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible "
            f"by the {world_size} processes"
        )
    dataset_dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    return ResumableTrainLoader(
        dataset_dicts,
        mapper,
        seed=training_seed(cfg),
        batch_size=cfg.SOLVER.IMS_PER_BATCH // world_size,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


class SeedEachIteration(HookBase):
    """
    Seeds torch's RNG (proposal sampling draws from it) before each iteration from (seed,
    rank, iteration), so that iteration t samples alike in an uninterrupted and in a resumed
    run, whatever ran between iterations (evaluation, a data loader starting). The data's
    counterpart is the loader above.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def before_step(self):
        torch.manual_seed(derived_seed(self.seed, comm.get_rank(), self.trainer.iter))
