"""
Running a model over a case of image files at the model's speed: the next image is read on a
worker thread while the model runs, and the pictures and files of a finished image are drawn
and written on another, in order, while the model runs on the next one. Progress goes to a
bar on a terminal (tqdm) and to plain log lines elsewhere; each stage's seconds can be added
up (``timings``) for a profile.
"""

import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

import torch
from tqdm import tqdm

from detectron2.data import transforms as T

from .cpu import cpu_bf16_inference
from .data.images import read_metaphase

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


def _read(path: str):
    try:
        return read_metaphase(path), None
    except ValueError as e:  # read_metaphase names the file
        return None, str(e)


def predictor_resize(cfg) -> T.ResizeShortestEdge:
    """The test-time resize of detectron2's ``DefaultPredictor``."""
    return T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)


def model_input(image, resize: T.ResizeShortestEdge, input_format: str) -> Dict:
    """A (H, W, 3) uint8 BGR image as the model's input dict, prepared as detectron2's
    ``DefaultPredictor`` prepares it (channel order, resize, float CHW tensor, original size)."""
    height, width = image.shape[:2]
    pixels = image[:, :, ::-1] if input_format == "RGB" else image
    pixels = resize.get_transform(pixels).apply_image(pixels)
    tensor = torch.as_tensor(pixels.astype("float32").transpose(2, 0, 1))
    return {"image": tensor, "height": height, "width": width}


def run_case(cfg, model, paths, finish, what: str, background: bool = True, timings=None):
    """
    Predict every image of ``paths`` (:func:`predict_each`) and hand each result to
    ``finish(path, name, image, instances, error)`` on a background thread, in order
    (:class:`InOrderWorker`), with progress (:class:`Progress`).
    """
    progress = Progress(len(paths), what)

    def finish_and_count(*item):
        finish(*item)
        progress.step()

    with InOrderWorker(background) as worker:
        for item in predict_each(cfg, model, paths, timings):
            worker.submit(finish_and_count, *item)
    progress.close()


def predict_each(cfg, model, inputs: Sequence[str], timings=None) -> Iterator:
    """
    Run ``model`` on every image of ``inputs`` (files or folders) in order, as detectron2's
    ``DefaultPredictor`` does (resized by ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``, boxes
    in the original image), reading the next image meanwhile.

    Yields:
        (path, name, image, instances, error): the file, its unique output name
        (:func:`output_stems`), the (H, W, 3) uint8 BGR image and the model's ``Instances``
        on the CPU, or None for both and the error message of a file that failed.
    """
    resize = predictor_resize(cfg)
    bf16 = cpu_bf16_inference(cfg, model)
    paths = list_images(inputs)
    names = output_stems(paths)
    with ThreadPoolExecutor(1, thread_name_prefix="read") as reader:
        upcoming = reader.submit(_read, paths[0]) if paths else None
        for i, path in enumerate(paths):
            with timed(timings, "read (waiting)"):
                image, error = upcoming.result()
            if i + 1 < len(paths):
                upcoming = reader.submit(_read, paths[i + 1])
            if image is None:
                yield path, names[path], None, None, error
                continue
            try:
                with timed(timings, "model"), torch.no_grad(), bf16:
                    outputs = model([model_input(image, resize, cfg.INPUT.FORMAT)])
                    instances = outputs[0]["instances"].to("cpu")
            except Exception as e:  # name it, go on with the batch
                yield path, names[path], None, None, f"{path}: {type(e).__name__}: {e}"
                continue
            yield path, names[path], image, instances, None


class InOrderWorker:
    """
    Runs jobs on one background thread in the order they were given, at most ``pending``
    waiting (so memory stays bounded); ``background=False`` runs each at once. A job's
    exception is raised in the caller at the next submit or at the end.
    """

    def __init__(self, background: bool = True, pending: int = 2):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="write") if background else None
        self.jobs = deque()
        self.pending = pending

    def submit(self, fn, *args):
        if self.pool is None:
            fn(*args)
            return
        self.jobs.append(self.pool.submit(fn, *args))
        while len(self.jobs) > self.pending:
            self.jobs.popleft().result()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            while self.jobs:
                self.jobs.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown()


class Progress:
    """Images done, images/s and time left: a tqdm bar on a terminal, a log line every tenth
    of the case otherwise."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.done, self.start = total, what, 0, time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(total=total, desc=what, unit="img")

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
