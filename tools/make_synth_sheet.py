#!/usr/bin/env python
"""
Write docs/synth_vs_real.png: synthetic metaphases (top row, one per batch style, plus a
1:1 crop) next to real CIL images (bottom row, plus a crop at the same chromosome scale).

Real images are read from $CIL24_ROOT (default: ../shared/data/cil24 from the repo root).

    python tools/make_synth_sheet.py [--out docs/synth_vs_real.png]
"""

import argparse
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from deepacc_d2.data.synth.render import SynthConfig  # noqa: E402
from deepacc_d2.data.synth.writer import generate_image  # noqa: E402

TILE_H = 420
REAL_IDS = ["103064", "103071", "103091"]
SYNTH = [(0, 1), (1, 2), (2, 5)]  # (index, batch id)


def _tile(image, height=TILE_H):
    h, w = image.shape[:2]
    return cv2.resize(image, (int(round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def _label(image, text):
    image = image.copy()
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
    cv2.rectangle(image, (0, 0), (w + 14, h + 14), 255, -1)
    cv2.putText(image, text, (7, h + 7), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2, cv2.LINE_AA)
    return image


def _row(tiles, width):
    row = np.full((TILE_H, width), 255, np.uint8)
    x = 0
    for t in tiles:
        t = t[:, : max(0, min(t.shape[1], width - x))]
        row[:, x : x + t.shape[1]] = t
        x += t.shape[1] + 6
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "synth_vs_real.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cil = os.environ.get("CIL24_ROOT", os.path.join(REPO, "..", "shared", "data", "cil24"))

    config = SynthConfig()
    synth, real = [], []
    for index, batch in SYNTH:
        image = generate_image(args.seed, index, batch, config).image
        synth.append(_label(_tile(image), f"synthetic, batch {batch}"))
    # 1:1 crops at the same chromosome scale: chr1 spans ~17 % of the short side in both.
    crop = image[300 : 300 + TILE_H * 1200 // 700, 500 : 500 + TILE_H * 1200 // 700]
    synth.append(_label(_tile(crop), "synthetic, zoom"))
    for rid in REAL_IDS:
        image = cv2.imread(os.path.join(cil, "JPEGImages", f"{rid}.jpg"), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise FileNotFoundError(f"{cil}/JPEGImages/{rid}.jpg (set CIL24_ROOT)")
        real.append(_label(_tile(image), f"real CIL {rid}"))
    h, w = image.shape
    crop = image[h // 2 - TILE_H // 2 : h // 2 + TILE_H // 2, w // 4 : w // 4 + TILE_H]
    real.append(_label(_tile(crop), "real, zoom"))

    width = max(sum(t.shape[1] + 6 for t in synth), sum(t.shape[1] + 6 for t in real))
    sheet = np.vstack([_row(synth, width), np.full((6, width), 255, np.uint8), _row(real, width)])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(args.out, sheet.shape)


if __name__ == "__main__":
    main()
