#!/usr/bin/env python
"""
Pack a registered labelled dataset small (deepacc_d2/data/pack.py): images shrunk to the
detector's largest training size and written as WebP, boxes scaled, as a COCO folder that
registers by its folder's name under the datasets root. For carrying a training set to a
machine lent with a size limit on what travels (docs/training.md, "Training on a lent GPU").

    python tools/pack_dataset.py --dataset cil24_train --out .carry/datasets/cilpack --split train
    DETECTRON2_DATASETS=.carry/datasets python train_net.py ... DATASETS.TRAIN "('cilpack_train',)"
"""

import argparse
import os
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="cil24_train", help="a registered dataset")
    p.add_argument("--out", required=True, help="the packed folder (its name names the dataset)")
    p.add_argument("--split", default="train", help="the split name it registers under")
    p.add_argument("--short-side", type=int, default=576, help="largest short side, pixels")
    p.add_argument("--quality", type=int, default=70, help="WebP quality, 1-100")
    args = p.parse_args(argv)
    if not 1 <= args.quality <= 100 or args.short_side < 32:
        p.error("--quality must lie in 1..100 and --short-side be at least 32")

    import deepacc_d2  # noqa: F401  (first: it fits detectron2 to this torch, registers datasets)
    from deepacc_d2.data.pack import pack_dataset

    from detectron2.data import DatasetCatalog

    if args.dataset not in DatasetCatalog.list():
        known = ", ".join(DatasetCatalog.list())
        sys.exit(f"{args.dataset}: no such dataset (registered: {known})")
    dicts = DatasetCatalog.get(args.dataset)
    done = pack_dataset(dicts, args.out, args.split, args.short_side, args.quality)
    name = f"{os.path.basename(os.path.normpath(args.out))}_{args.split}"
    size = done["bytes"] / 2**20
    print(
        f"{done['images']} of {len(dicts)} images of {args.dataset}, {size:.1f} MiB, in {args.out}"
        f": dataset {name} where DETECTRON2_DATASETS="
        f"{os.path.dirname(os.path.normpath(args.out)) or '.'}"
    )
    for path, why in done["skipped"].items():
        print(f"skipped {path}: {why}")
    return 0 if done["images"] else 1


if __name__ == "__main__":
    sys.exit(main())
