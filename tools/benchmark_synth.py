#!/usr/bin/env python
"""
Synthetic-metaphase generation speed: draw + PNG-encode images, print images/s.

    python tools/benchmark_synth.py --num-images 20 --sizes 1200x1600 600x800 --processes 1 2
"""

import argparse
import time
from multiprocessing import get_context

import cv2  # noqa: E402

from deepacc_d2.data.synth.render import SynthConfig  # noqa: E402
from deepacc_d2.data.synth.writer import PNG_PARAMS, generate_image  # noqa: E402


def _one(job):
    index, size = job
    config = SynthConfig(image_size=size)
    image = generate_image(0, index, index % config.num_batches, config)
    return len(cv2.imencode(".png", image.image, PNG_PARAMS)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-images", type=int, default=20)
    parser.add_argument("--sizes", nargs="+", default=["1200x1600"], help="HxW")
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    print(f"{'image size':>12} {'processes':>9} {'images/s':>9}")
    for size in args.sizes:
        hw = tuple(int(v) for v in size.split("x"))
        for procs in args.processes:
            jobs = [(i, hw) for i in range(args.num_images)]
            if procs > 1:
                with get_context("spawn").Pool(procs) as pool:
                    pool.map(_one, [(0, (64, 64))] * procs)  # start-up not timed
                    start = time.perf_counter()
                    pool.map(_one, jobs, chunksize=1)
                    elapsed = time.perf_counter() - start
            else:
                _one((0, (64, 64)))
                start = time.perf_counter()
                for job in jobs:
                    _one(job)
                elapsed = time.perf_counter() - start
            print(f"{size:>12} {procs:>9} {args.num_images / elapsed:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
