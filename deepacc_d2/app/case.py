"""
Running a model over a case of image files at the model's speed.

On a CPU the images are shared among worker processes, by default one per core the model
would use, each with the model (inherited) and one thread: a worker reads an image, runs the
model, and draws and writes that image's files (``work``), while the others do the same with
theirs. Each result comes back to the calling process in the images' order, for what is written
over the whole case (``keep``). On 2 cores one process with the model's two threads leaves a
core idle during the model's serial parts and all of the drawing; single-threaded processes
keep both busy (docs/studies/benchmarks_case.md).

Workers are forked, so they start at once and inherit the model and ``work``. One thread each
also keeps the fork safe after the parent has run OpenMP, whose thread pool hangs in a forked
child. Where there is no fork, or the model is on a GPU, the case runs in the calling process,
one image after the other, with the model's threads. The files are those one process of one
thread writes; with the model's several threads the sums run in another order, and a score or
box corner can differ in its last written digit.

A worker that dies (killed for memory, a crash in a decoder) takes the images in flight with
it: those are run again one at a time, each in a worker of its own, and one that dies there too
is named failed; the rest of the case goes on in half as many workers. Ctrl-C stops the case
once the images being worked on are done: their own files are written, the case files list the
images before them in order. Workers end with the caller, even when it is killed.

Progress goes to a bar on a terminal (tqdm) and to plain log lines elsewhere; each stage's
seconds can be added up (``timings``) for a profile.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Callable, Dict, Optional, Sequence

import torch
from tqdm import tqdm

from ..data.images import read_metaphase
from ..engine.precision import cpu_bf16_inference
from ..engine.predictor import model_input

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def list_images(inputs: Sequence[str]):
    """Files given directly, and the images inside folders given, in sorted order."""
    files = []
    for p in inputs:
        if os.path.isdir(p):
            files += sorted(
                os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        else:
            files.append(p)
    return files


def check_pictures(pictures: str, choices: Sequence[str]):
    """A ValueError unless ``pictures`` is one of a command's ``choices``."""
    if pictures not in choices:
        raise ValueError(f"pictures={pictures!r}: one of {', '.join(choices)}")


def output_stems(paths: Sequence[str]) -> Dict[str, str]:
    """A distinct output name per input file: its stem, or stem_ext when two inputs share
    a stem (cell.jpg, cell.png), then a counter when even that repeats (two folders)."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    taken, out = set(), {}
    for path, stem in zip(paths, stems):
        name = stem
        if stems.count(stem) > 1:
            name = f"{stem}_{os.path.splitext(path)[1].lstrip('.').lower()}"
        base, i = name, 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        out[path] = name
    return out


@contextmanager
def timed(timings: Optional[Dict[str, float]], stage: str):
    """Add the seconds of the block to ``timings[stage]`` (nothing when timings is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


class CaseModel:
    """A loaded model that predicts one image file as detectron2's ``DefaultPredictor`` does
    (resized by ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``, boxes in the original image)."""

    def __init__(self, cfg, model):
        self.cfg, self.model = cfg, model
        self.bf16 = cpu_bf16_inference(cfg, model)

    def __call__(self, path: str, timings=None):
        """
        Returns:
            (image, instances, error): the (H, W, 3) uint8 BGR image and the model's
            ``Instances`` on the CPU, or None for both and the error message naming the file.
        """
        try:
            with timed(timings, "read"):
                image = read_metaphase(path)
        except Exception as e:  # name it, go on with the case
            return None, None, _named(path, e)
        try:
            with timed(timings, "model"), torch.no_grad(), self.bf16:
                outputs = self.model([model_input(image, self.cfg.INPUT)])
                return image, outputs[0]["instances"].to("cpu"), None
        except Exception as e:
            return None, None, _named(path, e)


def _named(path: str, error: BaseException) -> str:
    """An error's message, naming the file (once: read_metaphase's errors already do)."""
    message = str(error) if isinstance(error, ValueError) else ""
    return message if message.startswith(path) else f"{path}: {type(error).__name__}: {error}"


def case_workers(cfg, images: int, workers: Optional[int] = None) -> int:
    """
    How many worker processes a case of ``images`` images runs in (module docstring):
    ``workers`` when given, else one per thread the model would use in this process
    (``torch.get_num_threads()``: the cores, or ``OMP_NUM_THREADS``); never more than the
    images; 1 (the calling process) where workers cannot be forked.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers}: at least 1")
    n = min(workers or torch.get_num_threads(), max(images, 1))
    if n > 1 and "fork" not in multiprocessing.get_all_start_methods():
        logger.info("no fork on this system: the case runs in this process")
        return 1
    if n > 1 and not cfg.MODEL.DEVICE.startswith("cpu"):
        logger.info(f"MODEL.DEVICE={cfg.MODEL.DEVICE}: the case runs in this process")
        return 1
    return n


def run_case(
    cfg,
    model,
    paths: Sequence[str],
    work: Callable,
    keep: Callable,
    what: str,
    workers: Optional[int] = None,
    timings: Optional[Dict[str, float]] = None,
):
    """
    Predict every image of ``paths`` with ``model`` (:class:`CaseModel`) in
    :func:`case_workers` processes (module docstring).

    Args:
        work: ``work(path, name, image, instances, timings) -> result``, in the process that
            ran the model, for each image read and predicted; ``name`` is the image's unique
            output name (:func:`output_stems`). Its result must pickle.
        keep: ``keep(path, result, error)`` in the calling process, in the images' order;
            ``error``, a message naming the file, is None or replaces the result.
        timings (dict or None): seconds per stage over all processes (:func:`timed`).
    """
    names = output_stems(paths)
    n = case_workers(cfg, len(paths), workers)
    progress = Progress(len(paths), what)
    predictor = CaseModel(cfg, model)

    def done(path, result, error, seconds):
        if timings is not None:
            for stage, s in seconds.items():
                timings[stage] = timings.get(stage, 0.0) + s
        if error is not None:
            logger.error(error)
        keep(path, result, error)
        progress.step()

    try:
        if n == 1:
            for path in paths:
                done(path, *_work_on(predictor, work, path, names[path]))
        else:
            _run_in_workers(predictor, work, paths, names, n, done)
    finally:
        progress.close()


def _work_on(predictor: CaseModel, work: Callable, path: str, name: str):
    """One image: (result, error, seconds per stage)."""
    seconds = {}
    image, instances, error = predictor(path, seconds)
    if error is not None:
        return None, error, seconds
    try:
        return work(path, name, image, instances, seconds), None, seconds
    except Exception as e:  # one bad cell never loses the rest of the case
        return None, _named(path, e), seconds


# What forked workers inherit: the predictor and the work (set before the fork).
_WORKER = {}


def _start_worker(parent: int):
    torch.set_num_threads(1)  # see the module docstring
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the caller stops the case
    try:  # end with the caller, even when it is killed (Linux: PR_SET_PDEATHSIG)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the caller died before that
        os._exit(1)


def _job(path: str, name: str):
    return _work_on(_WORKER["predictor"], _WORKER["work"], path, name)


def _run_in_workers(predictor, work, paths, names, n: int, done: Callable):
    """
    :func:`run_case` in ``n`` forked processes; ``done(path, result, error, seconds)`` in the
    images' order. After a worker died, the images in flight then are run again one at a time,
    each in a worker of its own (one that dies there too is named failed), and the rest in half
    as many workers: the usual cause is memory.
    """
    _WORKER.update(predictor=predictor, work=work)
    finished, suspects, kept = {}, set(), 0  # by the image's index in paths

    def settle(i, outcome):
        nonlocal kept
        finished[i] = outcome
        while kept in finished:
            done(paths[kept], *finished.pop(kept))
            kept += 1

    todo = list(range(len(paths)))
    try:
        while todo:
            alone = [i for i in todo if i in suspects][:1]
            batch, died = alone or todo, []
            context = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(min(n, len(batch)), context, _start_worker, (os.getpid(),))
            try:
                futures = []
                for i in batch:
                    try:
                        futures.append(pool.submit(_job, paths[i], names[paths[i]]))
                    except BrokenProcessPool:  # a worker died already: the rest waits
                        break
                for i, future in zip(batch, futures):
                    error = future.exception()  # waits for it
                    if isinstance(error, BrokenProcessPool):
                        died.append(i)
                    elif error is not None:  # e.g. a result that does not pickle
                        settle(i, (None, _named(paths[i], error), {}))
                    else:
                        settle(i, future.result())
            finally:  # after Ctrl-C only the images running go on, to their end
                pool.shutdown(cancel_futures=True)
            if alone and died:
                message = "the worker process running it died (out of memory, or a crash)"
                settle(alone[0], (None, f"{paths[alone[0]]}: {message}", {}))
            if died and not alone:
                suspects.update(died[:n])  # the pool hands images out in order
                n = max(1, n // 2)  # the usual cause is memory
                logger.warning(f"a worker process died; the case goes on in {n} worker(s)")
            todo = [i for i in todo if i >= kept and i not in finished]
    finally:
        _WORKER.clear()


class _Bar(tqdm):
    monitor_interval = 0  # no monitor thread: workers are forked while the bar runs


class Progress:
    """Images done, images/s and time left: a tqdm bar on a terminal, a log line every tenth
    of the case otherwise."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.done, self.start = total, what, 0, time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            self.bar = _Bar(total=total, desc=what, unit="img")

    def step(self):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        if self.done == self.total or self.done % max(1, self.total // 10) == 0:
            seconds = time.perf_counter() - self.start
            rate = self.done / max(seconds, 1e-9)
            logger.info(
                f"{self.what}: {self.done}/{self.total} images, {rate:.2f} images/s, "
                f"{(self.total - self.done) / max(rate, 1e-9):.0f} s left"
            )

    def close(self):
        if self.bar is not None:
            self.bar.close()
