"""
``deepacc synth``: write a synthetic dataset (see writer.py for the folder layout).

Example::

    deepacc synth --out datasets/synth_default --num-images 2000 --seed 0 \\
        --held-out-batches 18 19 --workers 0

then configs can name ``synth_default_train``, ``synth_default_val``, ``synth_default_test``.
"""

import argparse
import time

from .karyotype import ABNORMALITIES, DEFAULT_ABNORMALITY_RATES
from .render import SynthConfig
from .writer import write_dataset


def build_parser(parser=None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="deepacc synth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (synth_<name> under $DETECTRON2_DATASETS to have it registered)",
    )
    parser.add_argument("--num-images", type=int, required=True, help="images over all splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, default=[1200, 1600], metavar=("H", "W"))
    parser.add_argument(
        "--num-batches",
        type=int,
        default=20,
        help="preparations (batch styles); image i is in batch i %% num-batches",
    )
    parser.add_argument(
        "--held-out-batches",
        type=int,
        nargs="*",
        default=[],
        help="batch ids whose images go only to split 'test'",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--overlap-rate", type=float, default=SynthConfig.overlap_rate)
    parser.add_argument("--nuclei-rate", type=float, default=SynthConfig.nuclei_rate)
    parser.add_argument("--debris-rate", type=float, default=SynthConfig.debris_rate)
    parser.add_argument(
        "--abnormality-scale",
        type=float,
        default=1.0,
        help="multiplies every default abnormality rate "
        f"({', '.join(f'{a}: {DEFAULT_ABNORMALITY_RATES[a]}' for a in ABNORMALITIES)})",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes; 0 = all cores")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config = SynthConfig(
        image_size=tuple(args.image_size),
        num_batches=args.num_batches,
        abnormality_rates={
            a: r * args.abnormality_scale for a, r in DEFAULT_ABNORMALITY_RATES.items()
        },
        overlap_rate=args.overlap_rate,
        nuclei_rate=args.nuclei_rate,
        debris_rate=args.debris_rate,
    )
    start = time.perf_counter()
    json_files = write_dataset(
        args.out,
        args.num_images,
        seed=args.seed,
        config=config,
        held_out_batches=args.held_out_batches,
        val_fraction=args.val_fraction,
        num_workers=args.workers,
        progress=not args.no_progress,
    )
    elapsed = time.perf_counter() - start
    for split, path in json_files.items():
        print(f"{split}: {path}")
    print(f"{args.num_images} images in {elapsed:.1f} s ({args.num_images / elapsed:.2f} images/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
